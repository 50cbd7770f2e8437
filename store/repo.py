"""Repository: every read and write the activities, API and CLI make, one transaction per call.

Temporal retries activities, so every ``upsert_*`` / ``record_*`` / ``save_*`` here is idempotent:
calling it twice with the same arguments leaves the same state. Business keys (workflow id + step)
are unique keys in ``store.tables``; a concurrent duplicate insert is retried and then finds the row.
Bad arguments raise ``ValueError`` naming the field before anything is written.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, Table, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel
from sqlmodel import select as select_rows

from domain.codes import Service, SlaStatus, Stage
from domain.intake import Intake, check_state
from domain.onboarding import OfferView, OversightPlan, PharmacyAssignment, ProtocolView, ReservationResult
from domain.records import DeaRegistration, License, PharmacyRecord, PhysicianRecord
from store import tables as t
from store.db import insert_for, is_transient, run
from store.tables import now_utc


#: Rows per IN (...) list / executemany batch; well under SQLite's bound-parameter limit.
CHUNK = 500
#: Up to this many NPIs are passed to a query as a literal list (SQLite allows 32,766 parameters).
LIST_FILTER_MAX = 5_000

CLINIC_STATUSES = frozenset({"pending", "active", "cancelled"})
OFFER_STATUSES = frozenset({"open", "accepted", "declined", "expired", "withdrawn", "lost"})
ASSIGNMENT_STATUSES = frozenset({"packet_sent", "confirmed"})
AGREEMENT_STATUSES = frozenset({"created", "sent", "delivered", "signed", "completed", "declined", "voided"})
ONBOARDING_FIELDS = frozenset(
    {"stage", "sla_status", "physician_npi", "started_at", "matched_at", "launched_at", "cancelled_at", "cancel_reason"}
)


class NotFound(LookupError):
    """The record an operation needs does not exist (the message names it)."""


class ImportSummary(BaseModel):
    created: int
    updated: int


# ---------------------------------------------------------------- helpers
def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined, return-value]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _is_unique_race(exc: BaseException) -> bool:
    """A concurrent writer inserted the same key first: re-running the transaction finds its row."""
    if not isinstance(exc, IntegrityError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(exc.orig)


def _retry_race(exc: BaseException) -> bool:
    return is_transient(exc) or _is_unique_race(exc)


def _row_dict(row: SQLModel) -> dict[str, Any]:
    return row.model_dump()


def _require(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: must be a non-empty string")
    return value


def _one_of(value: str, allowed: Iterable[str], field: str) -> str:
    allowed = sorted(allowed)
    if value not in allowed:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _services(values: Iterable[str], field: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(Service(v).value)
        except ValueError:
            raise ValueError(f"{field}[{i}]: {v!r} is not a known service") from None
    return out


def _states(values: Iterable[str], field: str) -> list[str]:
    out: list[str] = []
    for i, v in enumerate(values):
        try:
            code = check_state(v)
        except ValueError as exc:
            raise ValueError(f"{field}[{i}]: {exc}") from None
        if code not in out:
            out.append(code)
    return out


def _duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]


# ---------------------------------------------------------------- physicians
_PHYSICIAN_COLUMNS = (
    "first_name", "last_name", "degree", "email", "phone", "home_state", "max_clinics", "active_clinics",
    "malpractice_expires", "board_certifications", "telehealth", "supervised_midlevels",
)


def _check_batch(records: Sequence[Any], model: type, key: str) -> None:
    """Every record of ``model`` and its ``key`` unique within the import."""
    for i, r in enumerate(records):
        if not isinstance(r, model):
            raise ValueError(f"records[{i}]: expected a {model.__name__}, got {type(r).__name__}")
    dupes = _duplicates(getattr(r, key) for r in records)
    if dupes:
        raise ValueError(f"{key}: {', '.join(dupes)} appear(s) more than once in the import")


def _check_physician_batch(records: list[PhysicianRecord]) -> None:
    _check_batch(records, PhysicianRecord, "npi")
    for r in records:
        for field, values in (("licenses", [x.state for x in r.licenses]), ("dea", [x.state for x in r.dea]),
                              ("therapies", [str(x) for x in r.therapies])):
            dupes = _duplicates(values)
            if dupes:
                raise ValueError(f"npi {r.npi}: {field}: {', '.join(dupes)} listed more than once")


def _rejected(exc: IntegrityError) -> ValueError:
    """The database's reason without the offending row's values (they hold names and e-mails)."""
    diag = getattr(exc.orig, "diag", None)
    reason = getattr(diag, "message_primary", None) or str(exc.orig)
    return ValueError(f"import rejected by the database, nothing imported: {reason}")


def upsert_physicians(engine: Engine, records: Sequence[PhysicianRecord]) -> ImportSummary:
    """Import a roster in one transaction: all rows or none.

    A known NPI is updated and its licences, DEA registrations and therapies replaced. The exclusion
    flags only ever get set by an import, never cleared: an OIG match must be lifted by
    ``set_exclusion`` on purpose, not by re-importing a file that does not know about it.
    """
    records = sorted(records, key=lambda r: r.npi)  # one lock order for concurrent imports
    _check_physician_batch(records)
    phys, lic, dea, ther = _table(t.Physician), _table(t.License), _table(t.DeaRegistration), _table(t.PhysicianTherapy)

    def work(s: Session) -> ImportSummary:
        npis = [r.npi for r in records]
        existing: set[str] = set()
        for chunk in _chunks(npis):
            existing.update(s.exec(select(phys.c.npi).where(phys.c.npi.in_(chunk))).scalars())
        now = now_utc()
        rows = [{"npi": r.npi, **{c: getattr(r, c) for c in _PHYSICIAN_COLUMNS},
                 "excluded": r.excluded, "exclusion_review": r.exclusion_review, "updated_at": now}
                for r in records]
        ins = insert_for(s)(phys)
        stmt = ins.on_conflict_do_update(
            index_elements=[phys.c.npi],
            set_={**{c: ins.excluded[c] for c in (*_PHYSICIAN_COLUMNS, "updated_at")},
                  "excluded": phys.c.excluded | ins.excluded.excluded,
                  "exclusion_review": phys.c.exclusion_review | ins.excluded.exclusion_review},
        )
        for chunk in _chunks(rows):
            s.exec(stmt, params=chunk)
        for chunk in _chunks(npis):
            for child in (lic, dea, ther):
                s.exec(child.delete().where(child.c.npi.in_(chunk)))
        lic_rows = [{"npi": r.npi, "state": x.state, "number": x.number, "expires": x.expires}
                    for r in records for x in r.licenses]
        dea_rows = [{"npi": r.npi, "state": x.state, "number": x.number, "expires": x.expires}
                    for r in records for x in r.dea]
        ther_rows = [{"npi": r.npi, "service": str(x)} for r in records for x in r.therapies]
        for child, child_rows in ((lic, lic_rows), (dea, dea_rows), (ther, ther_rows)):
            for chunk in _chunks(child_rows):
                s.exec(child.insert(), params=chunk)
        return ImportSummary(created=len(set(npis) - existing), updated=len(existing))

    try:
        return run(engine, work)
    except IntegrityError as exc:
        raise _rejected(exc) from None


def _load_physicians(s: Session, npi_filter: Any, states: list[str] | None = None) -> list[PhysicianRecord]:
    """Physicians matching ``npi_filter`` (a clause on an ``npi`` column) with their children, in 4 queries;
    with ``states``, only the licences and DEA registrations held in those states."""
    phys, lic, dea, ther = _table(t.Physician), _table(t.License), _table(t.DeaRegistration), _table(t.PhysicianTherapy)
    children: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"licenses": [], "dea": [], "therapies": []})
    lic_q = select(lic.c.npi, lic.c.state, lic.c.number, lic.c.expires).where(npi_filter(lic.c.npi))
    dea_q = select(dea.c.npi, dea.c.state, dea.c.number, dea.c.expires).where(npi_filter(dea.c.npi))
    if states:
        lic_q, dea_q = lic_q.where(lic.c.state.in_(states)), dea_q.where(dea.c.state.in_(states))
    for row in s.exec(lic_q.order_by(lic.c.npi, lic.c.id)):
        children[row.npi]["licenses"].append(License.model_construct(state=row.state, number=row.number,
                                                                     expires=row.expires))
    for row in s.exec(dea_q.order_by(dea.c.npi, dea.c.id)):
        children[row.npi]["dea"].append(DeaRegistration.model_construct(state=row.state, number=row.number,
                                                                        expires=row.expires))
    for row in s.exec(select(ther.c.npi, ther.c.service).where(npi_filter(ther.c.npi)).order_by(ther.c.npi, ther.c.id)):
        children[row.npi]["therapies"].append(Service(row.service))
    out = []
    for row in s.exec(select(phys).where(npi_filter(phys.c.npi)).order_by(phys.c.npi)).mappings():
        data = dict(row)
        data.pop("updated_at")
        # Rows were validated on the way in; constructing skips re-validating 10,000 e-mail addresses.
        out.append(PhysicianRecord.model_construct(**data, **children[row["npi"]]))
    return out


def _load_physicians_pg(s: Session, npis: Any, states: list[str] | None) -> list[PhysicianRecord]:
    """Postgres: physicians whose NPI is in the ``npis`` subquery, children aggregated as JSON in the
    same statement — one round trip instead of five."""
    phys, lic, dea, ther = _table(t.Physician), _table(t.License), _table(t.DeaRegistration), _table(t.PhysicianTherapy)

    def children(table: Table, *cols: Any, by_state: bool) -> Any:
        where = table.c.npi == phys.c.npi
        if by_state and states:
            where = where & table.c.state.in_(states)
        agg = func.coalesce(func.json_agg(aggregate_order_by(func.json_build_array(*cols), table.c.id)),
                            func.json_build_array())
        return select(agg).where(where).scalar_subquery()

    query = select(
        *[c for c in phys.c if c.name != "updated_at"],
        children(lic, lic.c.state, lic.c.number, lic.c.expires, by_state=True).label("licences_json"),
        children(dea, dea.c.state, dea.c.number, dea.c.expires, by_state=True).label("dea_json"),
        select(func.coalesce(func.json_agg(aggregate_order_by(ther.c.service, ther.c.id)), func.json_build_array()))
        .where(ther.c.npi == phys.c.npi).scalar_subquery().label("therapies_json"),
    ).where(phys.c.npi.in_(npis)).order_by(phys.c.npi)
    out = []
    for row in s.exec(query).mappings():
        data = dict(row)
        lics = [License.model_construct(state=a, number=b, expires=date.fromisoformat(c))
                for a, b, c in data.pop("licences_json")]
        deas = [DeaRegistration.model_construct(state=a, number=b, expires=date.fromisoformat(c))
                for a, b, c in data.pop("dea_json")]
        services = [Service(x) for x in data.pop("therapies_json")]
        out.append(PhysicianRecord.model_construct(**data, licenses=lics, dea=deas, therapies=services))
    return out


def list_physicians(engine: Engine, licensed_in: list[str] | None = None, *,
                    trim_to_states: bool = False) -> list[PhysicianRecord]:
    """Every physician, or only those holding a licence in EVERY state of ``licensed_in`` (any expiry).

    ``trim_to_states`` loads only the licences/DEA registrations in those states — all that matching
    reads, and a tenth of the rows for physicians licensed in many states."""
    states = _states(licensed_in or [], "licensed_in")
    lic = _table(t.License)

    def work(s: Session) -> list[PhysicianRecord]:
        if not states:
            return _load_physicians(s, lambda col: col.isnot(None))
        # One licence row per physician in the first state, then one probe per other state on the
        # unique (npi, state) index: ~3x faster than GROUP BY npi HAVING count = n over every row of
        # the n states. The NPIs are fetched once and passed as a list, not re-run as a subquery
        # in each of the 4 loads.
        if s.get_bind().dialect.name == "postgresql":  # index-only scan of (state, npi), one pass
            licensed = (select(lic.c.npi).where(lic.c.state.in_(states)).group_by(lic.c.npi)
                        .having(func.count() == len(states)))
            return _load_physicians_pg(s, licensed, states if trim_to_states else None)
        else:
            first = lic.alias("l0")
            licensed = select(first.c.npi).where(first.c.state == states[0])
            for i, st in enumerate(states[1:], 1):
                other = lic.alias(f"l{i}")
                licensed = licensed.join(other, (other.c.npi == first.c.npi) & (other.c.state == st))
        npis = list(s.exec(licensed).scalars())
        if not npis:
            return []
        only = states if trim_to_states else None
        if len(npis) > LIST_FILTER_MAX:
            return _load_physicians(s, lambda col: col.in_(licensed), only)
        return _load_physicians(s, lambda col: col.in_(npis), only)

    return run(engine, work, write=False)


def get_physician(engine: Engine, npi: str) -> PhysicianRecord | None:
    found = run(engine, lambda s: _load_physicians(s, lambda col: col == npi), write=False)
    return found[0] if found else None


def set_exclusion(engine: Engine, npi: str, excluded: bool, review: bool) -> None:
    """Record the outcome of an OIG LEIE screen for one physician."""
    phys = _table(t.Physician)

    def work(s: Session) -> None:
        done = s.exec(update(phys).where(phys.c.npi == npi).values(excluded=excluded, exclusion_review=review))
        if done.rowcount != 1:
            raise NotFound(f"npi {npi}: no such physician")

    run(engine, work)


# ---------------------------------------------------------------- pharmacies
_PHARMACY_COLUMNS = ("name", "kind", "licensed_states", "capabilities", "services", "email")


def upsert_pharmacies(engine: Engine, records: Sequence[PharmacyRecord]) -> ImportSummary:
    """Import pharmacies in one transaction; a known ``pharmacy_id`` is updated, never duplicated."""
    records = sorted(records, key=lambda r: r.pharmacy_id)
    _check_batch(records, PharmacyRecord, "pharmacy_id")
    ph = _table(t.Pharmacy)

    def work(s: Session) -> ImportSummary:
        ids = [r.pharmacy_id for r in records]
        existing: set[str] = set()
        for chunk in _chunks(ids):
            existing.update(s.exec(select(ph.c.pharmacy_id).where(ph.c.pharmacy_id.in_(chunk))).scalars())
        now = now_utc()
        rows = [{"pharmacy_id": r.pharmacy_id, **r.model_dump(mode="json", include=set(_PHARMACY_COLUMNS)),
                 "updated_at": now} for r in records]
        ins = insert_for(s)(ph)
        stmt = ins.on_conflict_do_update(
            index_elements=[ph.c.pharmacy_id],
            set_={c: ins.excluded[c] for c in (*_PHARMACY_COLUMNS, "updated_at")},
        )
        for chunk in _chunks(rows):
            s.exec(stmt, params=chunk)
        return ImportSummary(created=len(set(ids) - existing), updated=len(existing))

    try:
        return run(engine, work)
    except IntegrityError as exc:
        raise _rejected(exc) from None


def list_pharmacies(engine: Engine) -> list[PharmacyRecord]:
    def work(s: Session) -> list[PharmacyRecord]:
        rows = s.exec(select_rows(t.Pharmacy).order_by(t.Pharmacy.pharmacy_id)).all()
        return [PharmacyRecord.model_validate(r.model_dump(include=set(_PHARMACY_COLUMNS) | {"pharmacy_id"}))
                for r in rows]

    return run(engine, work, write=False)


# ---------------------------------------------------------------- capacity
def reserve_physician(engine: Engine, workflow_id: str, npi: str) -> ReservationResult:
    """Take one clinic slot on ``npi`` for ``workflow_id``, atomically; never over-books.

    The slot is taken by a single conditional UPDATE (``active_clinics < max_clinics``), which
    Postgres row locks and SQLite's write lock make safe under concurrency. A workflow holds at most
    one live reservation; asking again for the same physician is a no-op success.
    """
    _require(workflow_id, "workflow_id")
    _require(npi, "npi")
    phys, res = _table(t.Physician), _table(t.CapacityReservation)

    def work(s: Session) -> ReservationResult:
        held = s.exec(select(res.c.npi, res.c.released_at).where(res.c.workflow_id == workflow_id)).first()
        if held is not None and held.released_at is None:
            if held.npi == npi:
                return ReservationResult(ok=True, reason="already reserved")
            return ReservationResult(ok=False, reason=f"workflow already holds a reservation on npi {held.npi}")
        took = s.exec(update(phys)
                      .where(phys.c.npi == npi, phys.c.active_clinics < phys.c.max_clinics, phys.c.excluded.is_(False))
                      .values(active_clinics=phys.c.active_clinics + 1))
        if took.rowcount != 1:
            row = s.exec(select(phys.c.excluded).where(phys.c.npi == npi)).first()
            if row is None:
                return ReservationResult(ok=False, reason=f"npi {npi}: no such physician")
            return ReservationResult(ok=False, reason="excluded" if row.excluded else "at capacity")
        now = now_utc()
        if held is None:
            s.exec(res.insert().values(workflow_id=workflow_id, npi=npi, reserved_at=now, released_at=None))
        else:
            reopened = s.exec(update(res).where(res.c.workflow_id == workflow_id, res.c.released_at.isnot(None))
                              .values(npi=npi, reserved_at=now, released_at=None))
            if reopened.rowcount != 1:  # someone re-reserved meanwhile: undo our take by re-running
                raise _Retry()
        return ReservationResult(ok=True)

    return run(engine, work, retry_on=lambda e: _retry_race(e) or isinstance(e, _Retry))


class _Retry(Exception):
    """Internal: the transaction saw a concurrent change and must run again."""


def release_physician(engine: Engine, workflow_id: str) -> bool:
    """Give the workflow's slot back; True when this call released it, False when nothing was held."""
    phys, res = _table(t.Physician), _table(t.CapacityReservation)

    def work(s: Session) -> bool:
        held = s.exec(select(res.c.npi).where(res.c.workflow_id == workflow_id, res.c.released_at.is_(None))).first()
        if held is None:
            return False
        gone = s.exec(update(res).where(res.c.workflow_id == workflow_id, res.c.released_at.is_(None))
                      .values(released_at=now_utc()))
        if gone.rowcount != 1:
            return False  # a concurrent release won
        s.exec(update(phys).where(phys.c.npi == held.npi, phys.c.active_clinics > 0)
               .values(active_clinics=phys.c.active_clinics - 1))
        return True

    return run(engine, work)


