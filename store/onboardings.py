"""One clinic's onboarding: the clinic, the onboarding record and its oversight plan, physician offers,
protocols, and the pharmacies assigned to it."""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlmodel import Session
from sqlmodel import select as select_rows

from domain.codes import Service, SlaStatus, Stage
from domain.intake import Intake
from domain.onboarding import OfferView, OversightPlan, PharmacyAssignment, ProtocolView
from domain.protocols import ProtocolContent
from store import tables as t
from store.common import NotFound, one_of, require, retry_race, row_dict, sql_table
from store.db import insert_for, run


CLINIC_STATUSES = frozenset({"pending", "active", "cancelled"})
OFFER_STATUSES = frozenset({"open", "accepted", "declined", "expired", "withdrawn", "lost"})
ASSIGNMENT_STATUSES = frozenset({"packet_sent", "confirmed"})
ONBOARDING_FIELDS = frozenset(
    {"stage", "sla_status", "physician_npi", "started_at", "matched_at", "launched_at", "cancelled_at", "cancel_reason"}
)


def _services(values: Iterable[str], field: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(Service(v).value)
        except ValueError:
            raise ValueError(f"{field}[{i}]: {v!r} is not a known service") from None
    return out


# ---------------------------------------------------------------- clinics
def upsert_clinic(engine: Engine, intake: Intake) -> None:
    """Store the clinic as sales described it; its status (pending/active/cancelled) is left alone."""
    if not isinstance(intake, Intake):
        raise ValueError(f"intake: expected an Intake, got {type(intake).__name__}")
    cl = sql_table(t.Clinic)
    values = {
        "name": intake.clinic_name, "contact_name": intake.contact.name, "contact_email": str(intake.contact.email),
        "contact_phone": intake.contact.phone, "states": list(intake.states), "care_model": str(intake.care_model),
        "services": [str(x) for x in intake.services], "monthly_patients": intake.monthly_patients,
        "intake": intake.model_dump(mode="json"),
    }

    def work(s: Session) -> None:
        ins = insert_for(s)(cl).values(key=intake.clinic_key, status="pending", **values)
        s.exec(ins.on_conflict_do_update(index_elements=[cl.c.key], set_={c: ins.excluded[c] for c in values}))

    run(engine, work)


def get_clinic(engine: Engine, clinic_key: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.Clinic, clinic_key), write=False)
    return row_dict(row) if row else None


def activate_clinic(engine: Engine, clinic_key: str, physician_npi: str, at: datetime) -> None:
    """Launch: the clinic is active under its medical director from ``at``."""
    require(physician_npi, "physician_npi")
    cl = sql_table(t.Clinic)

    def work(s: Session) -> None:
        done = s.exec(update(cl).where(cl.c.key == clinic_key)
                      .values(status="active", activated_at=at, physician_npi=physician_npi))
        if done.rowcount != 1:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")

    run(engine, work)


def set_clinic_status(engine: Engine, clinic_key: str, status: str) -> None:
    one_of(status, CLINIC_STATUSES, "status")
    cl = sql_table(t.Clinic)

    def work(s: Session) -> None:
        if s.exec(update(cl).where(cl.c.key == clinic_key).values(status=status)).rowcount != 1:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")

    run(engine, work)


# ---------------------------------------------------------------- onboardings
def record_onboarding(engine: Engine, workflow_id: str, clinic_key: str, **fields: Any) -> None:
    """Create or update the onboarding's row; only the given fields change."""
    require(workflow_id, "workflow_id")
    require(clinic_key, "clinic_key")
    unknown = sorted(set(fields) - ONBOARDING_FIELDS)
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an onboarding field (use {', '.join(sorted(ONBOARDING_FIELDS))})")
    if "stage" in fields:
        fields["stage"] = one_of(str(fields["stage"]), {s.value for s in Stage}, "stage")
    if "sla_status" in fields:
        fields["sla_status"] = one_of(str(fields["sla_status"]), {s.value for s in SlaStatus}, "sla_status")
    for name in ("started_at", "matched_at", "launched_at", "cancelled_at"):
        if fields.get(name) is not None and not isinstance(fields[name], datetime):
            raise ValueError(f"{name}: must be a datetime")
    ob = sql_table(t.Onboarding)

    def work(s: Session) -> None:
        ins = insert_for(s)(ob).values(workflow_id=workflow_id, clinic_key=clinic_key, **fields)
        s.exec(ins.on_conflict_do_update(
            index_elements=[ob.c.workflow_id],
            set_={c: ins.excluded[c] for c in ("clinic_key", *fields)},
        ))

    run(engine, work)


