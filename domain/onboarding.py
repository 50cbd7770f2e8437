"""Values that cross the workflow boundary: input, timing, plan, status and activity payloads.

They are plain pydantic models so the Temporal pydantic data converter carries them, and the
status JSON of CONTRACT.md is ``OnboardingStatus.model_dump(mode="json")``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from domain.codes import PharmacyKind, Service, SlaStatus, Stage
from domain.intake import Intake


OFFER_TTL = timedelta(hours=4)
#: Default of ``Timing.offer_widen_after`` (issue 13): the largest of 15/30/45/60 min whose event model gives a
#: median time to match <= 2 h at fan-out 3 and pool 20 both with the response history known (1.69 h) and
#: without any (1.85 h); 60 min gives 1.87 / 2.06 h. The price: offers per onboarding at pool 20 go from 8.7 to
#: 15.1, of which 13.3 instead of 6.1 are withdrawn at the accept (physicians who get an "offer withdrawn");
#: placed within 12 h 99.96 % -> 99.99 %. At pool 5, 5.5 -> 6.7 offers (2.1 -> 3.1 withdrawn), median
#: 2.78 -> 2.57 h. ``bench.sla_model --pool 5 20 --fanout 3 --burst 15 --widen-after 15 30 45 60`` (BENCHMARKS.md).
OFFER_WIDEN_AFTER = timedelta(minutes=45)


class Timing(BaseModel):
    """Every timer the onboarding uses. Real durations in production and time-skipping tests,
    seconds in the demo, so that the same workflow code runs at any speed."""

    sla_at_risk: timedelta = timedelta(hours=12)
    sla_breach: timedelta = timedelta(hours=24)
    offer_ttl: timedelta = OFFER_TTL
    roster_retry: timedelta = timedelta(hours=1)
    plan_review_reminder: timedelta = timedelta(hours=8)
    reminder_every: timedelta = timedelta(hours=24)
    escalate_after_reminders: int = 3
    agreement_expiry: timedelta = timedelta(days=14)
    agreement_max_sends: int = 2  # an expired envelope is voided and resent once, then escalated
    reconcile_after: timedelta = timedelta(hours=24)  # no Connect event that long -> one status GET
    reconcile_min_gap: timedelta = timedelta(minutes=15)  # never more than one GET per envelope per gap
    chart_review_every: timedelta | None = None  # None -> the plan's chart-review cadence
    chart_review_deadline: timedelta = timedelta(days=14)
    roster_retry_max: timedelta = timedelta(days=1)  # waits on the roster back off up to this
    max_history_events: int = 10_000  # continue-as-new past this (or when the server suggests it)
    offer_rounds_max: int = 3  # rounds of offers per onboarding (later rounds re-ask silent physicians)
    #: SLA-pressure widening (patch sla-burst-v1): once the first offer expired unanswered, every eligible
    #: physician not yet offered is offered too, up to this many open offers at once (at least the fan-out);
    #: 0 or None: no burst (one more open offer per expired one, up to 10). 15: the smallest of 10/15/20 whose
    #: event model places >= 99.9 % within 12 h at fan-out 3 and pool 20 (BENCHMARKS.md, issue 13)
    offer_burst_max: int | None = Field(default=15, ge=0, le=100)
    #: Early SLA-pressure widening (patch sla-widen-early-v1): when nobody accepted this long after the first
    #: offer went out, widen to ``offer_burst_max`` open offers at once, as at the first expiry (needs a cap;
    #: None: only at the first expiry). Default: OFFER_WIDEN_AFTER. Must be shorter than ``offer_ttl``; a
    #: default that is not (an input with a short TTL, e.g. one recorded before the field existed) is off.
    offer_widen_after: timedelta | None = Field(default=OFFER_WIDEN_AFTER, ge=timedelta(0))
    #: the director's deadline to acknowledge an adverse event, by severity; a severity not given takes
    #: the policy's (oversight_policy.yaml: minor 72 h, serious 24 h, sentinel 1 h)
    event_ack: dict[Literal["minor", "serious", "sentinel"], timedelta] = Field(default_factory=dict)
    #: the annual protocol review opens this long after the last approval of the clinic's protocols;
    #: None -> the policy's interval (oversight_policy.yaml protocol_review.interval_days: a year)
    protocol_review_every: timedelta | None = None

    @model_validator(mode="after")
    def _widen_before_expiry(self) -> "Timing":
        """An early widening given explicitly must come before the first offer expires (the burst at expiry
        covers the rest); the default is off when the TTL is that short."""
        if self.offer_widen_after is not None and self.offer_widen_after >= self.offer_ttl:
            if "offer_widen_after" in self.model_fields_set:
                raise ValueError(f"offer_widen_after ({self.offer_widen_after}) must be shorter than offer_ttl "
                                 f"({self.offer_ttl}); None turns the early widening off")
            self.offer_widen_after = None
        return self

    @classmethod
    def demo(cls) -> "Timing":
        """The demo's compressed clock: hours become seconds."""
        demo_ttl = timedelta(seconds=60)
        return cls(
            sla_at_risk=timedelta(seconds=120), sla_breach=timedelta(seconds=240),
            offer_ttl=demo_ttl, roster_retry=timedelta(seconds=10),
            # the same share of the offer's lifetime as in production (45 min of 4 h: 11.25 s of 60 s)
            offer_widen_after=demo_ttl * (OFFER_WIDEN_AFTER / OFFER_TTL),
            plan_review_reminder=timedelta(seconds=30), reminder_every=timedelta(seconds=30),
            agreement_expiry=timedelta(seconds=600), reconcile_after=timedelta(seconds=60),
            reconcile_min_gap=timedelta(seconds=15), chart_review_every=timedelta(seconds=60),
            chart_review_deadline=timedelta(seconds=30),
            # adverse-event acknowledgement, hours as ten seconds like the SLA (72 h, 24 h); a sentinel
            # event's hour gets 30 s so a person watching the demo can still acknowledge it
            event_ack={"minor": timedelta(seconds=720), "serious": timedelta(seconds=240),
                       "sentinel": timedelta(seconds=30)},
            # a month of oversight is a minute: the year before the protocol review is twelve of them
            protocol_review_every=timedelta(seconds=720),
        )