def get_reservation(engine: Engine, workflow_id: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.CapacityReservation, workflow_id), write=False)
    return _row_dict(row) if row else None


# ---------------------------------------------------------------- clinics
def upsert_clinic(engine: Engine, intake: Intake) -> None:
    """Store the clinic as sales described it; its status (pending/active/cancelled) is left alone."""
    if not isinstance(intake, Intake):
        raise ValueError(f"intake: expected an Intake, got {type(intake).__name__}")
    cl = _table(t.Clinic)
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
    return _row_dict(row) if row else None


def activate_clinic(engine: Engine, clinic_key: str, physician_npi: str, at: datetime) -> None:
    """Launch: the clinic is active under its medical director from ``at``."""
    _require(physician_npi, "physician_npi")
    cl = _table(t.Clinic)

    def work(s: Session) -> None:
        done = s.exec(update(cl).where(cl.c.key == clinic_key)
                      .values(status="active", activated_at=at, physician_npi=physician_npi))
        if done.rowcount != 1:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")

    run(engine, work)


def set_clinic_status(engine: Engine, clinic_key: str, status: str) -> None:
    _one_of(status, CLINIC_STATUSES, "status")
    cl = _table(t.Clinic)

    def work(s: Session) -> None:
        if s.exec(update(cl).where(cl.c.key == clinic_key).values(status=status)).rowcount != 1:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")

    run(engine, work)