def save_plan(engine: Engine, workflow_id: str, plan: OversightPlan) -> None:
    """Attach the oversight plan to an onboarding recorded earlier by ``record_onboarding``."""
    if not isinstance(plan, OversightPlan):
        raise ValueError(f"plan: expected an OversightPlan, got {type(plan).__name__}")
    ob = sql_table(t.Onboarding)
    data = plan.model_dump(mode="json")

    def work(s: Session) -> None:
        if s.exec(update(ob).where(ob.c.workflow_id == workflow_id).values(plan=data)).rowcount != 1:
            raise NotFound(f"workflow_id {workflow_id}: no onboarding recorded")

    run(engine, work)


def get_onboarding(engine: Engine, workflow_id: str) -> dict | None:
    """The onboarding's row as a dict; ``plan`` is the plan's JSON (see ``get_plan`` for the model)."""
    row = run(engine, lambda s: s.get(t.Onboarding, workflow_id), write=False)
    return row_dict(row) if row else None


def placements(engine: Engine, clinic_key: str) -> list[dict]:
    """Every onboarding of the clinic (the first placement and its replacements), oldest first."""
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.Onboarding).where(t.Onboarding.clinic_key == clinic_key)).all()
        return sorted((row_dict(r) for r in rows), key=lambda r: (r["started_at"] is None, r["started_at"] or 0))

    return run(engine, work, write=False)


def get_plan(engine: Engine, workflow_id: str) -> OversightPlan | None:
    row = get_onboarding(engine, workflow_id)
    return OversightPlan.model_validate(row["plan"]) if row and row["plan"] else None


# ---------------------------------------------------------------- offers
def upsert_offer(engine: Engine, workflow_id: str, npi: str, status: str, sent_at: datetime, expires_at: datetime,
                 answered_at: datetime | None = None, reason: str = "") -> None:
    """Record an offer and its answer. An answered offer never goes back to ``open`` (a late retry of
    the send activity must not undo an accept)."""
    require(workflow_id, "workflow_id")
    one_of(status, OFFER_STATUSES, "status")
    if expires_at < sent_at:
        raise ValueError("expires_at: must not be before sent_at")

    def work(s: Session) -> None:
        if s.get(t.Physician, npi) is None:
            raise NotFound(f"npi {npi}: no such physician")
        row = s.get(t.Offer, (workflow_id, npi), with_for_update=True)
        if row is None:
            row = t.Offer(workflow_id=workflow_id, npi=npi, status=status, sent_at=sent_at, expires_at=expires_at)
        elif row.status != "open" and status == "open":
            row.sent_at, row.expires_at = sent_at, expires_at
            s.add(row)
            return
        row.status, row.sent_at, row.expires_at, row.answered_at, row.reason = (
            status, sent_at, expires_at, answered_at, reason)
        s.add(row)

    run(engine, work, retry_on=retry_race)


def list_offers(engine: Engine, workflow_id: str) -> list[OfferView]:
    def work(s: Session) -> list[OfferView]:
        rows = s.exec(select_rows(t.Offer).where(t.Offer.workflow_id == workflow_id)
                      .order_by(t.Offer.sent_at, t.Offer.npi)).all()
        return [OfferView.model_validate(r.model_dump(exclude={"workflow_id"})) for r in rows]

    return run(engine, work, write=False)


def withdraw_open_offers(engine: Engine, workflow_id: str, reason: str, at: datetime) -> int:
    """Withdraw the workflow's offers still ``open`` (answered ones stay as they are); returns how many."""
    require(workflow_id, "workflow_id")
    of = sql_table(t.Offer)

    def work(s: Session) -> int:
        return s.exec(update(of).where(of.c.workflow_id == workflow_id, of.c.status == "open")
                      .values(status="withdrawn", answered_at=at, reason=reason)).rowcount

    return run(engine, work)


