"""What the store's repositories share: the NotFound error, argument checks, and retrying a transaction
that lost a unique-key race.

Temporal retries activities, so every ``upsert_*`` / ``record_*`` / ``save_*`` in ``store.roster``,
``store.onboardings``, ``store.agreements`` and ``store.audit`` is idempotent: calling it twice with the
same arguments leaves the same state. Business keys (workflow id + step) are unique keys in
``store.tables``; a concurrent duplicate insert is retried (``retry_race``) and then finds the row.
Bad arguments raise ``ValueError`` naming the field before anything is written. One transaction per call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from store.db import is_transient


class NotFound(LookupError):
    """The record an operation needs does not exist (the message names it)."""


def sql_table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined, return-value]


def _is_unique_race(exc: BaseException) -> bool:
    """A concurrent writer inserted the same key first: re-running the transaction finds its row."""
    if not isinstance(exc, IntegrityError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(exc.orig)


def retry_race(exc: BaseException) -> bool:
    return is_transient(exc) or _is_unique_race(exc)


def row_dict(row: SQLModel) -> dict[str, Any]:
    return row.model_dump()


def require(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: must be a non-empty string")
    return value


def one_of(value: str, allowed: Iterable[str], field: str) -> str:
    allowed = sorted(allowed)
    if value not in allowed:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(allowed)}")
    return value