# ---------------------------------------------------------------- onboardings
def record_onboarding(engine: Engine, workflow_id: str, clinic_key: str, **fields: Any) -> None:
    """Create or update the onboarding's row; only the given fields change."""
    _require(workflow_id, "workflow_id")
    _require(clinic_key, "clinic_key")
    unknown = sorted(set(fields) - ONBOARDING_FIELDS)
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an onboarding field (use {', '.join(sorted(ONBOARDING_FIELDS))})")
    if "stage" in fields:
        fields["stage"] = _one_of(str(fields["stage"]), {s.value for s in Stage}, "stage")
    if "sla_status" in fields:
        fields["sla_status"] = _one_of(str(fields["sla_status"]), {s.value for s in SlaStatus}, "sla_status")
    for name in ("started_at", "matched_at", "launched_at", "cancelled_at"):
        if fields.get(name) is not None and not isinstance(fields[name], datetime):
            raise ValueError(f"{name}: must be a datetime")
    ob = _table(t.Onboarding)

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
    ob = _table(t.Onboarding)
    data = plan.model_dump(mode="json")

    def work(s: Session) -> None:
        if s.exec(update(ob).where(ob.c.workflow_id == workflow_id).values(plan=data)).rowcount != 1:
            raise NotFound(f"workflow_id {workflow_id}: no onboarding recorded")

    run(engine, work)