class Replacement(BaseModel):
    """What a replacement placement replaces: the outgoing director of a live clinic. The placement
    runs the onboarding stages again (matching without the outgoing physician, protocols, pharmacies,
    agreements) and hands the clinic over to the new director in the same oversight workflow."""

    outgoing_npi: str
    previous_workflow_id: str  # the placement whose director leaves (its capacity is released at hand-over)
    oversight_workflow_id: str
    reason: str


class DirectorChange(BaseModel):
    """Signal to the oversight workflow: a replacement placement launched with a new director."""

    npi: str
    workflow_id: str
    at: datetime


class OnboardingInput(BaseModel):
    intake: Intake
    timing: Timing = Field(default_factory=Timing)
    offer_fanout: int = Field(default=3, ge=1, le=10)
    as_of: date | None = None  # the assessment date; None -> the workflow's start date
    carry: "OnboardingCarry | None" = None  # the state a continue-as-new hands to the next run
    started_by: str = "sales"  # the token subject that started it (sales:<sub>), for the audit trail
    replacement: Replacement | None = None  # set: this placement replaces a live clinic's director


# ---------------------------------------------------------------- stage 1: the oversight plan
class Finding(BaseModel):
    rule_id: str
    severity: Literal["blocking", "warning", "info"]
    message: str
    source: str = ""


class StateChartReview(BaseModel):
    """One state's own chart-review requirement: ``law`` where the state sets one, else ``policy``
    (the company default: the state sets none, or the dataset has not verified it)."""

    percent: int
    cadence_days: int
    basis: str
    source: str = ""


class StatePlan(BaseModel):
    state: str
    np_practice: str = "unknown"
    pa_supervision: str = "unknown"
    supervision_ratio_cap: int | None = None  # the smallest of ratio_caps
    #: each cap by the roles it counts ("PA": 8, "NP": 4; "NP/PA": 7 where they share one)
    ratio_caps: dict[str, int] = Field(default_factory=dict)
    gfe_mode: str = "unknown"
    dea_required: bool = False
    #: the director must practise near the state's offices (on-site/hybrid care under a state rule) ...
    director_local: bool = False
    #: ... and hold one of these boards, certified or eligible (empty: any)
    director_board_certifications: list[str] = Field(default_factory=list)
    #: ... with a primary practice within this many miles of each office there (or in its county)
    director_within_miles: int | None = None
    #: the state's own chart-review requirement (the plan's chart_review is the strictest over the states)
    chart_review: StateChartReview | None = None
    notes: list[str] = Field(default_factory=list)


class ChartReview(BaseModel):
    """The plan's review: the strictest percentage and the strictest cadence over the states."""

    percent: int = 10
    cadence_days: int = 30
    basis: str = "policy"  # "law" where a state sets it, "policy" for the company default


class QuoteLine(BaseModel):
    factor: str
    amount_usd: int
    explanation: str


class Quote(BaseModel):
    monthly_usd: int
    lines: list[QuoteLine] = Field(default_factory=list)


class OversightPlan(BaseModel):
    as_of: date
    states: dict[str, StatePlan]
    dea_required_states: list[str] = Field(default_factory=list)
    oversight_mode: str = "remote"
    oversight_reason: str = ""
    chart_review: ChartReview = Field(default_factory=ChartReview)
    pharmacy_model: dict[str, str] = Field(default_factory=dict)  # service -> "503A" | "503B" | "none"
    findings: list[Finding] = Field(default_factory=list)
    quote: Quote

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocking"]


# ---------------------------------------------------------------- stage 2: matching
class Candidate(BaseModel):
    npi: str
    display_name: str
    score: float
    reasons: list[str] = Field(default_factory=list)


class Exclusion(BaseModel):
    npi: str
    display_name: str
    reasons: list[str]


