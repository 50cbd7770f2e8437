"""Agreements and their DocuSign envelopes, one row per onboarding and agreement kind."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Engine, update
from sqlmodel import Session
from sqlmodel import select as select_rows

from store import tables as t
from store.common import NotFound, one_of, require, retry_race, row_dict, sql_table
from store.db import run
from store.tables import now_utc


AGREEMENT_STATUSES = frozenset({"created", "sent", "delivered", "signed", "completed", "declined", "voided",
                                "terminated"})
#: an envelope that got this far never goes back to "created"/"sent" (a send repeated by a workflow reset)
_PAST_SENT = frozenset({"delivered", "signed", "completed", "declined", "voided", "terminated"})


def upsert_agreement(engine: Engine, workflow_id: str, kind: str, template_version: str, *,
                     envelope_id: str | None = None, status: str | None = None, status_at: datetime | None = None,
                     document_path: str | None = None, sha256: str | None = None) -> None:
    """Create or update the agreement of ``kind``; ``None`` arguments leave the stored value alone.

    Connect events can arrive out of order, so a status older than the stored ``status_at`` is
    ignored, and a "sent" (a send that found its envelope, e.g. re-run after ``mdco repair`` reset the
    workflow) never turns an envelope that was delivered or completed back. A new ``envelope_id`` (void and
    resend) starts the status history afresh.
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
        stale = (status_at is not None and row.status_at is not None and status_at < row.status_at) or (
            status in ("created", "sent") and row.status in _PAST_SENT)
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


def set_renewal_date(engine: Engine, workflow_id: str, kind: str, renews_on: date) -> None:
    """The agreement's term now ends on ``renews_on`` (a renewal signed, or a term other than the
    default); the compliance sweep's ladder for it starts afresh at the new date."""
    def work(s: Session) -> None:
        row = s.get(t.Agreement, (workflow_id, kind), with_for_update=True)
        if row is None:
            raise NotFound(f"agreement {kind} of {workflow_id}: no such agreement")
        row.renews_on = renews_on
        s.add(row)

    run(engine, work)


def fill_renewal_dates(engine: Engine, workflow_id: str, renews_on: date) -> int:
    """Store ``renews_on`` (the default term) on the onboarding's signed agreements that have no renewal
    date yet; one set never moves. How many were filled."""
    ag = sql_table(t.Agreement)

    def work(s: Session) -> int:
        return s.exec(update(ag).where(ag.c.workflow_id == workflow_id, ag.c.status == "completed",
                                       ag.c.renews_on.is_(None)).values(renews_on=renews_on)).rowcount

    return run(engine, work)


def terminate_agreements(engine: Engine, workflow_id: str, at: datetime) -> list[str]:
    """The engagement ended: the onboarding's signed agreements become ``terminated`` as of ``at``
    (``status_at``; a late Connect event older than that is ignored). Safe to repeat: the kinds
    terminated, including those an earlier call terminated."""
    def work(s: Session) -> list[str]:
        rows = s.exec(select_rows(t.Agreement).where(t.Agreement.workflow_id == workflow_id)
                      .with_for_update()).all()
        for row in rows:
            if row.status == "completed":
                row.status, row.status_at = "terminated", at
                s.add(row)
        return sorted(r.kind for r in rows if r.status == "terminated")

    return run(engine, work)