def get_onboarding(engine: Engine, workflow_id: str) -> dict | None:
    """The onboarding's row as a dict; ``plan`` is the plan's JSON (see ``get_plan`` for the model)."""
    row = run(engine, lambda s: s.get(t.Onboarding, workflow_id), write=False)
    return _row_dict(row) if row else None


def get_plan(engine: Engine, workflow_id: str) -> OversightPlan | None:
    row = get_onboarding(engine, workflow_id)
    return OversightPlan.model_validate(row["plan"]) if row and row["plan"] else None


# ---------------------------------------------------------------- offers
def upsert_offer(engine: Engine, workflow_id: str, npi: str, status: str, sent_at: datetime, expires_at: datetime,
                 answered_at: datetime | None = None, reason: str = "") -> None:
    """Record an offer and its answer. An answered offer never goes back to ``open`` (a late retry of
    the send activity must not undo an accept)."""
    _require(workflow_id, "workflow_id")
    _one_of(status, OFFER_STATUSES, "status")
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

    run(engine, work, retry_on=_retry_race)


def list_offers(engine: Engine, workflow_id: str) -> list[OfferView]:
    def work(s: Session) -> list[OfferView]:
        rows = s.exec(select_rows(t.Offer).where(t.Offer.workflow_id == workflow_id)
                      .order_by(t.Offer.sent_at, t.Offer.npi)).all()
        return [OfferView.model_validate(r.model_dump(exclude={"workflow_id"})) for r in rows]

    return run(engine, work, write=False)