def offer_history(engine: Engine, npis: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Per physician, from accepted/declined offers: (median hours to answer, share accepted).

    Physicians who never answered an offer are absent; matching treats them as unknown.
    """
    of = sql_table(t.Offer)

    def work(s: Session) -> dict[str, tuple[float, float]]:
        q = select(of.c.npi, of.c.status, of.c.sent_at, of.c.answered_at).where(
            of.c.status.in_(("accepted", "declined")), of.c.answered_at.isnot(None))
        if npis is not None:
            q = q.where(of.c.npi.in_(npis))
        hours: dict[str, list[float]] = defaultdict(list)
        accepted: dict[str, int] = defaultdict(int)
        for row in s.exec(q):
            hours[row.npi].append(max(0.0, (row.answered_at - row.sent_at).total_seconds() / 3600))
            accepted[row.npi] += row.status == "accepted"
        return {n: (statistics.median(h), accepted[n] / len(h)) for n, h in hours.items()}

    return run(engine, work, write=False)


# ---------------------------------------------------------------- protocols
def save_protocol(engine: Engine, workflow_id: str, service: str, template_version: str, body: str,
                  sha256: str, content: dict | None = None) -> None:
    """Store a generated protocol (and the structured ``content`` it was rendered from); a changed body
    (new sha256) needs approving again."""
    require(workflow_id, "workflow_id")
    service = _services([service], "service")[0]
    require(template_version, "template_version")
    if hashlib.sha256(body.encode()).hexdigest() != sha256:
        raise ValueError("sha256: does not match the SHA-256 of body")

    def work(s: Session) -> None:
        row = s.get(t.Protocol, (workflow_id, service), with_for_update=True)
        if row is None:
            row = t.Protocol(workflow_id=workflow_id, service=service, template_version=template_version,
                             body=body, sha256=sha256)
        elif row.sha256 != sha256:
            row.body, row.sha256, row.approved_at, row.approved_by = body, sha256, None, None
        row.template_version = template_version
        s.add(row)
        if content is not None:
            data = s.get(t.ProtocolContentRow, (workflow_id, service), with_for_update=True)
            if data is None:
                data = t.ProtocolContentRow(workflow_id=workflow_id, service=service, sha256=sha256, content=content)
            data.sha256, data.content = sha256, content
            s.add(data)

    run(engine, work, retry_on=retry_race)


def approve_protocols(engine: Engine, workflow_id: str, npi: str, at: datetime,
                      sha256s: list[str] | None = None) -> int:
    """The matched physician approves every pending protocol (with ``sha256s``: only the documents with
    those SHA-256s, the ones the approval was bound to); returns how many were newly approved."""
    require(npi, "npi")
    pr = sql_table(t.Protocol)

    def work(s: Session) -> int:
        where = [pr.c.workflow_id == workflow_id, pr.c.approved_at.is_(None)]
        if sha256s is not None:
            where.append(pr.c.sha256.in_(list(sha256s)))
        done = s.exec(update(pr).where(*where).values(approved_at=at, approved_by=npi))
        return done.rowcount

    return run(engine, work)


def list_protocols(engine: Engine, workflow_id: str) -> list[ProtocolView]:
    return [ProtocolView(service=d["service"], template_version=d["template_version"], sha256=d["sha256"],
                         status="approved" if d["approved_at"] else "pending_approval")
            for d in protocol_documents(engine, workflow_id)]


def protocol_documents(engine: Engine, workflow_id: str) -> list[dict]:
    """Each protocol with its full text (``body``), SHA-256 and approval (``approved_by`` NPI, ``approved_at``)."""
    rows = run(engine, lambda s: s.exec(select_rows(t.Protocol).where(t.Protocol.workflow_id == workflow_id)
                                        .order_by(t.Protocol.service)).all(), write=False)
    return [row_dict(r) for r in rows]


def protocol_contents(engine: Engine, workflow_id: str) -> dict[str, dict]:
    """The structured content of each protocol, by service, as ``{"sha256": <document>, "content": {...}}``
    (absent for protocols prepared before contents were kept)."""
    def work(s: Session) -> dict[str, dict]:
        rows = s.exec(select_rows(t.ProtocolContentRow).where(t.ProtocolContentRow.workflow_id == workflow_id)).all()
        return {r.service: {"sha256": r.sha256, "content": dict(r.content)} for r in rows}

    return run(engine, work, write=False)


def protocols_shown(engine: Engine, workflow_id: str) -> list[dict]:
    """``mdco protocols show --json``: one entry per service — ``service``, ``version``, ``sha256`` (of
    ``document``), ``status``, ``document`` and the CONTRACT content (``delegation``, ``dosing``, ``gfe``,
    ``contraindications``, ``labs``, ``adverse_events``) the document was rendered from. A protocol prepared
    before its content was kept gets it rebuilt from the stored intake and plan
    (``content_matches_document`` false: the document itself is what was approved)."""
    from domain.protocols import build_protocol

    onboarding = get_onboarding(engine, workflow_id)
    if onboarding is None:
        raise NotFound(f"{workflow_id}: no onboarding recorded")
    contents = protocol_contents(engine, workflow_id)
    out = []
    for doc in protocol_documents(engine, workflow_id):
        kept = contents.get(doc["service"])
        if kept is not None and kept["sha256"] == doc["sha256"]:
            content, matches = ProtocolContent.model_validate(kept["content"]), True
        else:
            clinic = get_clinic(engine, onboarding["clinic_key"]) or {}
            content = build_protocol(Service(doc["service"]), Intake.model_validate(clinic["intake"]),
                                     OversightPlan.model_validate(onboarding["plan"]), version=doc["template_version"])
            matches = False
        out.append({"service": doc["service"], "version": doc["template_version"], "sha256": doc["sha256"],
                    "status": "approved" if doc["approved_at"] else "pending_approval", "document": doc["body"],
                    **content.contract_fields(), "data_version": content.data_version, "product": content.product,
                    "approved_by": doc["approved_by"],
                    "approved_at": doc["approved_at"].isoformat() if doc["approved_at"] else None,
                    "content_matches_document": matches})
    return out


# ---------------------------------------------------------------- pharmacies per onboarding
def upsert_pharmacy_assignment(engine: Engine, workflow_id: str, pharmacy_id: str, services: list[str],
                               status: str, at: datetime) -> None:
    """Record a prescriber packet sent (``packet_sent``) or its confirmation (``confirmed``).
    A confirmation is never undone by a later packet resend."""
    require(workflow_id, "workflow_id")
    one_of(status, ASSIGNMENT_STATUSES, "status")
    services = _services(services, "services")

    def work(s: Session) -> None:
        if s.get(t.Pharmacy, pharmacy_id) is None:
            raise NotFound(f"pharmacy_id {pharmacy_id}: no such pharmacy")
        row = s.get(t.PharmacyAssignment, (workflow_id, pharmacy_id), with_for_update=True)
        if row is None:
            row = t.PharmacyAssignment(workflow_id=workflow_id, pharmacy_id=pharmacy_id, status=status)
        row.services = services
        if status == "packet_sent":
            row.packet_sent_at = at
        else:
            row.status = "confirmed"
            row.confirmed_at = row.confirmed_at or at
        s.add(row)

    run(engine, work, retry_on=retry_race)


def list_pharmacy_assignments(engine: Engine, workflow_id: str) -> list[PharmacyAssignment]:
    def work(s: Session) -> list[PharmacyAssignment]:
        rows = s.exec(select(t.PharmacyAssignment, t.Pharmacy)
                      .join(t.Pharmacy, t.Pharmacy.pharmacy_id == t.PharmacyAssignment.pharmacy_id)
                      .where(t.PharmacyAssignment.workflow_id == workflow_id)
                      .order_by(t.PharmacyAssignment.pharmacy_id)).all()
        return [PharmacyAssignment(pharmacy_id=a.pharmacy_id, name=p.name, kind=p.kind, services=a.services,
                                   status=a.status) for a, p in rows]

    return run(engine, work, write=False)
