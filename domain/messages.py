"""Requests the workflows send to activities and answers humans send to workflows.

Messages carry ids, not contact details: activities look up e-mail addresses in the store, so the
workflow history holds as little PII as the intake itself requires.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, Field

from domain import limits
from domain.codes import Service, Stage
from domain.intake import Intake
from domain.onboarding import AgreementSpec, OversightPlan, PharmacyAssignment, Replacement


class StartRecord(BaseModel):
    workflow_id: str
    intake: Intake
    started_at: datetime
    actor: str = "sales"  # who started it (sales:<sub>); release 1 runs send none


class AssessRequest(BaseModel):
    workflow_id: str
    intake: Intake
    as_of: date


class MatchRequest(BaseModel):
    workflow_id: str
    intake: Intake
    plan: OversightPlan
    exclude_npis: list[str] = Field(default_factory=list)
    top: int = 10
    #: Physicians re-offered after an unanswered offer: ranked after every fresh candidate.
    reoffer_npis: list[str] = Field(default_factory=list)


class OfferRequest(BaseModel):
    workflow_id: str
    clinic_key: str
    npi: str
    sent_at: datetime
    expires_at: datetime
    round: int = 1  # a later round re-offers a physician whose earlier offer expired unanswered


class OfferStatusUpdate(BaseModel):
    workflow_id: str
    npi: str
    status: str
    at: datetime
    reason: str = ""
    round: int = 1


class Notice(BaseModel):
    """An e-mail to one party; ``key`` makes it idempotent across activity retries."""

    workflow_id: str
    key: str
    to_role: str  # ops | physician | clinic | pharmacy
    to_id: str = ""  # npi, pharmacy_id or clinic_key; empty for ops
    subject: str
    body: str


class StageRecord(BaseModel):
    workflow_id: str
    clinic_key: str
    stage: Stage
    sla_status: str
    at: datetime
    physician_npi: str | None = None
    note: str = ""


class DecisionRecord(BaseModel):
    """A human decision, kept in the append-only audit log: who, what, when, why."""

    workflow_id: str
    actor: str
    action: str
    at: datetime
    reason: str = ""
    detail: dict = Field(default_factory=dict)


class ProtocolRequest(BaseModel):
    workflow_id: str
    intake: Intake
    plan: OversightPlan
    npi: str


class PharmacyRequest(BaseModel):
    workflow_id: str
    intake: Intake
    plan: OversightPlan
    exclude: list[str] = Field(default_factory=list)  # pharmacies that declined: never asked again
    only: list[Service] | None = None  # re-select just these services (a declined pharmacy's)


class PharmacySelection(BaseModel):
    assignments: list[PharmacyAssignment] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class PacketRequest(BaseModel):
    workflow_id: str
    clinic_key: str
    npi: str
    assignment: PharmacyAssignment
    revision: int = 0  # > 0: the pharmacy is asked again (for a decliner's services): a packet of its own


class AgreementRequest(BaseModel):
    workflow_id: str
    intake: Intake
    plan: OversightPlan
    npi: str
    spec: AgreementSpec
    attempt: int = 1


class VoidRequest(BaseModel):
    workflow_id: str
    agreement_kind: str
    envelope_id: str
    reason: str


class AssignRequest(BaseModel):
    """Ops assign a physician by hand; eligibility is re-checked before capacity is taken."""

    npi: str = Field(pattern=r"^[0-9]{10}$")
    reason: str = Field(min_length=1)
    actor: str = "ops"


class EligibilityRequest(BaseModel):
    workflow_id: str
    intake: Intake
    plan: OversightPlan
    npi: str


class ResendRequest(BaseModel):
    reason: str = Field(min_length=1)
    actor: str = "ops"


class EnvelopeRecord(BaseModel):
    workflow_id: str
    envelope_id: str
    agreement_kind: str
    status: str
    at: datetime


class LaunchRequest(BaseModel):
    workflow_id: str
    clinic_key: str
    npi: str
    pharmacy_ids: list[str]
    at: datetime
    replaces: Replacement | None = None  # a replacement hands over: old capacity released, parties told
    #: the onboarding's Timing.protocol_review_every, kept for the clinic's oversight (None: the policy's)
    protocol_review_every: timedelta | None = None


class CancelRecord(BaseModel):
    workflow_id: str
    clinic_key: str
    reason: str
    at: datetime
    actor: str = "ops"  # who cancelled (the token's subject, e.g. ops:alice); release 1 runs send none
    keep_clinic: bool = False  # a cancelled replacement leaves the live clinic as it is


class ChartReviewRequest(BaseModel):
    clinic_key: str
    physician_npi: str
    cycle: int
    sample_percent: int
    due_at: datetime
    #: the oversight's Timing.protocol_review_every, kept per clinic for the sweep (None: the policy's)
    protocol_review_every: timedelta | None = None


# ---------------------------------------------------------------- answers from humans
class PhysicianAnswer(BaseModel):
    npi: str
    reason: str = Field(default="", max_length=1000)  # a decline's reason, when the physician gives one
    on_behalf_of: str = ""  # ops:<sub> when ops answer for the physician; empty from the physician's link
    # protocol approval: the SHA-256s of the documents the approver read; refused when the protocols changed
    sha256s: list[str] | None = None


class PlanDecision(BaseModel):
    approve: bool = True
    reason: str = Field(min_length=1)
    actor: str = "ops"


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1)
    actor: str = "ops"


class RetryRequest(BaseModel):
    """Ops retry a ``blocked`` onboarding from the step that failed."""

    reason: str = Field(min_length=1)
    actor: str = "ops"


#: a prescriber account number: bounded, no control characters (empty: not given); the API body uses it too
AccountNumber = Annotated[str, Field(max_length=limits.ACCOUNT_NUMBER_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")]


class PharmacyConfirmation(BaseModel):
    pharmacy_id: str
    on_behalf_of: str = ""  # ops:<sub> when ops confirm for the pharmacy
    #: the prescriber account the pharmacy opened for the director (what the clinic orders under);
    #: optional so confirmations sent before it existed still deserialize
    account_number: AccountNumber = ""


class PharmacyDecline(BaseModel):
    """A pharmacy turns the prescriber account down; the next qualifying pharmacy is asked."""

    pharmacy_id: str
    reason: str = Field(min_length=1, max_length=500)
    on_behalf_of: str = ""  # ops:<sub> when ops decline for the pharmacy
