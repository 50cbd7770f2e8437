"""Ongoing oversight of live clinics: renewal notices sent, suspensions, chart reviews, adverse events,
offboarding. Every write is idempotent (business keys), one transaction per call, like the rest of store/.

``Refused`` (a ``ValueError``) is a request the business rules turn down: someone other than the
clinic's director submitting a review, acknowledging an event twice differently, and so on; nothing
is written then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session
from sqlmodel import select as select_rows

from domain.codes import workflow_id_for
from domain.oversight import SampleBasis
from domain.renewals import Credential, NoticeRecord, Step, parse_step, policy
from store import tables as t
from store.common import NotFound, one_of, require, retry_race, row_dict, sql_table
from store.db import insert_for, run

SEVERITIES = frozenset({"minor", "serious", "sentinel"})
SAMPLE_BASES = frozenset(get_args(SampleBasis))


class Refused(ValueError):
    """The request is well-formed but the rules refuse it (nothing changed)."""


# ---------------------------------------------------------------- live clinics
def live_clinics(engine: Engine) -> list[dict]:
    """Clinics under oversight now (status ``active``), by key."""
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.Clinic).where(t.Clinic.status == "active").order_by(t.Clinic.key)).all()
        return [row_dict(r) for r in rows]

    return run(engine, work, write=False)


def launched_onboarding(engine: Engine, clinic_key: str) -> dict | None:
    """The clinic's most recent launched onboarding (its workflow id, launch time and plan)."""
    def work(s: Session) -> dict | None:
        row = s.exec(select_rows(t.Onboarding).where(t.Onboarding.clinic_key == clinic_key,
                                                     t.Onboarding.stage == "launched")
                     .order_by(t.Onboarding.launched_at.desc())).first()  # type: ignore[union-attr]
        return row_dict(row) if row else None

    return run(engine, work, write=False)


def running_replacement(engine: Engine, clinic_key: str) -> str | None:
    """The workflow id of the clinic's replacement placement under way (neither launched nor
    cancelled), if any; the first placement is ``onboarding-<key>``, replacements carry a suffix."""
    def work(s: Session) -> str | None:
        rows = s.exec(select_rows(t.Onboarding).where(t.Onboarding.clinic_key == clinic_key,
                                                      t.Onboarding.workflow_id != workflow_id_for(clinic_key),
                                                      t.Onboarding.stage.not_in(["launched", "cancelled"]))).all()
        return rows[-1].workflow_id if rows else None

    return run(engine, work, write=False)


def mark_offboarded(engine: Engine, clinic_key: str) -> bool:
    """The engagement ended: the clinic leaves oversight. True when this call changed it."""
    cl = sql_table(t.Clinic)

    def work(s: Session) -> bool:
        if s.get(t.Clinic, clinic_key) is None:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")
        return s.exec(update(cl).where(cl.c.key == clinic_key, cl.c.status != "offboarded")
                      .values(status="offboarded")).rowcount == 1

    return run(engine, work)


# ---------------------------------------------------------------- renewal notices
def sent_notices(engine: Engine, credential_keys: Iterable[str] | None = None) -> list[NoticeRecord]:
    rn = sql_table(t.RenewalNotice)

    def work(s: Session) -> list[NoticeRecord]:
        q = select(rn.c.credential_key, rn.c.expires_on, rn.c.step)
        if credential_keys is not None:
            q = q.where(rn.c.credential_key.in_(list(credential_keys)))
        return [NoticeRecord(credential_key=k, expires_on=e, step=parse_step(st)) for k, e, st in s.exec(q)]

    return run(engine, work, write=False)


def record_notice(engine: Engine, cred: Credential, step: Step, clinics: Iterable[str],
                  at: datetime | None = None) -> bool:
    """Remember that ``step`` went out for ``cred`` (at its current expiry); True the first time."""
    parse_step(step)
    rn = sql_table(t.RenewalNotice)
    values = dict(credential_key=cred.key, credential=cred.credential, holder_id=cred.holder_id, state=cred.state,
                  expires_on=cred.expires_on, step=str(step), clinics=sorted(set(clinics)))
    if at is not None:
        values["sent_at"] = at

    def work(s: Session) -> bool:
        stmt = insert_for(s)(rn).values(**values).on_conflict_do_nothing(
            index_elements=[rn.c.credential_key, rn.c.expires_on, rn.c.step])
        return s.exec(stmt.returning(rn.c.id)).first() is not None

    return run(engine, work, retry_on=retry_race)


