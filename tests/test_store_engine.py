"""Engine factory: URL handling, SQLite tuning, idempotent schema creation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, inspect, text

from config import Settings
from store import audit
from store.db import engine_from_settings, init_db, make_engine, normalize_url, transaction


@pytest.mark.parametrize("url", ["postgresql://u@h:5432/d", "postgres://u@h:5432/d"])
def test_postgres_urls_use_psycopg3(url: str) -> None:
    assert normalize_url(url) == "postgresql+psycopg://u@h:5432/d"
    assert make_engine(url).dialect.driver == "psycopg"


def test_other_urls_are_rejected_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="database url"):
        make_engine("mysql://u@h/d")
    with pytest.raises(ValueError, match="database url"):
        make_engine("")


def test_sqlite_creates_parent_dir_and_is_tuned(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "mdco.db"
    eng = make_engine(f"sqlite:///{path}")
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 30_000
    assert path.exists()
    eng.dispose()


def test_init_db_is_idempotent(engine) -> None:
    init_db(engine)
    init_db(engine)
    names = set(inspect(engine).get_table_names())
    assert {"clinics", "physicians", "licenses", "dea_registrations", "physician_therapies", "pharmacies",
            "onboardings", "capacity_reservations", "offers", "protocols", "pharmacy_assignments", "agreements",
            "audit_log", "notifications"} <= names


def test_engine_from_settings_is_cached_per_url_and_has_the_schema(tmp_path: Path) -> None:
    a = engine_from_settings(Settings(var_dir=tmp_path / "a"))
    assert engine_from_settings(Settings(var_dir=tmp_path / "a")) is a
    b = engine_from_settings(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    assert b is not a
    assert "physicians" in inspect(a).get_table_names()
    assert (tmp_path / "a" / "mdco.db").exists()
    a.dispose()
    b.dispose()


def test_sqlite_writers_take_the_write_lock_up_front(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    init_db(eng)
    seen: list[str] = []
    event.listen(eng, "before_cursor_execute", lambda *a: seen.append(a[2]))
    with transaction(eng, write=False) as s:
        s.exec(text("SELECT 1"))
    audit.mark_notification_sent(eng, "k", "ops", "subject")
    assert [q for q in seen if q.startswith("BEGIN")] == ["BEGIN", "BEGIN IMMEDIATE"]
    eng.dispose()


def test_in_memory_sqlite_works() -> None:
    eng = make_engine("sqlite://")
    init_db(eng)
    assert audit.mark_notification_sent(eng, "k", "ops", "subject")
    assert audit.notification_sent(eng, "k")
