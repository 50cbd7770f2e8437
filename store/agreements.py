"""Agreements and their DocuSign envelopes, one row per onboarding and agreement kind."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session
from sqlmodel import select as select_rows

from store import tables as t
from store.common import one_of, require, retry_race, row_dict
from store.db import run
from store.tables import now_utc


AGREEMENT_STATUSES = frozenset({"created", "sent", "delivered", "signed", "completed", "declined", "voided"})


def upsert_agreement(engine: Engine, workflow_id: str, kind: str, template_version: str, *,
                     envelope_id: str | None = None, status: str | None = None, status_at: datetime | None = None,
                     document_path: str | None = None, sha256: str | None = None) -> None:
    """Create or update the agreement of ``kind``; ``None`` arguments leave the stored value alone.

    Connect events can arrive out of order, so a status older than the stored ``status_at`` is
    ignored. A new ``envelope_id`` (void and resend) starts the status history afresh.
    """
    require(workflow_id, "workflow_id")
    require(kind, "kind")
    require(template_version, "template_version")
    if status is not None:
        status = one_of(status.lower(), AGREEMENT_STATUSES, "status")

    def work(s: Session) -> None:
        if envelope_id is not None:
            owner = s.exec(select_rows(t.Agreement).where(t.Agreement.envelope_id == envelope_id)).first()
            if owner is not None and (owner.workflow_id, owner.kind) != (workflow_id, kind):
                raise ValueError(f"envelope_id {envelope_id}: already belongs to another agreement")
        row = s.get(t.Agreement, (workflow_id, kind), with_for_update=True)
        if row is None:
            row = t.Agreement(workflow_id=workflow_id, kind=kind, template_version=template_version)
        row.template_version = template_version
        if envelope_id is not None and envelope_id != row.envelope_id:
            if row.envelope_id is not None:
                row.status, row.status_at, row.sent_at, row.completed_at = "created", None, None, None
            row.envelope_id = envelope_id
        if document_path is not None:
            row.document_path = document_path
        if sha256 is not None:
            row.sha256 = sha256
        stale = status_at is not None and row.status_at is not None and status_at < row.status_at
        if status is not None and not stale:
            row.status = status
            row.status_at = status_at if status_at is not None else row.status_at
            when = status_at or now_utc()
            if status == "sent" and row.sent_at is None:
                row.sent_at = when
            if status == "completed" and row.completed_at is None:
                row.completed_at = when
        s.add(row)

    run(engine, work, retry_on=retry_race)


def get_agreement(engine: Engine, workflow_id: str, kind: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.Agreement, (workflow_id, kind)), write=False)
    return row_dict(row) if row else None


def list_agreements(engine: Engine, workflow_id: str) -> list[dict]:
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.Agreement).where(t.Agreement.workflow_id == workflow_id).order_by(t.Agreement.kind))
        return [row_dict(r) for r in rows.all()]

    return run(engine, work, write=False)


def agreement_by_envelope(engine: Engine, envelope_id: str) -> dict | None:
    def work(s: Session) -> dict | None:
        row = s.exec(select_rows(t.Agreement).where(t.Agreement.envelope_id == envelope_id)).first()
        return row_dict(row) if row else None

    return run(engine, work, write=False)