def list_notices(engine: Engine, clinic_key: str | None = None) -> list[dict]:
    """Renewal notices sent, oldest first; with ``clinic_key`` only those about that clinic."""
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(t.RenewalNotice).order_by(t.RenewalNotice.sent_at, t.RenewalNotice.id)).all()
        return [row_dict(r) for r in rows if clinic_key is None or clinic_key in r.clinics]

    return run(engine, work, write=False)


# ---------------------------------------------------------------- suspensions
def suspend(engine: Engine, clinic_key: str, state: str, cause: str, reason: str, at: datetime) -> bool:
    """Suspend prescribing oversight in ``state`` for ``clinic_key``. True when it was not suspended
    already (a new suspension, or again after a lift); an active one keeps its first cause and time."""
    return _suspend(engine, t.OversightSuspension, dict(clinic_key=clinic_key, state=state), cause, reason, at)


def _suspend(engine: Engine, model: type, ids: dict[str, str], cause: str, reason: str, at: datetime) -> bool:
    """Insert or re-open the suspension row ``ids`` of ``model``; False when it is active already."""
    for name, value in ids.items():
        require(value, name)
    require(cause, "cause")

    def work(s: Session) -> bool:
        row = s.get(model, tuple(ids.values()), with_for_update=True)
        if row is not None and row.lifted_at is None:
            return False
        if row is None:
            row = model(**ids, cause=cause, reason=reason, since=at)
        row.cause, row.reason, row.since, row.lifted_at = cause, reason, at, None
        s.add(row)
        return True

    return run(engine, work, retry_on=retry_race)


def lift(engine: Engine, clinic_key: str, state: str, at: datetime) -> bool:
    return _lift(engine, t.OversightSuspension, dict(clinic_key=clinic_key, state=state), at)


def _lift(engine: Engine, model: type, ids: dict[str, str], at: datetime) -> bool:
    table = sql_table(model)

    def work(s: Session) -> bool:
        return s.exec(update(table).where(*(table.c[k] == v for k, v in ids.items()), table.c.lifted_at.is_(None))
                      .values(lifted_at=at)).rowcount == 1

    return run(engine, work)


# ---------------------------------------------------------------- pharmacies
def pharmacy_licenses(engine: Engine, pharmacy_ids: Iterable[str]) -> dict[str, list[tuple[str, date]]]:
    """The state licences (``(state, expires)``) the pharmacy file carried for each pharmacy, by id
    (a pharmacy without the column on file has none here and is not on the ladder)."""
    pl = sql_table(t.PharmacyLicense)
    ids = sorted(set(pharmacy_ids))

    def work(s: Session) -> dict[str, list[tuple[str, date]]]:
        out: dict[str, list[tuple[str, date]]] = {}
        if ids:
            for pid, state, expires in s.exec(select(pl.c.pharmacy_id, pl.c.state, pl.c.expires)
                                              .where(pl.c.pharmacy_id.in_(ids)).order_by(pl.c.pharmacy_id, pl.c.state)):
                out.setdefault(pid, []).append((state, expires))
        return out

    return run(engine, work, write=False)


def suspend_pharmacy(engine: Engine, clinic_key: str, pharmacy_id: str, state: str, cause: str, reason: str,
                     at: datetime) -> bool:
    """Suspend ``pharmacy_id``'s service to ``clinic_key`` in ``state``; True when not suspended already."""
    return _suspend(engine, t.PharmacySuspension, dict(clinic_key=clinic_key, pharmacy_id=pharmacy_id, state=state),
                    cause, reason, at)


