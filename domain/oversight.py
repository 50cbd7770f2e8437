"""Values the ongoing oversight passes between the sweep, the workflows and the CLI (no PII: ids,
states, credential kinds and dates only)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

OversightState = Literal["active", "suspended", "replacing", "offboarded"]


class ComplianceAlert(BaseModel):
    """What the sweep tells one clinic's ``OversightWorkflow`` (signal ``compliance_alert``)."""

    clinic_key: str
    kind: Literal["renewal_notice", "lapse", "exclusion"]
    credential_key: str = ""  # domain.renewals.Credential.key, or exclusion:<npi>
    step: str = ""  # the ladder step of a renewal notice ("90" ... "0", "lapsed")
    suspended_states: list[str] = Field(default_factory=list)  # states this alert suspends
    at: datetime
    #: "<pharmacy_id>:<state>" a pharmacy licence's lapse suspends (prescribing oversight goes on)
    suspended_pharmacies: list[str] = Field(default_factory=list)


def replacement_reasons(alerts: list[ComplianceAlert]) -> dict[str, str]:
    """The clinics whose states these alerts suspend, by key (sorted), each with the reason its replacement
    placement is started for: the Schedule's sweep workflow and ``mdco oversight sweep`` both start them."""
    reasons = {}
    for clinic_key in sorted({a.clinic_key for a in alerts if a.suspended_states}):
        reason = "; ".join(f"{a.kind} {a.credential_key}: {', '.join(a.suspended_states)} suspended"
                           for a in alerts if a.clinic_key == clinic_key and a.suspended_states)
        reasons[clinic_key] = reason[:500]
    return reasons


class SweepRequest(BaseModel):
    as_of: date | None = None  # the day to sweep for; None -> the activity's start date (UTC)


class SweepSummary(BaseModel):
    as_of: date
    clinics: int = 0  # live clinics swept
    credentials: int = 0  # dated credentials they depend on
    notices: int = 0  # ladder notices sent now
    suspended: list[str] = Field(default_factory=list)  # "<clinic_key>:<state>" newly suspended
    #: "<clinic_key>:<pharmacy_id>:<state>" newly suspended by a pharmacy licence's lapse
    pharmacies_suspended: list[str] = Field(default_factory=list)
    excluded_npis: list[str] = Field(default_factory=list)  # directors of live clinics on the LEIE list
    leie_entries: int = 0  # size of the list re-screened against (0: none imported yet)
    reviews_escalated: int = 0
    actions_escalated: int = 0  # overdue corrective actions reminded or escalated to ops
    protocol_reviews_opened: int = 0  # annual protocol re-approvals asked of directors
    protocol_reviews_escalated: int = 0
    events_escalated: int = 0
    alerts: list[ComplianceAlert] = Field(default_factory=list)


class ReviewBasis(BaseModel):
    """Why a chart-review cycle samples what it does: each clinic state's own requirement (from the
    launched plan) and the strictest over them, which applies to the whole clinic."""

    percent: int
    cadence_days: int
    percent_set_by: list[str] = Field(default_factory=list)  # the states whose percentage it is
    cadence_set_by: list[str] = Field(default_factory=list)  # the states whose cadence it is
    states: dict[str, dict] = Field(default_factory=dict)  # state -> {percent, cadence_days, basis, source}


def review_basis(state_reviews: dict[str, dict], planned_percent: int, planned_cadence_days: int) -> ReviewBasis:
    """The strictest percentage (highest) and cadence (shortest) over the states' own requirements,
    never looser than what the oversight was started with (a plan from before per-state requirements
    has none: the planned values stand alone)."""
    own = {st: r for st, r in sorted(state_reviews.items()) if r}
    percent = max([planned_percent, *(r["percent"] for r in own.values())])
    cadence = min([planned_cadence_days, *(r["cadence_days"] for r in own.values())])
    return ReviewBasis(percent=percent, cadence_days=cadence, states=own,
                       percent_set_by=[st for st, r in own.items() if r["percent"] == percent],
                       cadence_set_by=[st for st, r in own.items() if r["cadence_days"] == cadence])


SampleBasis = Literal["reported", "patient_volume"]


def chart_count_problems(charts: object, period_start: date, period_end: date, today: date) -> list[tuple[str, str]]:
    """What is wrong with a clinic's chart-count report, as ``(field, reason)`` (empty: fine): ``charts`` a
    whole number from 0 to ``limits.CHART_COUNT_MAX``, the period's start not after its end, nor its end
    after ``today`` (charts not seen yet cannot be counted)."""
    from domain.limits import CHART_COUNT_MAX

    problems = []
    if isinstance(charts, bool) or not isinstance(charts, int):
        problems.append(("charts", f"{charts!r} is not a whole number"))
    elif not 0 <= charts <= CHART_COUNT_MAX:
        problems.append(("charts", f"{charts} is not between 0 and {CHART_COUNT_MAX:,}"))
    if period_start > period_end:
        problems.append(("period_start", f"{period_start.isoformat()} is after period_end {period_end.isoformat()}"))
    if period_end > today:
        problems.append(("period_end", f"{period_end.isoformat()} is after today ({today.isoformat()})"))
    return problems


def cycle_days(previous_opened: datetime | None, opened: datetime) -> tuple[date, date]:
    """The days a chart-review cycle opened at ``opened`` covers: from the day the previous review opened
    (or the clinic went live, ``previous_opened``) up to the day before this one opens (that day itself
    when both fall on one day), so consecutive cycles share no day."""
    first = (previous_opened or opened).date()
    return first, max(first, opened.date() - timedelta(days=1))


def reported_for_cycle(reports: list[dict], first: date, last: date) -> tuple[int, list[dict]] | None:
    """The charts a clinic reported for the cycle ``first``..``last`` (days, inclusive) and the reports
    counted: those whose period overlaps the cycle, the latest reported first, leaving out any whose
    period overlaps one already counted (no chart counted twice); None when no report overlaps.
    ``reports``: rows with ``period_start``, ``period_end``, ``charts``, ``reported_at``."""
    overlapping = sorted((r for r in reports if r["period_start"] <= last and r["period_end"] >= first),
                         key=lambda r: (r["reported_at"], r["period_start"], r["period_end"]), reverse=True)
    counted: list[dict] = []
    for r in overlapping:
        if all(r["period_end"] < c["period_start"] or r["period_start"] > c["period_end"] for c in counted):
            counted.append(r)
    if not counted:
        return None
    counted.sort(key=lambda r: r["period_start"])
    return sum(r["charts"] for r in counted), counted


class OffboardRecord(BaseModel):
    """The oversight of ``clinic_key`` ends: release, tell every party, terminate the agreements."""

    clinic_key: str
    physician_npi: str
    reason: str
    at: datetime


class AdverseEventWatch(BaseModel):
    """Input of ``AdverseEventWorkflow``: escalate to ops unless acknowledged by ``ack_due_at``."""

    event_id: str
    clinic_key: str
    severity: Literal["minor", "serious", "sentinel"]
    ack_due_at: datetime


class OversightCompliance(BaseModel):
    """The oversight workflow's compliance view (query ``compliance``)."""

    clinic_key: str
    status: OversightState = "active"
    suspended_states: list[str] = Field(default_factory=list)
    alerts: list[ComplianceAlert] = Field(default_factory=list)  # the most recent ones
    next_chart_review_at: datetime | None = None