class MatchResult(BaseModel):
    candidates: list[Candidate] = Field(default_factory=list)
    excluded: list[Exclusion] = Field(default_factory=list)


class OfferView(BaseModel):
    npi: str
    status: Literal["open", "accepted", "declined", "expired", "withdrawn", "lost"] = "open"
    sent_at: datetime
    expires_at: datetime
    round: int = 1  # 2+: re-offered after an earlier offer to this physician expired unanswered
    answered_at: datetime | None = None
    reason: str = ""


class ReservationResult(BaseModel):
    ok: bool
    reason: str = ""


class OfferAnswer(BaseModel):
    accepted: bool
    npi: str
    status: str
    message: str


# ---------------------------------------------------------------- stages 3-5
class ProtocolView(BaseModel):
    service: Service
    template_version: str
    sha256: str
    status: Literal["pending_approval", "approved"] = "pending_approval"


class PharmacyAssignment(BaseModel):
    pharmacy_id: str
    name: str = ""
    kind: PharmacyKind
    services: list[Service]
    status: Literal["packet_sent", "confirmed", "declined"] = "packet_sent"
    decline_reason: str = ""
    replaced: bool = False  # a declined pharmacy's services went to the next qualifying one
    account_number: str = ""  # the prescriber account the pharmacy confirmed (empty: not given)


class AgreementSpec(BaseModel):
    agreement_kind: str  # e.g. medical_director, collaborative_practice_TX, protocol_packet
    template_version: str
    title: str
    #: protocol_packet only: the SHA-256s of the approved protocol documents the envelope carries
    sha256s: list[str] = Field(default_factory=list)


class EnvelopeView(BaseModel):
    envelope_id: str
    agreement_kind: str
    template_version: str = ""
    status: str = "sent"  # sent | delivered | completed | declined | voided
    status_at: datetime | None = None
    sent_at: datetime | None = None
    attempt: int = 1  # 2 after a void + resend
    current: bool = True  # False once replaced by a resent envelope


class EnvelopeEvent(BaseModel):
    """A DocuSign Connect event, reduced to what the workflow needs (no signer PII)."""

    envelope_id: str
    status: str
    generated_at: datetime


# ---------------------------------------------------------------- status (query / CLI / API)
class TimelineEntry(BaseModel):
    at: datetime
    stage: str
    event: str


class OnboardingStatus(BaseModel):
    workflow_id: str
    clinic_key: str
    stage: Stage
    sla_status: SlaStatus
    sla_deadline: datetime | None = None
    started_at: datetime | None = None
    matched_at: datetime | None = None
    time_to_match_minutes: float | None = None  # the placement SLA's measure
    waiting_on: str = ""
    waiting_reason: str = ""
    physician_npi: str | None = None
    offers: list[OfferView] = Field(default_factory=list)
    offer_round: int = 1  # the matching round (2+: silent physicians re-offered)
    protocols: list[ProtocolView] = Field(default_factory=list)
    pharmacies: list[PharmacyAssignment] = Field(default_factory=list)
    envelopes: list[EnvelopeView] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    quote_monthly_usd: int | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    cancel_reason: str = ""
    oversight_workflow_id: str = ""
    blocked_stage: str = ""  # the stage that failed while ``stage`` is ``blocked``


class OnboardingCarry(BaseModel):
    """Everything a run hands to its continue-as-new successor (a long wait on the roster or on a
    pharmacy gap), so the next run resumes the same stage with the same offers, SLA and timeline."""

    stage: Stage
    started_at: datetime
    matched_at: datetime | None = None
    sla: SlaStatus
    plan: "OversightPlan"
    offers: list[OfferView] = Field(default_factory=list)
    past_offers: list[OfferView] = Field(default_factory=list)
    offer_round: int = 1
    physician: str | None = None
    protocols: list[ProtocolView] = Field(default_factory=list)
    pharmacies: list[PharmacyAssignment] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    roster_version: int = 0
    roster_waits: int = 0  # the wait's back-off exponent
    told_ops: str = ""  # the wait ops were last told about (not told again by the next run)
    waiting_on: str = ""
    waiting_reason: str = ""
    runs: int = 1
    envelopes: list[EnvelopeView] = Field(default_factory=list)  # the signed protocol packet, once stage 3 ends
    offers_widened: bool = False  # ops were told the offers widened (sla-burst-v1): not told again


class OversightInput(BaseModel):
    clinic_key: str
    physician_npi: str
    states: list[str]
    chart_review: ChartReview = Field(default_factory=ChartReview)
    timing: Timing = Field(default_factory=Timing)
    cycles_done: int = 0
    open_reviews: list[str] = Field(default_factory=list)  # carried through continue-as-new
    suspended_states: list[str] = Field(default_factory=list)  # carried: states suspended by a lapse/exclusion
    replacement_workflow_id: str = ""  # carried: a replacement placement under way


class OversightStatus(BaseModel):
    clinic_key: str
    physician_npi: str
    cycles_done: int
    next_chart_review_at: datetime | None = None
    open_reviews: list[str] = Field(default_factory=list)


OnboardingInput.model_rebuild()