def lift_pharmacy(engine: Engine, clinic_key: str, pharmacy_id: str, state: str, at: datetime) -> bool:
    """The pharmacy's licence was renewed: its service there resumes. True when this call lifted it."""
    return _lift(engine, t.PharmacySuspension, dict(clinic_key=clinic_key, pharmacy_id=pharmacy_id, state=state), at)


def pharmacy_suspensions(engine: Engine, clinic_key: str | None = None) -> list[dict]:
    """Active pharmacy suspensions (of ``clinic_key``, or of every clinic)."""
    def work(s: Session) -> list[dict]:
        q = select_rows(t.PharmacySuspension).where(t.PharmacySuspension.lifted_at.is_(None))  # type: ignore[union-attr]
        if clinic_key is not None:
            q = q.where(t.PharmacySuspension.clinic_key == clinic_key)
        rows = s.exec(q.order_by(t.PharmacySuspension.clinic_key, t.PharmacySuspension.pharmacy_id,
                                 t.PharmacySuspension.state)).all()
        return [row_dict(r) for r in rows]

    return run(engine, work, write=False)


def suspensions(engine: Engine, clinic_key: str, *, active_only: bool = True) -> list[dict]:
    def work(s: Session) -> list[dict]:
        q = select_rows(t.OversightSuspension).where(t.OversightSuspension.clinic_key == clinic_key)
        if active_only:
            q = q.where(t.OversightSuspension.lifted_at.is_(None))  # type: ignore[union-attr]
        return [row_dict(r) for r in s.exec(q.order_by(t.OversightSuspension.state)).all()]

    return run(engine, work, write=False)


# ---------------------------------------------------------------- chart reviews
def review_status(row: dict, now: datetime) -> str:
    """``submitted``, ``overdue`` (open past its due time) or ``open``."""
    if row["status"] == "submitted":
        return "submitted"
    return "overdue" if now > row["due_at"] else "open"


def open_review(engine: Engine, review_id: str, clinic_key: str, physician_npi: str, cycle: int,
                sample_percent: int, opened_at: datetime, due_at: datetime, sample_charts: int | None = None,
                sample_basis: str | None = None) -> bool:
    """Open a chart-review cycle (``sample_charts``: how many charts to review, ``sample_basis``: of what,
    ``reported`` or ``patient_volume``); a retried open changes nothing. True when this call opened it."""
    require(review_id, "review_id")
    if sample_basis is not None:
        one_of(sample_basis, SAMPLE_BASES, "sample_basis")
    if due_at < opened_at:
        raise ValueError("due_at: must not be before opened_at")
    if sample_charts is not None and sample_charts < 0:
        raise ValueError("sample_charts: must not be negative")
    cr = sql_table(t.ChartReviewRecord)

    def work(s: Session) -> bool:
        stmt = insert_for(s)(cr).values(review_id=review_id, clinic_key=clinic_key, physician_npi=physician_npi,
                                        cycle=cycle, sample_percent=sample_percent, opened_at=opened_at,
                                        due_at=due_at, status="open", notes="", escalated="",
                                        sample_charts=sample_charts, sample_basis=sample_basis)
        return s.exec(stmt.on_conflict_do_nothing(index_elements=[cr.c.review_id])
                      .returning(cr.c.review_id)).first() is not None

    return run(engine, work, retry_on=retry_race)


def report_chart_count(engine: Engine, clinic_key: str, charts: int, period_start: date, period_end: date,
                       reported_by: str, at: datetime) -> tuple[dict, int | None]:
    """The clinic reports how many charts (patient encounters) it had from ``period_start`` to ``period_end``
    (days, inclusive). One row per clinic and period: a re-report replaces the count (and who reported it,
    when); the same count again changes nothing. Returns the row and the count it had before (None: new).
    ``ValueError`` naming the field for a bad count or period, ``NotFound`` for no such clinic, ``Refused``
    for a clinic not under oversight; nothing written then."""
    from domain.oversight import chart_count_problems

    problems = chart_count_problems(charts, period_start, period_end, at.date())
    if problems:
        raise ValueError("; ".join(f"{f}: {r}" for f, r in problems))
    require(reported_by, "reported_by")

    def work(s: Session) -> tuple[dict, int | None]:
        clinic = s.get(t.Clinic, clinic_key)
        if clinic is None:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")
        if clinic.status != "active":
            raise Refused(f"clinic_key: clinic {clinic_key} is not under oversight (status {clinic.status})")
        row = s.get(t.ChartCount, (clinic_key, period_start, period_end), with_for_update=True)
        before = row.charts if row is not None else None
        if row is None:
            row = t.ChartCount(clinic_key=clinic_key, period_start=period_start, period_end=period_end,
                               charts=charts, reported_at=at, reported_by=reported_by)
        elif row.charts != charts:
            row.charts, row.reported_at, row.reported_by = charts, at, reported_by
        s.add(row)
        s.flush()
        return row_dict(row), before

    return run(engine, work, retry_on=retry_race)


