"""The renewal ladder: which credentials a clinic depends on, and which notice each is due on a day.

Pure and deterministic (no I/O, no clock): the sweep (activities/oversight.py) reads the store, asks
here what is due and records what it sent. The numbers come from ``domain/data/oversight_policy.yaml``
(each with its source), never from code.

Rules:
- A credential is on the ladder from the first step (90 days) to its expiry (step 0), then ``lapsed``.
- The step due on a day is the smallest ladder step not below the days left (45 days left -> 60).
- Each step is sent once per credential AND expiry date. A sweep that missed days sends only the
  current step (an older step is superseded, never sent late). A re-import that moves the expiry date
  starts the ladder afresh for the new date (notices of the old date no longer count).
- From ``clinic_notice_within_days`` (14) and at the lapse, the clinic is told as well as the holder
  and ops.
- A lapse suspends what ``lapse_suspends`` says: the credential's state, every clinic state, or nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.intake import Intake
from domain.records import PhysicianRecord
from domain.rules import parse_rule_data

LAPSED = "lapsed"
#: A ladder step: days before expiry (90, 60, 30, 14, 7, 0) or ``"lapsed"``.
Step = Union[int, Literal["lapsed"]]
CredentialKind = Literal["license", "dea", "malpractice", "board_certification", "midlevel_license",
                         "pharmacy_license", "agreement_term"]
HolderKind = Literal["physician", "midlevel", "pharmacy", "agreement"]
Severity = Literal["minor", "serious", "sentinel"]
#: What a lapse suspends: the credential's state, every clinic state, nothing, or (a pharmacy's licence)
#: that pharmacy's service to the clinic in the licence's state (prescribing oversight goes on).
Suspends = Literal["state", "all", "none", "pharmacy"]

HOLDER_OF: dict[str, HolderKind] = {
    "license": "physician", "dea": "physician", "malpractice": "physician", "board_certification": "physician",
    "midlevel_license": "midlevel", "pharmacy_license": "pharmacy", "agreement_term": "agreement",
}


# ---------------------------------------------------------------- policy data
class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(min_length=1)


class Ladder(_Sourced):
    days: list[int] = Field(min_length=1)
    clinic_notice_within_days: int = Field(ge=0)

    @field_validator("days")
    @classmethod
    def _descending(cls, v: list[int]) -> list[int]:
        if any(d < 0 for d in v) or any(a <= b for a, b in zip(v, v[1:])):
            raise ValueError("ladder days must be non-negative and strictly decreasing")
        if v[-1] != 0:
            raise ValueError("the ladder must end at 0 (the expiry day)")
        return v


class LapseSuspends(_Sourced):
    license: Suspends
    dea: Suspends
    malpractice: Suspends
    board_certification: Suspends
    midlevel_license: Suspends
    pharmacy_license: Suspends
    agreement_term: Suspends


class AgreementTerm(_Sourced):
    default_days: int = Field(gt=0)


class AdverseEventPolicy(_Sourced):
    ack_deadline_hours: dict[Severity, float]
    medwatch_severities: list[Severity]

    @model_validator(mode="after")
    def _every_severity(self) -> "AdverseEventPolicy":
        missing = {"minor", "serious", "sentinel"} - set(self.ack_deadline_hours)
        if missing or any(h <= 0 for h in self.ack_deadline_hours.values()):
            raise ValueError(f"ack_deadline_hours: a positive deadline for every severity (missing {sorted(missing)})")
        return self


def _reminder_days(v: list[int]) -> list[int]:
    if any(d < 0 for d in v) or any(a >= b for a, b in zip(v, v[1:])):
        raise ValueError("reminder days must be non-negative and strictly increasing")
    return v


def escalation_due(days_late: int, done: str, reminder_days: list[int], ops_after_days: int) -> str | None:
    """The escalation an overdue item (chart review, corrective action) gets now, ``days_late`` past due,
    its last one being ``done``: ``director`` (the first reminder), ``director+<d>`` (a later reminder,
    ``d`` days late), then ``ops``. Only the latest step reached is sent (a sweep that missed days does
    not send the ones it skipped); nothing once ops were told or before the item is due."""
    levels = [("director" if i == 0 else f"director+{d}", d) for i, d in enumerate(reminder_days)]
    levels.append(("ops", ops_after_days))
    order = [name for name, _ in levels]
    reached = [name for name, day in levels if days_late >= day]
    if not reached:
        return None
    rank = order.index(done) if done in order else -1
    return reached[-1] if order.index(reached[-1]) > rank else None


class ChartReviewPolicy(_Sourced):
    escalate_to_ops_after_days: int = Field(ge=0)
    #: days past due on which the director is reminded of an overdue review (before ops hear of it)
    reminder_days: list[int] = Field(min_length=1)
    min_sample_charts: int = Field(ge=1)
    corrective_action_due_days: int = Field(gt=0)
    #: the same for an open corrective action past its due date
    corrective_action_reminder_days: list[int] = Field(min_length=1)
    corrective_action_escalate_to_ops_after_days: int = Field(ge=0)

    _reminders = field_validator("reminder_days", "corrective_action_reminder_days")(_reminder_days)

    @model_validator(mode="after")
    def _ops_after_reminders(self) -> "ChartReviewPolicy":
        if self.escalate_to_ops_after_days <= self.reminder_days[-1] or \
                self.corrective_action_escalate_to_ops_after_days <= self.corrective_action_reminder_days[-1]:
            raise ValueError("ops are told after the last reminder (escalate_to_ops_after_days > reminder days)")
        return self

    def review_escalation(self, days_late: int, done: str) -> str | None:
        return escalation_due(days_late, done, self.reminder_days, self.escalate_to_ops_after_days)

    def action_escalation(self, days_late: int, done: str) -> str | None:
        return escalation_due(days_late, done, self.corrective_action_reminder_days,
                              self.corrective_action_escalate_to_ops_after_days)

    def sample_charts(self, monthly_patients: int, percent: int) -> int:
        """Charts to review in a cycle: ``percent`` of the clinic's monthly patients, rounded up, at least
        the policy minimum, but never more charts than the clinic has (a volume under the minimum is
        reviewed whole; an unknown volume, 0, takes the minimum)."""
        share = -(-max(monthly_patients, 0) * max(percent, 0) // 100)
        wanted = max(share, self.min_sample_charts)
        return min(wanted, monthly_patients) if monthly_patients > 0 else self.min_sample_charts

    def sample_of_reported(self, charts: int, percent: int) -> int:
        """Charts to review in a cycle the clinic reported ``charts`` for: ``percent`` of them, rounded up, at
        least the policy minimum, never more than were reported (none reported: nothing to review)."""
        share = -(-max(charts, 0) * max(percent, 0) // 100)
        return min(max(share, self.min_sample_charts), max(charts, 0))


class ProtocolReviewPolicy(_Sourced):
    """The annual protocol review: re-approval ``interval_days`` after the last approval, due ``due_days``
    after it opens; overdue, the director is reminded on ``reminder_days`` past due, then ops are told."""

    interval_days: int = Field(gt=0)
    due_days: int = Field(gt=0)
    reminder_days: list[int] = Field(min_length=1)
    escalate_to_ops_after_days: int = Field(ge=0)

    _reminders = field_validator("reminder_days")(_reminder_days)

    @model_validator(mode="after")
    def _ops_after_reminders(self) -> "ProtocolReviewPolicy":
        if self.escalate_to_ops_after_days <= self.reminder_days[-1]:
            raise ValueError("ops are told after the last reminder (escalate_to_ops_after_days > reminder days)")
        return self

    def opens_at(self, last_approved: datetime, every: timedelta | None = None) -> datetime:
        """When the next review opens: ``every`` (the clinic's Timing) after the last approval, else the
        policy's ``interval_days``."""
        return last_approved + (every if every is not None else timedelta(days=self.interval_days))

    def escalation(self, days_late: int, done: str) -> str | None:
        return escalation_due(days_late, done, self.reminder_days, self.escalate_to_ops_after_days)


class OversightPolicy(_Sourced):
    version: int
    ladder: Ladder
    lapse_suspends: LapseSuspends
    agreement_term: AgreementTerm
    adverse_events: AdverseEventPolicy
    chart_review: ChartReviewPolicy
    protocol_review: ProtocolReviewPolicy

    def ack_deadline(self, severity: Severity) -> timedelta:
        return timedelta(hours=self.adverse_events.ack_deadline_hours[severity])


@lru_cache(maxsize=1)
def policy() -> OversightPolicy:
    text = resources.files("domain").joinpath("data", "oversight_policy.yaml").read_text(encoding="utf-8")
    return parse_rule_data(OversightPolicy, text, "oversight_policy.yaml")


# ---------------------------------------------------------------- credentials
class Credential(BaseModel):
    """One dated credential a live clinic depends on. ``holder_id``: the NPI, the pharmacy id,
    ``midlevel_holder(...)`` for a midlevel, ``<workflow_id>:<kind>`` for an agreement.
    ``label`` tells apart credentials of one kind without a state (a board); never a person's name."""

    model_config = ConfigDict(frozen=True)

    credential: CredentialKind
    holder_id: str = Field(min_length=1)
    state: str = ""
    expires_on: date
    label: str = ""

    @property
    def holder_kind(self) -> HolderKind:
        return HOLDER_OF[self.credential]

    @property
    def key(self) -> str:
        """Stable across re-imports (no expiry date in it): the ladder's per-credential key."""
        return ":".join((self.credential, self.holder_id, self.state or "-", self.label or "-"))


class NoticeRecord(BaseModel):
    """A ladder step already sent (the store's record)."""

    credential_key: str
    expires_on: date
    step: Step


def days_left(expires_on: date, today: date) -> int:
    return (expires_on - today).days


def step_on(expires_on: date, today: date, ladder: Ladder | None = None) -> Step | None:
    """The ladder step a credential is at on ``today``: ``None`` before the first step, ``"lapsed"``
    once the expiry date has passed (expiring *on* a day is step 0, still valid that day)."""
    ladder = ladder or policy().ladder
    left = days_left(expires_on, today)
    if left < 0:
        return LAPSED
    reached = [d for d in ladder.days if left <= d]
    return min(reached) if reached else None


def notified_steps(cred: Credential, sent: Iterable[NoticeRecord], ladder: Ladder | None = None) -> list[Step]:
    """The steps already sent for this credential's *current* expiry date, in ladder order."""
    ladder = ladder or policy().ladder
    mine = {parse_step(r.step) for r in sent if r.credential_key == cred.key and r.expires_on == cred.expires_on}
    order = [*ladder.days, LAPSED]
    return [s for s in order if s in mine]


def due_step(cred: Credential, today: date, sent: Iterable[NoticeRecord], ladder: Ladder | None = None) -> Step | None:
    """The notice to send now: the current step, unless it was already sent for this expiry date."""
    ladder = ladder or policy().ladder
    step = step_on(cred.expires_on, today, ladder)
    if step is None or step in notified_steps(cred, sent, ladder):
        return None
    return step


def tells_clinic(step: Step, ladder: Ladder | None = None) -> bool:
    ladder = ladder or policy().ladder
    return step == LAPSED or step <= ladder.clinic_notice_within_days  # type: ignore[operator]


def recipients(step: Step, ladder: Ladder | None = None) -> list[str]:
    """Who hears of a step: the holder and ops; near the expiry and at the lapse, the clinic too."""
    return ["holder", "ops", *(["clinic"] if tells_clinic(step, ladder) else [])]


def notice_key(cred: Credential, step: Step) -> str:
    """The idempotency key of one notice (one per credential, expiry date and step)."""
    return f"renewal:{cred.key}:{cred.expires_on.isoformat()}:{step}"


def parse_step(value: object) -> Step:
    """A step as stored (``"90"``, ``90`` or ``"lapsed"``) back to a ``Step``."""
    if value == LAPSED:
        return LAPSED
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{value!r} is not a ladder step")


def suspended_states(cred: Credential, clinic_states: Iterable[str], suspends: LapseSuspends | None = None) -> list[str]:
    """The clinic states a lapse of ``cred`` suspends (sorted; empty when the lapse suspends nothing)."""
    rule = getattr(suspends or policy().lapse_suspends, cred.credential)
    states = sorted(set(clinic_states))
    if rule == "all":
        return states
    if rule == "state":
        return [cred.state] if cred.state in states else []
    return []


def suspended_pharmacy_states(cred: Credential, clinic_states: Iterable[str],
                              suspends: LapseSuspends | None = None) -> list[str]:
    """The clinic states in which a lapse of ``cred`` suspends its holder pharmacy (rule ``pharmacy``):
    the licence's own state when the clinic operates there; empty for every other credential."""
    rule = getattr(suspends or policy().lapse_suspends, cred.credential)
    return [cred.state] if rule == "pharmacy" and cred.state in set(clinic_states) else []


# ---------------------------------------------------------------- what a clinic depends on
_BOARD_WITH_DATE = re.compile(r"^(?P<board>[^:]+):(?P<expires>\d{4}-\d{2}-\d{2})$")


def physician_credentials(p: PhysicianRecord, clinic_states: Iterable[str]) -> list[Credential]:
    """The director's credentials a clinic depends on: licences and DEA registrations in the clinic's
    states, malpractice cover, and board certifications written ``BOARD:YYYY-MM-DD`` in the roster (a
    board without a date is time-unlimited and not tracked)."""
    states = set(clinic_states)
    out = [Credential(credential="license", holder_id=p.npi, state=lic.state, expires_on=lic.expires)
           for lic in p.licenses if lic.state in states]
    out += [Credential(credential="dea", holder_id=p.npi, state=d.state, expires_on=d.expires)
            for d in p.dea if d.state in states]
    out.append(Credential(credential="malpractice", holder_id=p.npi, expires_on=p.malpractice_expires))
    for board in p.board_certifications:
        m = _BOARD_WITH_DATE.match(board)
        if m:
            try:
                expires = date.fromisoformat(m["expires"])
            except ValueError:
                continue
            out.append(Credential(credential="board_certification", holder_id=p.npi, expires_on=expires,
                                  label=m["board"]))
    return out


def midlevel_holder(clinic_key: str, state: str, role: str, license_number: str) -> str:
    """A midlevel's holder id: ``<clinic_key>:<state>:<role>-<8 hex of sha256(licence number)>`` (no name,
    no licence number in keys, audit entries or logs)."""
    return f"{clinic_key}:{state}:{role}-{hashlib.sha256(license_number.encode()).hexdigest()[:8]}"


def midlevel_credentials(intake: Intake) -> list[Credential]:
    """Each midlevel's licence with a ``license_expires`` in the intake (optional field)."""
    return [Credential(credential="midlevel_license", state=m.state, expires_on=m.license_expires,
                       holder_id=midlevel_holder(intake.clinic_key, m.state, m.role.value, m.license_number))
            for m in intake.midlevels if m.license_expires is not None]


def default_renewal_date(launched_on: date, term: AgreementTerm | None = None) -> date:
    """An agreement without a renewal date of its own ends one policy term (a year) after the launch."""
    return launched_on + timedelta(days=(term or policy().agreement_term).default_days)


def agreement_credentials(workflow_id: str, kinds: Iterable[str], launched_on: date,
                          renewal_dates: dict[str, date] | None = None,
                          term: AgreementTerm | None = None) -> list[Credential]:
    """Each signed agreement's term: its renewal date when the agreement data has one, else one
    policy term (a year) from the launch."""
    default = default_renewal_date(launched_on, term)
    dates = renewal_dates or {}
    return [Credential(credential="agreement_term", holder_id=f"{workflow_id}:{kind}", expires_on=dates.get(kind, default))
            for kind in sorted(set(kinds))]


def pharmacy_credentials(pharmacy_id: str, licenses: Iterable[tuple[str, date]],
                         clinic_states: Iterable[str]) -> list[Credential]:
    """A pharmacy's state licences (``(state, expires)``) in the clinic's states, when the pharmacy file
    carried them."""
    states = set(clinic_states)
    return [Credential(credential="pharmacy_license", holder_id=pharmacy_id, state=st, expires_on=exp)
            for st, exp in licenses if st in states]


class RenewalView(BaseModel):
    """One renewal in ``mdco renewals --json`` / ``mdco oversight status --json`` (CONTRACT.md)."""

    npi: str | None = None
    pharmacy_id: str | None = None
    holder_id: str
    credential: CredentialKind
    state: str = ""
    label: str = ""
    expires_on: date
    days_left: int
    step: Step | None = None
    notified_steps: list[Step] = Field(default_factory=list)
    clinics: list[str] = Field(default_factory=list)


def renewal_view(cred: Credential, today: date, sent: Iterable[NoticeRecord], clinics: Iterable[str] = (),
                 ladder: Ladder | None = None) -> RenewalView:
    return RenewalView(
        npi=cred.holder_id if cred.holder_kind == "physician" else None,
        pharmacy_id=cred.holder_id if cred.holder_kind == "pharmacy" else None,
        holder_id=cred.holder_id, credential=cred.credential, state=cred.state, label=cred.label,
        expires_on=cred.expires_on, days_left=days_left(cred.expires_on, today),
        step=step_on(cred.expires_on, today, ladder), notified_steps=notified_steps(cred, sent, ladder),
        clinics=sorted(set(clinics)))