def offer_history(engine: Engine, npis: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Per physician, from accepted/declined offers: (median hours to answer, share accepted).

    Physicians who never answered an offer are absent; matching treats them as unknown.
    """
    of = _table(t.Offer)

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
                  sha256: str) -> None:
    """Store a generated protocol; a changed body (new sha256) needs approving again."""
    _require(workflow_id, "workflow_id")
    service = _services([service], "service")[0]
    _require(template_version, "template_version")
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

    run(engine, work, retry_on=_retry_race)


def approve_protocols(engine: Engine, workflow_id: str, npi: str, at: datetime) -> int:
    """The matched physician approves every pending protocol; returns how many were newly approved."""
    _require(npi, "npi")
    pr = _table(t.Protocol)

    def work(s: Session) -> int:
        done = s.exec(update(pr).where(pr.c.workflow_id == workflow_id, pr.c.approved_at.is_(None))
                      .values(approved_at=at, approved_by=npi))
        return done.rowcount

    return run(engine, work)


def list_protocols(engine: Engine, workflow_id: str) -> list[ProtocolView]:
    def work(s: Session) -> list[ProtocolView]:
        rows = s.exec(select_rows(t.Protocol).where(t.Protocol.workflow_id == workflow_id).order_by(t.Protocol.service)).all()
        return [ProtocolView(service=r.service, template_version=r.template_version, sha256=r.sha256,
                             status="approved" if r.approved_at else "pending_approval") for r in rows]

    return run(engine, work, write=False)


# ---------------------------------------------------------------- pharmacies per onboarding
def upsert_pharmacy_assignment(engine: Engine, workflow_id: str, pharmacy_id: str, services: list[str],
                               status: str, at: datetime) -> None:
    """Record a prescriber packet sent (``packet_sent``) or its confirmation (``confirmed``).
    A confirmation is never undone by a later packet resend."""
    _require(workflow_id, "workflow_id")
    _one_of(status, ASSIGNMENT_STATUSES, "status")
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

    run(engine, work, retry_on=_retry_race)


def list_pharmacy_assignments(engine: Engine, workflow_id: str) -> list[PharmacyAssignment]:
    def work(s: Session) -> list[PharmacyAssignment]:
        rows = s.exec(select(t.PharmacyAssignment, t.Pharmacy)
                      .join(t.Pharmacy, t.Pharmacy.pharmacy_id == t.PharmacyAssignment.pharmacy_id)
                      .where(t.PharmacyAssignment.workflow_id == workflow_id)
                      .order_by(t.PharmacyAssignment.pharmacy_id)).all()
        return [PharmacyAssignment(pharmacy_id=a.pharmacy_id, name=p.name, kind=p.kind, services=a.services,
                                   status=a.status) for a, p in rows]

    return run(engine, work, write=False)


# ---------------------------------------------------------------- agreements
def upsert_agreement(engine: Engine, workflow_id: str, kind: str, template_version: str, *,
                     envelope_id: str | None = None, status: str | None = None, status_at: datetime | None = None,
                     document_path: str | None = None, sha256: str | None = None) -> None:
    """Create or update the agreement of ``kind``; ``None`` arguments leave the stored value alone.

    Connect events can arrive out of order, so a status older than the stored ``status_at`` is
    ignored. A new ``envelope_id`` (void and resend) starts the status history afresh.
    """
    _require(workflow_id, "workflow_id")
    _require(kind, "kind")
    _require(template_version, "template_version")
    if status is not None:
        status = _one_of(status.lower(), AGREEMENT_STATUSES, "status")

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

    run(engine, work, retry_on=_retry_race)


def get_agreement(engine: Engine, workflow_id: str, kind: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.Agreement, (workflow_id, kind)), write=False)
    return _row_dict(row) if row else None


def list_agreements(engine: Engine, workflow_id: str) -> list[dict]:
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.Agreement).where(t.Agreement.workflow_id == workflow_id).order_by(t.Agreement.kind))
        return [_row_dict(r) for r in rows.all()]

    return run(engine, work, write=False)


def agreement_by_envelope(engine: Engine, envelope_id: str) -> dict | None:
    def work(s: Session) -> dict | None:
        row = s.exec(select_rows(t.Agreement).where(t.Agreement.envelope_id == envelope_id)).first()
        return _row_dict(row) if row else None

    return run(engine, work, write=False)


# ---------------------------------------------------------------- audit and notifications
def audit(engine: Engine, workflow_id: str, actor: str, action: str, detail: dict | None = None, reason: str = "",
          at: datetime | None = None, idem_key: str | None = None) -> bool:
    """Append to the audit trail; with an ``idem_key`` a retried activity writes the entry once.

    Returns True when an entry was written. Keep PII out of ``detail`` (ids, not names).
    """
    _require(workflow_id, "workflow_id")
    _require(actor, "actor")
    _require(action, "action")
    try:
        detail_json = to_jsonable_python(detail or {})
    except Exception as exc:
        raise ValueError(f"detail: not JSON-serialisable ({exc})") from None
    if not isinstance(detail_json, dict):
        raise ValueError("detail: must be a dict")
    au = _table(t.AuditEntry)
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
        return [_row_dict(r) for r in rows.all()]

    return run(engine, work, write=False)


def notification_sent(engine: Engine, key: str) -> bool:
    return run(engine, lambda s: s.get(t.Notification, key) is not None, write=False)


def mark_notification_sent(engine: Engine, key: str, to_role: str, subject: str) -> bool:
    """Remember that the e-mail ``key`` went out; True when this call recorded it first."""
    _require(key, "key")
    no = _table(t.Notification)

    def work(s: Session) -> bool:
        stmt = insert_for(s)(no).values(key=key, to_role=to_role, subject=subject, sent_at=now_utc())
        return s.exec(stmt.on_conflict_do_nothing(index_elements=[no.c.key]).returning(no.c.key)).first() is not None

    return run(engine, work)