def chart_counts(engine: Engine, clinic_key: str) -> list[dict]:
    """The chart counts the clinic reported, by period."""
    return _clinic_rows(engine, t.ChartCount, clinic_key, t.ChartCount.period_start, t.ChartCount.period_end)


def get_review(engine: Engine, review_id: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.ChartReviewRecord, review_id), write=False)
    return row_dict(row) if row else None


def submit_review(engine: Engine, review_id: str, npi: str, charts: int, deficiencies: int, notes: str,
                  at: datetime, corrective_due: timedelta | None = None) -> dict:
    """The clinic's medical director records the review. Only the clinic's current director may; a
    second identical submission is answered with the first; a different one is refused. Deficiencies
    open a corrective action in the same transaction, due ``corrective_due`` (policy: 30 days) after
    the submission; the review's row comes back with ``corrective_action`` (its row, or None)."""
    due = corrective_due if corrective_due is not None else timedelta(
        days=policy().chart_review.corrective_action_due_days)
    if charts < 0 or deficiencies < 0:
        raise ValueError("charts and deficiencies: must not be negative")
    if deficiencies > charts:
        raise ValueError(f"deficiencies: {deficiencies} is more than the {charts} charts reviewed")

    def work(s: Session) -> dict:
        row = s.get(t.ChartReviewRecord, review_id, with_for_update=True)
        if row is None:
            raise NotFound(f"review {review_id}: no such chart review")
        clinic = s.get(t.Clinic, row.clinic_key)
        director = clinic.physician_npi if clinic is not None else row.physician_npi
        if npi != director:
            raise Refused(f"NPI {npi} is not the medical director of clinic {row.clinic_key}")
        if row.status == "submitted":
            if (row.charts_reviewed, row.deficiencies) != (charts, deficiencies):
                raise Refused(f"review {review_id} was already submitted ({row.charts_reviewed} charts, "
                              f"{row.deficiencies} deficiencies)")
        else:
            row.status, row.charts_reviewed, row.deficiencies, row.notes = "submitted", charts, deficiencies, notes
            row.submitted_at, row.submitted_by = at, npi
            s.add(row)
            if deficiencies:
                s.add(t.CorrectiveAction(action_id=f"{review_id}-ca", review_id=review_id, clinic_key=row.clinic_key,
                                         physician_npi=npi, deficiencies=deficiencies, opened_at=at, due_at=at + due))
            s.flush()
        action = s.get(t.CorrectiveAction, f"{review_id}-ca")
        return {**row_dict(row), "corrective_action": row_dict(action) if action else None}

    return run(engine, work)


def corrective_actions(engine: Engine, clinic_key: str) -> list[dict]:
    """The clinic's corrective actions (from deficient chart reviews), oldest first."""
    return _clinic_rows(engine, t.CorrectiveAction, clinic_key, t.CorrectiveAction.opened_at,
                        t.CorrectiveAction.action_id)


def close_action(engine: Engine, action_id: str, npi: str, notes: str, at: datetime) -> dict:
    """The clinic's medical director closes a corrective action (what was done, in ``notes``); anyone else
    is refused. Closing again returns the first closing."""
    require(notes.strip(), "notes")

    def work(s: Session) -> dict:
        row = _directors_row(s, t.CorrectiveAction, action_id, "corrective action", npi)
        if row.status != "closed":
            row.status, row.closed_at, row.closed_by, row.close_notes = "closed", at, npi, notes.strip()
            s.add(row)
        return row_dict(row)

    return run(engine, work)


