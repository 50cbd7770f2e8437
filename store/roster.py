"""The roster: physicians (with licences, DEA registrations, therapies and OIG exclusion flags),
pharmacies, and the clinic slots physicians have reserved (capacity)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, Table, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from sqlmodel import select as select_rows

from domain.codes import Service
from domain.intake import check_state
from domain.onboarding import ReservationResult
from domain.records import PHARMACY_COMPLIANCE_COLUMNS, DeaRegistration, License, PharmacyLicense, PharmacyRecord, PhysicianRecord
from store import tables as t
from store.common import NotFound, require, retry_race, row_dict, sql_table
from store.db import insert_for, run
from store.tables import now_utc


#: Rows per IN (...) list / executemany batch; well under SQLite's bound-parameter limit.
CHUNK = 500
#: Up to this many NPIs are passed to a query as a literal list (SQLite allows 32,766 parameters).
LIST_FILTER_MAX = 5_000


class ImportSummary(BaseModel):
    created: int
    updated: int


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
    "malpractice_expires", "board_certifications", "telehealth", "supervised_midlevels", "practice_zip",
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
    phys, lic, dea, ther = sql_table(t.Physician), sql_table(t.License), sql_table(t.DeaRegistration), sql_table(t.PhysicianTherapy)

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
    phys, lic, dea, ther = sql_table(t.Physician), sql_table(t.License), sql_table(t.DeaRegistration), sql_table(t.PhysicianTherapy)
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
    phys, lic, dea, ther = sql_table(t.Physician), sql_table(t.License), sql_table(t.DeaRegistration), sql_table(t.PhysicianTherapy)

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
    lic = sql_table(t.License)

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
    phys = sql_table(t.Physician)

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
    ph = sql_table(t.Pharmacy)

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
        _upsert_pharmacy_compliance(s, [r for r in records if r.on_file], now)
        return ImportSummary(created=len(set(ids) - existing), updated=len(existing))

    try:
        return run(engine, work)
    except IntegrityError as exc:
        raise _rejected(exc) from None


def _compliance_values(r: PharmacyRecord) -> dict[str, Any]:
    """The compliance-table fields each optional column of ``r`` sets."""
    return {
        "dea": {"dea_number": r.dea.number if r.dea else None, "dea_expires": r.dea.expires if r.dea else None},
        "fda_registration": {"fda_fei": r.fda_registration.fei if r.fda_registration else None,
                             "fda_last_inspection": r.fda_registration.last_inspection if r.fda_registration else None},
        "attestations": {"attestations": {k: v.isoformat() for k, v in sorted(r.attestations.items())}},
        "licenses": {},
    }


def _upsert_pharmacy_compliance(s: Session, records: Sequence[PharmacyRecord], now: datetime) -> None:
    """The optional columns a file carried replace what is stored for them; a column the file did not
    carry keeps what an earlier import stored (it rules until a file says otherwise)."""
    comp, lic = sql_table(t.PharmacyCompliance), sql_table(t.PharmacyLicense)
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks([r.pharmacy_id for r in records]):
        for row in s.exec(select(comp).where(comp.c.pharmacy_id.in_(chunk))).mappings():
            stored[row["pharmacy_id"]] = dict(row)
    rows = []
    for r in records:
        row = stored.get(r.pharmacy_id) or {"pharmacy_id": r.pharmacy_id, "on_file": [], "dea_number": None,
                                           "dea_expires": None, "fda_fei": None, "fda_last_inspection": None,
                                           "attestations": {}}
        values = _compliance_values(r)
        for column in r.on_file:
            row.update(values[column])
        carried = set(row["on_file"]) | set(r.on_file)
        row["on_file"] = [c for c in PHARMACY_COMPLIANCE_COLUMNS if c in carried]
        row["updated_at"] = now
        rows.append(row)
    ins = insert_for(s)(comp)
    stmt = ins.on_conflict_do_update(index_elements=[comp.c.pharmacy_id],
                                     set_={c.name: ins.excluded[c.name] for c in comp.c if c.name != "pharmacy_id"})
    for chunk in _chunks(rows):
        s.exec(stmt, params=chunk)
    relicensed = [r for r in records if "licenses" in r.on_file]
    for chunk in _chunks([r.pharmacy_id for r in relicensed]):
        s.exec(lic.delete().where(lic.c.pharmacy_id.in_(chunk)))
    lic_rows = [{"pharmacy_id": r.pharmacy_id, "state": x.state, "number": x.number, "expires": x.expires}
                for r in relicensed for x in r.licenses]
    for chunk in _chunks(lic_rows):
        s.exec(lic.insert(), params=chunk)


def list_pharmacies(engine: Engine) -> list[PharmacyRecord]:
    """Every pharmacy with its compliance file (licences, DEA, FDA registration, attestations)."""
    comp, lic = sql_table(t.PharmacyCompliance), sql_table(t.PharmacyLicense)

    def work(s: Session) -> list[PharmacyRecord]:
        rows = s.exec(select_rows(t.Pharmacy).order_by(t.Pharmacy.pharmacy_id)).all()
        extra = {row["pharmacy_id"]: row for row in s.exec(select(comp)).mappings()}
        licences: dict[str, list[PharmacyLicense]] = defaultdict(list)
        for row in s.exec(select(lic).order_by(lic.c.pharmacy_id, lic.c.state)).mappings():
            licences[row["pharmacy_id"]].append(PharmacyLicense(state=row["state"], number=row["number"],
                                                                expires=row["expires"]))
        out = []
        for r in rows:
            data = r.model_dump(include=set(_PHARMACY_COLUMNS) | {"pharmacy_id"})
            c = extra.get(r.pharmacy_id)
            if c is not None:
                data.update(
                    on_file=c["on_file"], licenses=licences.get(r.pharmacy_id, []),
                    dea={"number": c["dea_number"], "expires": c["dea_expires"]} if c["dea_number"] else None,
                    fda_registration=({"fei": c["fda_fei"], "last_inspection": c["fda_last_inspection"]}
                                      if c["fda_fei"] else None),
                    attestations=c["attestations"])
            out.append(PharmacyRecord.model_validate(data))
        return out

    return run(engine, work, write=False)


# ---------------------------------------------------------------- capacity
def reserve_physician(engine: Engine, workflow_id: str, npi: str) -> ReservationResult:
    """Take one clinic slot on ``npi`` for ``workflow_id``, atomically; never over-books.

    The slot is taken by a single conditional UPDATE (``active_clinics < max_clinics``), which
    Postgres row locks and SQLite's write lock make safe under concurrency. A workflow holds at most
    one live reservation; asking again for the same physician is a no-op success.
    """
    require(workflow_id, "workflow_id")
    require(npi, "npi")
    phys, res = sql_table(t.Physician), sql_table(t.CapacityReservation)

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

    return run(engine, work, retry_on=lambda e: retry_race(e) or isinstance(e, _Retry))


class _Retry(Exception):
    """Internal: the transaction saw a concurrent change and must run again."""


def release_physician(engine: Engine, workflow_id: str) -> bool:
    """Give the workflow's slot back; True when this call released it, False when nothing was held."""
    phys, res = sql_table(t.Physician), sql_table(t.CapacityReservation)

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
    return row_dict(row) if row else None


def open_reservations(engine: Engine) -> list[tuple[str, str, datetime]]:
    """Every reservation not yet released, oldest first: ``(workflow_id, npi, reserved_at)``."""
    res = sql_table(t.CapacityReservation)

    def work(s: Session) -> list[tuple[str, str, datetime]]:
        rows = s.exec(select(res.c.workflow_id, res.c.npi, res.c.reserved_at).where(res.c.released_at.is_(None))
                      .order_by(res.c.reserved_at, res.c.workflow_id))
        return [(r.workflow_id, r.npi, r.reserved_at) for r in rows]

    return run(engine, work, write=False)
