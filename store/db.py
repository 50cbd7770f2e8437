"""Engine and transaction plumbing shared by every repository function.

SQLite is the embedded default and Postgres the production database; both must give the same
guarantees to the Temporal activities that call the repository: one transaction per call, writers
serialised where they must be (SQLite ``BEGIN IMMEDIATE``; Postgres row locks), and transient lock
or serialisation failures retried here instead of surfacing as activity failures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a SQLite writer waits for the file lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30
#: Attempts for a transaction that failed on a transient lock / serialisation / deadlock error.
RETRY_ATTEMPTS = 8
_WRITE_OPTION = "mdco_write"


def normalize_url(url: str) -> str:
    """Point bare ``postgres://`` / ``postgresql://`` URLs at the psycopg 3 driver we ship."""
    if not url:
        raise ValueError("database url: must not be empty")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: WAL + busy timeout + foreign keys on SQLite, psycopg on Postgres."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ValueError(f"database url: unsupported backend {parsed.get_backend_name()!r} (use sqlite or postgresql)")


def _sqlite_engine(url: str, database: str | None) -> Engine:
    memory = not database or database == ":memory:"
    if not memory and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    # An in-memory database exists per connection, so it gets exactly one shared connection.
    pool: dict[str, Any] = {"poolclass": StaticPool} if memory else {"pool_size": 10, "max_overflow": 20}
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **pool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module so that we decide DEFERRED vs IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front: a deferred transaction that upgrades from read to
        # write fails at once with SQLITE_BUSY instead of waiting, which is what over-books under load.
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def init_db(engine: Engine) -> None:
    """Create every table and index that does not exist yet, and add the columns a later release added
    to an existing table (safe to call on every start)."""
    from store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)


def add_missing_columns(engine: Engine) -> list[str]:
    """The project has no migration tool: ``create_all`` makes missing tables but never alters one.
    Columns are only ever *added*, and nullable, so a database from an earlier release gets each missing
    one with ``ALTER TABLE ... ADD COLUMN`` (NULL in every existing row; both backends do it without
    rewriting the table). A missing column that is NOT NULL cannot be added safely: that is refused at
    start, naming it. Two processes starting at once may race: a column another one added meanwhile
    counts as added. Returns ``table.column`` for each column added."""
    added: list[str] = []
    existing = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable or column.primary_key:
                raise RuntimeError(f"{table.name}.{column.name}: missing and NOT NULL; it cannot be added to an "
                                   "existing database (release a nullable column instead)")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
            except DBAPIError:
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue  # added by a process starting at the same time
            log.warning("database: added column %s.%s (%s)", table.name, column.name, kind)
            added.append(f"{table.name}.{column.name}")
    return added


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_from_settings(settings: "Settings") -> Engine:
    """The process-wide engine for ``settings.resolved_database_url``, created (and its schema) once."""
    url = normalize_url(settings.resolved_database_url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            init_db(engine)
            _engines[url] = engine
        return engine


def insert_for(session: Session) -> Callable[..., Any]:
    """The dialect's ``insert`` (both have ``on_conflict_do_update`` / ``on_conflict_do_nothing``)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise ValueError(f"database: unsupported dialect {name!r}")


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Session]:
    """One session = one transaction; committed on success, rolled back on any exception."""
    with Session(engine, expire_on_commit=False, autoflush=False) as session:
        session.connection(execution_options={_WRITE_OPTION: write})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_transient(exc: BaseException) -> bool:
    """Lock timeouts, serialisation failures and deadlocks: retrying the whole transaction helps."""
    if isinstance(exc, OperationalError) and "database is locked" in str(exc).lower():
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return sqlstate in {"40001", "40P01", "55P03"}  # serialization_failure, deadlock, lock_not_available
    return False


def run(engine: Engine, work: Callable[[Session], T], *, write: bool = True,
        retry_on: Callable[[BaseException], bool] = is_transient) -> T:
    """Run ``work`` in one transaction, re-running it from scratch on a transient failure."""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            with transaction(engine, write=write) as session:
                return work(session)
        except Exception as exc:
            if attempt == RETRY_ATTEMPTS or not retry_on(exc):
                raise
            log.warning("transaction retry %d after %s", attempt, type(exc).__name__)
            time.sleep(min(0.02 * 2 ** attempt, 1.0))
    raise AssertionError("unreachable")