def _directors_row(s: Session, model: type, row_id: str, what: str, npi: str):
    """The row ``row_id`` of ``model``, locked, when ``npi`` directs its clinic (else refused)."""
    row = s.get(model, row_id, with_for_update=True)
    if row is None:
        raise NotFound(f"{what} {row_id}: no such {what}")
    clinic = s.get(t.Clinic, row.clinic_key)
    if clinic is None or npi != clinic.physician_npi:
        raise Refused(f"NPI {npi} is not the medical director of clinic {row.clinic_key}")
    return row


def overdue_actions(engine: Engine, now: datetime) -> list[dict]:
    """Open corrective actions past their due time, of clinics still under oversight."""
    return _overdue(engine, t.CorrectiveAction, now)


def _overdue(engine: Engine, model: type, now: datetime) -> list[dict]:
    """Rows of ``model`` (a review or a corrective action) still open past ``due_at``, of live clinics."""
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(model).join(t.Clinic, t.Clinic.key == model.clinic_key)
                      .where(model.status == "open", model.due_at < now, t.Clinic.status == "active")
                      .order_by(model.due_at)).all()
        return [row_dict(r) for r in rows]

    return run(engine, work, write=False)


def mark_action_escalated(engine: Engine, action_id: str, level: str) -> bool:
    return _mark_escalated(engine, t.CorrectiveAction, "action_id", action_id, level)


def _mark_escalated(engine: Engine, model: type, id_column: str, row_id: str, level: str) -> bool:
    """Record the last escalation of an open overdue row; True when the row was open."""
    _escalation_level(level)
    table = sql_table(model)

    def work(s: Session) -> bool:
        return s.exec(update(table).where(table.c[id_column] == row_id, table.c.status == "open")
                      .values(escalated=level)).rowcount == 1

    return run(engine, work)


# ---------------------------------------------------------------- the annual protocol review
def set_protocol_review_every(engine: Engine, clinic_key: str, every: timedelta | None) -> bool:
    """Keep the clinic's protocol-review interval from its oversight's Timing (None: the policy's);
    True when the clinic exists. Idempotent."""
    if every is not None and every <= timedelta(0):
        raise ValueError(f"protocol_review_every: {every} is not a positive duration")
    cl = sql_table(t.Clinic)
    seconds = every.total_seconds() if every is not None else None

    def work(s: Session) -> bool:
        return s.exec(update(cl).where(cl.c.key == clinic_key)
                      .values(protocol_review_every_seconds=seconds)).rowcount == 1

    return run(engine, work)


def protocol_review_every(clinic: dict) -> timedelta | None:
    """The protocol-review interval ``clinic`` (a clinics row) keeps from its oversight's Timing; None:
    the policy's (``ProtocolReviewPolicy.opens_at``)."""
    seconds = clinic.get("protocol_review_every_seconds")
    return timedelta(seconds=seconds) if seconds else None


def open_protocol_review(engine: Engine, review_id: str, clinic_key: str, workflow_id: str, npi: str,
                         sha256s: list[str], opened_at: datetime, due_at: datetime) -> bool:
    """Open the clinic's protocol review ``review_id`` for the documents ``sha256s``; True the first time."""
    require(review_id, "review_id")
    if not sha256s:
        raise ValueError("sha256s: a protocol review needs the documents it re-approves")
    pr = sql_table(t.ProtocolReview)

    def work(s: Session) -> bool:
        stmt = insert_for(s)(pr).values(review_id=review_id, clinic_key=clinic_key, workflow_id=workflow_id,
                                        physician_npi=npi, sha256s=sorted(sha256s), opened_at=opened_at,
                                        due_at=due_at, status="open")
        return s.exec(stmt.on_conflict_do_nothing(index_elements=[pr.c.review_id])
                      .returning(pr.c.review_id)).first() is not None

    return run(engine, work, retry_on=retry_race)


