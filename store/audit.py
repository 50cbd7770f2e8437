"""The audit trail of every onboarding, and the e-mails already sent (so a retry sends none twice)."""

from __future__ import annotations

from datetime import datetime

from pydantic_core import to_jsonable_python
from sqlalchemy import Engine
from sqlmodel import Session
from sqlmodel import select as select_rows

from store import tables as t
from store.common import require, row_dict, sql_table
from store.db import insert_for, run
from store.tables import now_utc


def audit(engine: Engine, workflow_id: str, actor: str, action: str, detail: dict | None = None, reason: str = "",
          at: datetime | None = None, idem_key: str | None = None) -> bool:
    """Append to the audit trail; with an ``idem_key`` a retried activity writes the entry once.

    Returns True when an entry was written. Keep PII out of ``detail`` (ids, not names).
    """
    require(workflow_id, "workflow_id")
    require(actor, "actor")
    require(action, "action")
    try:
        detail_json = to_jsonable_python(detail or {})
    except Exception as exc:
        raise ValueError(f"detail: not JSON-serialisable ({exc})") from None
    if not isinstance(detail_json, dict):
        raise ValueError("detail: must be a dict")
    au = sql_table(t.AuditEntry)
    values = {"workflow_id": workflow_id, "actor": actor, "action": action, "detail": detail_json,
              "reason": reason, "at": at or now_utc(), "idem_key": idem_key}

    def work(s: Session) -> bool:
        stmt = insert_for(s)(au).values(**values)
        if idem_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=[au.c.idem_key])
        return s.exec(stmt.returning(au.c.id)).first() is not None  # no row back: the key existed

    return run(engine, work)


def list_audit(engine: Engine, workflow_id: str) -> list[dict]:
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.AuditEntry).where(t.AuditEntry.workflow_id == workflow_id)
                      .order_by(t.AuditEntry.at, t.AuditEntry.id))
        return [row_dict(r) for r in rows.all()]

    return run(engine, work, write=False)


def notification_sent(engine: Engine, key: str) -> bool:
    return run(engine, lambda s: s.get(t.Notification, key) is not None, write=False)


def mark_notification_sent(engine: Engine, key: str, to_role: str, subject: str) -> bool:
    """Remember that the e-mail ``key`` went out; True when this call recorded it first."""
    require(key, "key")
    no = sql_table(t.Notification)

    def work(s: Session) -> bool:
        stmt = insert_for(s)(no).values(key=key, to_role=to_role, subject=subject, sent_at=now_utc())
        return s.exec(stmt.on_conflict_do_nothing(index_elements=[no.c.key]).returning(no.c.key)).first() is not None

    return run(engine, work)