def protocol_reviews(engine: Engine, clinic_key: str) -> list[dict]:
    return _clinic_rows(engine, t.ProtocolReview, clinic_key, t.ProtocolReview.opened_at)


def overdue_protocol_reviews(engine: Engine, now: datetime) -> list[dict]:
    return _overdue(engine, t.ProtocolReview, now)


def mark_protocol_review_escalated(engine: Engine, review_id: str, level: str) -> bool:
    return _mark_escalated(engine, t.ProtocolReview, "review_id", review_id, level)


def reapprove_protocols(engine: Engine, clinic_key: str, npi: str, sha256s: list[str], at: datetime) -> dict:
    """The clinic's director re-approves the protocols of its open review, bound to the SHA-256s read:
    they must be exactly the review's documents (else refused: the texts changed since they were read).
    Anyone but the director is refused; re-approving again returns the first approval."""
    require(npi, "npi")

    def work(s: Session) -> dict:
        rows = s.exec(select_rows(t.ProtocolReview).where(t.ProtocolReview.clinic_key == clinic_key)
                      .order_by(t.ProtocolReview.opened_at.desc()).with_for_update()).all()  # type: ignore[union-attr]
        if not rows:
            raise NotFound(f"clinic_key {clinic_key}: no protocol review has opened for this clinic")
        row = rows[0]
        clinic = s.get(t.Clinic, clinic_key)
        if clinic is None or npi != clinic.physician_npi:
            raise Refused(f"NPI {npi} is not the medical director of clinic {clinic_key}")
        if row.status == "open":
            if sorted(sha256s) != sorted(row.sha256s):
                raise Refused(f"sha256: the protocols changed since you read them (re-approve {', '.join(row.sha256s)})")
            row.status, row.approved_at, row.approved_by = "approved", at, npi
            s.add(row)
        return row_dict(row)

    return run(engine, work)


def _escalation_level(level: str) -> None:
    """``director`` (first reminder), ``director+<days late>`` (a later one) or ``ops``."""
    head, _, days = level.partition("+")
    if head not in ("director", "ops") or (days and (head != "director" or not days.isdigit())) or level.endswith("+"):
        raise ValueError(f"level: {level!r} is not director, director+<days> or ops")


def corrective_action_status(row: dict, now: datetime) -> str:
    """``closed``, ``overdue`` (open past its due time) or ``open``."""
    if row["status"] == "closed":
        return "closed"
    return "overdue" if now > row["due_at"] else "open"


def list_reviews(engine: Engine, clinic_key: str) -> list[dict]:
    return _clinic_rows(engine, t.ChartReviewRecord, clinic_key, t.ChartReviewRecord.cycle)


def count_overdue_reviews(engine: Engine, now: datetime) -> int:
    """How many chart reviews of live clinics are past due and not submitted (the API's metric)."""
    cr, cl = sql_table(t.ChartReviewRecord), sql_table(t.Clinic)

    def work(s: Session) -> int:
        return s.exec(select(func.count()).select_from(cr.join(cl, cl.c.key == cr.c.clinic_key))
                      .where(cr.c.status == "open", cr.c.due_at < now, cl.c.status == "active")).scalar_one()

    return run(engine, work, write=False)


def overdue_reviews(engine: Engine, now: datetime) -> list[dict]:
    """Open reviews past their due time, of clinics still under oversight."""
    return _overdue(engine, t.ChartReviewRecord, now)


def mark_review_escalated(engine: Engine, review_id: str, level: str) -> bool:
    _escalation_level(level)
    cr = sql_table(t.ChartReviewRecord)

    def work(s: Session) -> bool:
        return s.exec(update(cr).where(cr.c.review_id == review_id, cr.c.escalated != level)
                      .values(escalated=level)).rowcount == 1

    return run(engine, work)


# ---------------------------------------------------------------- adverse events
def report_event(engine: Engine, event_id: str, clinic_key: str, severity: str, summary: str, at: datetime,
                 ack_due_at: datetime) -> dict:
    """Record an event the clinic reported; a retried report (same id) returns the first."""
    require(event_id, "event_id")
    one_of(severity, SEVERITIES, "severity")
    require(summary, "summary")

    def work(s: Session) -> dict:
        clinic = s.get(t.Clinic, clinic_key)
        if clinic is None:
            raise NotFound(f"clinic_key {clinic_key}: no such clinic")
        if clinic.status != "active":
            raise Refused(f"clinic {clinic_key} is not under oversight (status {clinic.status})")
        row = s.get(t.AdverseEventRecord, event_id)
        if row is None:
            row = t.AdverseEventRecord(event_id=event_id, clinic_key=clinic_key, severity=severity, summary=summary,
                                       reported_at=at, ack_due_at=ack_due_at)
            s.add(row)
            s.flush()
        return row_dict(row)

    return run(engine, work, retry_on=retry_race)


def get_event(engine: Engine, event_id: str) -> dict | None:
    row = run(engine, lambda s: s.get(t.AdverseEventRecord, event_id), write=False)
    return row_dict(row) if row else None


def ack_event(engine: Engine, event_id: str, npi: str, notes: str, at: datetime) -> dict:
    """The clinic's medical director acknowledges the event (also after an escalation); anyone else is
    refused. Acknowledging again returns the first acknowledgement."""
    def work(s: Session) -> dict:
        row = _directors_row(s, t.AdverseEventRecord, event_id, "adverse event", npi)
        if row.acked_at is None:
            row.status, row.acked_at, row.acked_by, row.ack_notes = "acknowledged", at, npi, notes
            s.add(row)
        return row_dict(row)

    return run(engine, work)


def escalate_event(engine: Engine, event_id: str, at: datetime) -> bool:
    """Mark an event escalated to ops if it is still unacknowledged; True when this call did."""
    ae = sql_table(t.AdverseEventRecord)

    def work(s: Session) -> bool:
        return s.exec(update(ae).where(ae.c.event_id == event_id, ae.c.status == "open")
                      .values(status="escalated", escalated_at=at)).rowcount == 1

    return run(engine, work)


def record_medwatch(engine: Engine, event_id: str, path: str, sha256: str) -> dict:
    """Store where the event's draft MedWatch 3500 was written and its SHA-256 (rewriting it: the latest)."""
    def work(s: Session) -> dict:
        row = s.get(t.AdverseEventRecord, event_id, with_for_update=True)
        if row is None:
            raise NotFound(f"event {event_id}: no such adverse event")
        row.medwatch_path, row.medwatch_sha256 = path, sha256
        s.add(row)
        return row_dict(row)

    return run(engine, work)


def list_events(engine: Engine, clinic_key: str) -> list[dict]:
    return _clinic_rows(engine, t.AdverseEventRecord, clinic_key, t.AdverseEventRecord.reported_at,
                        t.AdverseEventRecord.event_id)


def _clinic_rows(engine: Engine, model: type, clinic_key: str, *order) -> list[dict]:
    """The rows of ``model`` about ``clinic_key``, in ``order``."""
    def work(s: Session) -> list[dict]:
        rows = s.exec(select_rows(model).where(model.clinic_key == clinic_key).order_by(*order)).all()
        return [row_dict(r) for r in rows]

    return run(engine, work, write=False)


__all__ = ["Refused", "live_clinics", "launched_onboarding", "mark_offboarded", "sent_notices", "record_notice",
           "list_notices", "suspend", "lift", "suspensions", "pharmacy_licenses", "suspend_pharmacy",
           "lift_pharmacy", "pharmacy_suspensions", "review_status", "open_review", "get_review",
           "submit_review", "report_chart_count", "chart_counts", "corrective_actions", "corrective_action_status",
           "list_reviews",
           "count_overdue_reviews", "overdue_reviews", "mark_review_escalated", "close_action", "overdue_actions",
           "mark_action_escalated", "open_protocol_review", "protocol_reviews", "overdue_protocol_reviews",
           "mark_protocol_review_escalated", "reapprove_protocols", "set_protocol_review_every",
           "protocol_review_every", "report_event", "get_event",
           "ack_event", "escalate_event", "record_medwatch", "list_events"]
