"""The database schema, one SQLModel table per business record.

Unique keys are what make the Temporal activities idempotent: a retried activity hits the same
(workflow_id, ...) key and updates the row it already wrote instead of adding a second one.
Lists and maps are JSON columns (portable between SQLite and Postgres); datetimes are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, TypeDecorator
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes on both backends (SQLite has no time zones; naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _npi_fk(*, cascade: bool = False, **kw: Any) -> Any:
    """A physician reference; only a physician's own credentials go when the physician goes."""
    fk = ForeignKey("physicians.npi", ondelete="CASCADE") if cascade else ForeignKey("physicians.npi")
    return Field(sa_column_args=[fk], **kw)


# ---------------------------------------------------------------- clinics
class Clinic(SQLModel, table=True):
    __tablename__ = "clinics"

    key: str = Field(primary_key=True, max_length=64)
    name: str
    contact_name: str
    contact_email: str
    contact_phone: str
    states: list[str] = Field(default_factory=list, sa_type=JSON)
    care_model: str
    services: list[str] = Field(default_factory=list, sa_type=JSON)
    monthly_patients: int = 0
    intake: dict = Field(default_factory=dict, sa_type=JSON)  # the full intake, for later stages
    status: str = Field(default="pending", index=True)  # pending | active | cancelled
    activated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    physician_npi: str | None = Field(default=None, index=True)
    #: the clinic's Timing.protocol_review_every, in seconds, as its oversight last reported it (NULL:
    #: the policy's interval); the sweep opens the annual protocol review this long after the last approval
    protocol_review_every_seconds: float | None = None


# ---------------------------------------------------------------- physicians
class Physician(SQLModel, table=True):
    __tablename__ = "physicians"

    npi: str = Field(primary_key=True, max_length=10)
    first_name: str
    last_name: str
    degree: str
    email: str
    phone: str
    home_state: str
    max_clinics: int
    active_clinics: int = 0
    malpractice_expires: date
    board_certifications: list[str] = Field(default_factory=list, sa_type=JSON)
    telehealth: bool = False
    supervised_midlevels: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    practice_zip: str | None = Field(default=None, max_length=5)  # optional roster column (distance rules)
    excluded: bool = False
    exclusion_review: bool = False
    updated_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


class License(SQLModel, table=True):
    """A state medical licence; matching filters on ``state`` (the (state, npi) index answers the
    "licensed in every intake state" query from the index alone)."""

    __tablename__ = "licenses"
    __table_args__ = (UniqueConstraint("npi", "state", name="uq_licenses_npi_state"),
                      Index("ix_licenses_state_npi", "state", "npi"))

    id: int | None = Field(default=None, primary_key=True)
    npi: str = _npi_fk(cascade=True, index=True)
    state: str = Field(max_length=2)  # leading column of ix_licenses_state_npi
    number: str
    expires: date


class DeaRegistration(SQLModel, table=True):
    __tablename__ = "dea_registrations"
    __table_args__ = (UniqueConstraint("npi", "state", name="uq_dea_npi_state"),)

    id: int | None = Field(default=None, primary_key=True)
    npi: str = _npi_fk(cascade=True, index=True)
    state: str = Field(index=True, max_length=2)
    number: str
    expires: date


class PhysicianTherapy(SQLModel, table=True):
    __tablename__ = "physician_therapies"
    __table_args__ = (UniqueConstraint("npi", "service", name="uq_therapies_npi_service"),)

    id: int | None = Field(default=None, primary_key=True)
    npi: str = _npi_fk(cascade=True, index=True)
    service: str = Field(index=True)


# ---------------------------------------------------------------- pharmacies
class Pharmacy(SQLModel, table=True):
    __tablename__ = "pharmacies"

    pharmacy_id: str = Field(primary_key=True)
    name: str
    kind: str  # 503A | 503B
    licensed_states: list[str] = Field(default_factory=list, sa_type=JSON)
    capabilities: list[str] = Field(default_factory=list, sa_type=JSON)
    services: list[str] = Field(default_factory=list, sa_type=JSON)
    email: str
    updated_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


def _pharmacy_fk(**kw: Any) -> Any:
    return Field(sa_column_args=[ForeignKey("pharmacies.pharmacy_id", ondelete="CASCADE")], **kw)


class PharmacyLicense(SQLModel, table=True):
    """A pharmacy's state licence or non-resident permit, from the pharmacy file's ``licenses`` column."""

    __tablename__ = "pharmacy_licenses"
    __table_args__ = (UniqueConstraint("pharmacy_id", "state", name="uq_pharmacy_licenses_state"),)

    id: int | None = Field(default=None, primary_key=True)
    pharmacy_id: str = _pharmacy_fk(index=True)
    state: str = Field(max_length=2)
    number: str
    expires: date


class PharmacyCompliance(SQLModel, table=True):
    """The pharmacy file's other optional columns; ``on_file`` names the columns any import carried."""

    __tablename__ = "pharmacy_compliance"

    pharmacy_id: str = _pharmacy_fk(primary_key=True)
    on_file: list[str] = Field(default_factory=list, sa_type=JSON)
    dea_number: str | None = None
    dea_expires: date | None = None
    fda_fei: str | None = None
    fda_last_inspection: date | None = None
    attestations: dict[str, str] = Field(default_factory=dict, sa_type=JSON)  # usp79x -> ISO date
    updated_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


# ---------------------------------------------------------------- onboarding progress
class Onboarding(SQLModel, table=True):
    __tablename__ = "onboardings"

    workflow_id: str = Field(primary_key=True)
    clinic_key: str = Field(index=True)
    stage: str = Field(default="needs_assessment", index=True)
    sla_status: str = Field(default="on_track")
    physician_npi: str | None = None
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    matched_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    launched_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    cancel_reason: str = ""
    plan: dict | None = Field(default=None, sa_type=JSON)  # OversightPlan.model_dump(mode="json")


class CapacityReservation(SQLModel, table=True):
    """One clinic slot a workflow holds on a physician; ``released_at`` set once it is given back."""

    __tablename__ = "capacity_reservations"

    workflow_id: str = Field(primary_key=True)
    npi: str = _npi_fk(index=True)
    reserved_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Offer(SQLModel, table=True):
    __tablename__ = "offers"

    workflow_id: str = Field(primary_key=True)
    npi: str = _npi_fk(primary_key=True, index=True)
    status: str = "open"  # open | accepted | declined | expired | withdrawn | lost
    sent_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    reason: str = ""


class Protocol(SQLModel, table=True):
    __tablename__ = "protocols"

    workflow_id: str = Field(primary_key=True)
    service: str = Field(primary_key=True)
    template_version: str
    body: str
    sha256: str = Field(max_length=64)
    approved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    approved_by: str | None = None  # the approving physician's NPI


class ProtocolContentRow(SQLModel, table=True):
    """The structured content a protocol document was rendered from (``domain.protocols.ProtocolContent``),
    for ``mdco protocols show``; ``sha256`` names the document it belongs to."""

    __tablename__ = "protocol_contents"

    workflow_id: str = Field(primary_key=True)
    service: str = Field(primary_key=True)
    sha256: str = Field(max_length=64)
    content: dict = Field(default_factory=dict, sa_type=JSON)


class PharmacyAssignment(SQLModel, table=True):
    __tablename__ = "pharmacy_assignments"

    workflow_id: str = Field(primary_key=True)
    pharmacy_id: str = Field(primary_key=True, sa_column_args=[ForeignKey("pharmacies.pharmacy_id")])
    services: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = "packet_sent"  # packet_sent | confirmed
    packet_sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Agreement(SQLModel, table=True):
    """One agreement per (workflow, kind); ``envelope_id`` is the current DocuSign envelope."""

    __tablename__ = "agreements"

    workflow_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    template_version: str
    envelope_id: str | None = Field(default=None, unique=True)  # NULLs do not collide
    status: str = "created"  # created | sent | delivered | completed | declined | voided | terminated
    status_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    document_path: str | None = None
    sha256: str | None = None
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # added later, nullable (store.db.add_missing_columns): the term's end; NULL: a year from launch (policy)
    renews_on: date | None = None


# ---------------------------------------------------------------- audit and notifications
class AuditEntry(SQLModel, table=True):
    """Append-only trail of who did what and why; ``idem_key`` de-duplicates retried activities."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_workflow_at", "workflow_id", "at"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    workflow_id: str
    actor: str
    action: str
    detail: dict = Field(default_factory=dict, sa_type=JSON)
    reason: str = ""
    idem_key: str | None = Field(default=None, sa_type=String, unique=True)


class Notification(SQLModel, table=True):
    """An e-mail already sent, by business key, so a retried activity does not send it twice."""

    __tablename__ = "notifications"

    key: str = Field(primary_key=True)
    to_role: str
    subject: str
    sent_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


# ---------------------------------------------------------------- OIG LEIE exclusion list
class LeieExclusion(SQLModel, table=True):
    """The current OIG LEIE list (replaced as a whole by each import); no address or DOB kept."""

    __tablename__ = "leie_exclusions"

    id: int | None = Field(default=None, primary_key=True)
    line: int  # line in the imported file, cited in screening reasons
    npi: str | None = Field(default=None, index=True, max_length=10)
    last_name: str = ""
    first_name: str = ""
    mid_name: str = ""
    business_name: str = ""
    general: str = ""
    specialty: str = ""
    state: str = Field(default="", index=True, max_length=2)
    excl_type: str
    excl_date: date
    rein_date: date | None = None
    waiver_date: date | None = None
    waiver_state: str = ""


# ---------------------------------------------------------------- ongoing oversight (store/oversight.py)
class RenewalNotice(SQLModel, table=True):
    """A renewal-ladder step already sent: once per credential key, expiry date and step."""

    __tablename__ = "renewal_notices"
    __table_args__ = (UniqueConstraint("credential_key", "expires_on", "step", name="uq_renewal_notices_step"),)

    id: int | None = Field(default=None, primary_key=True)
    credential_key: str = Field(index=True)
    credential: str
    holder_id: str
    state: str = ""
    expires_on: date
    step: str  # "90" ... "0" or "lapsed"
    clinics: list[str] = Field(default_factory=list, sa_type=JSON)
    sent_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


class OversightSuspension(SQLModel, table=True):
    """Prescribing oversight suspended in one state for one clinic (a lapse or an exclusion)."""

    __tablename__ = "oversight_suspensions"

    clinic_key: str = Field(primary_key=True, max_length=64)
    state: str = Field(primary_key=True, max_length=2)
    cause: str  # the credential key, or exclusion:<npi>
    reason: str
    since: datetime = Field(sa_type=UtcDateTime)
    lifted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class PharmacySuspension(SQLModel, table=True):
    """One pharmacy suspended for one clinic in one state: its licence there lapsed (the clinic's
    oversight goes on; prescriptions there must go to another pharmacy until the licence is renewed)."""

    __tablename__ = "pharmacy_suspensions"

    clinic_key: str = Field(primary_key=True, max_length=64)
    pharmacy_id: str = Field(primary_key=True)
    state: str = Field(primary_key=True, max_length=2)
    cause: str  # the credential key
    reason: str
    since: datetime = Field(sa_type=UtcDateTime)
    lifted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ChartReviewRecord(SQLModel, table=True):
    """One chart-review cycle of a clinic and what its medical director recorded."""

    __tablename__ = "chart_reviews"

    review_id: str = Field(primary_key=True)
    clinic_key: str = Field(index=True, max_length=64)
    physician_npi: str
    cycle: int
    sample_percent: int
    opened_at: datetime = Field(sa_type=UtcDateTime)
    due_at: datetime = Field(sa_type=UtcDateTime)
    status: str = "open"  # open | submitted (overdue is open past due_at)
    charts_reviewed: int | None = None
    deficiencies: int | None = None
    notes: str = ""
    submitted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    submitted_by: str | None = None
    escalated: str = ""  # "" | director | ops: how far an overdue review has been escalated
    # added later, nullable (store.db.add_missing_columns): charts to review (NULL: opened before it was kept)
    sample_charts: int | None = None
    # added later, nullable: what the sample was taken of, ``reported`` (the clinic's chart count for a period
    # overlapping the cycle, table chart_counts) or ``patient_volume`` (the intake's monthly patients); NULL:
    # opened before it was kept (the patient volume)
    sample_basis: str | None = None


class ChartCount(SQLModel, table=True):
    """The number of charts (patient encounters) a clinic reported for a period (``mdco reviews charts``);
    one row per clinic and period, a re-report of the same period replaces its count. A chart review
    samples the plan's percentage of the counts reported for periods overlapping its cycle."""

    __tablename__ = "chart_counts"

    clinic_key: str = Field(primary_key=True, max_length=64)
    period_start: date = Field(primary_key=True)
    period_end: date = Field(primary_key=True)
    charts: int
    reported_at: datetime = Field(sa_type=UtcDateTime)
    reported_by: str  # the actor: ops:<sub>, clinic:<key>, cli:<user>


class CorrectiveAction(SQLModel, table=True):
    """Opened when a submitted chart review found deficiencies: one per review, due by policy."""

    __tablename__ = "corrective_actions"

    action_id: str = Field(primary_key=True)  # <review_id>-ca
    review_id: str = Field(index=True, unique=True)
    clinic_key: str = Field(index=True, max_length=64)
    physician_npi: str
    deficiencies: int
    opened_at: datetime = Field(sa_type=UtcDateTime)
    due_at: datetime = Field(sa_type=UtcDateTime)
    status: str = "open"  # open | closed
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    closed_by: str | None = None  # the director's NPI
    close_notes: str | None = None
    escalated: str | None = None  # the last escalation of an overdue action: director, director+<d>, ops


class ProtocolReview(SQLModel, table=True):
    """The annual protocol review: the clinic's director re-approves the protocol texts in force, bound to
    the SHA-256s they had when the review opened (``<clinic_key>-pr-<n>``)."""

    __tablename__ = "protocol_reviews"

    review_id: str = Field(primary_key=True)
    clinic_key: str = Field(index=True, max_length=64)
    workflow_id: str  # the launched placement whose protocols are re-approved
    physician_npi: str
    sha256s: list[str] = Field(default_factory=list, sa_type=JSON)
    opened_at: datetime = Field(sa_type=UtcDateTime)
    due_at: datetime = Field(sa_type=UtcDateTime)
    status: str = "open"  # open | approved
    approved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    approved_by: str | None = None
    escalated: str | None = None  # director, director+<d>, ops


class AdverseEventRecord(SQLModel, table=True):
    """An adverse event the clinic reported and its acknowledgement by the medical director."""

    __tablename__ = "adverse_events"

    event_id: str = Field(primary_key=True)
    clinic_key: str = Field(index=True, max_length=64)
    severity: str  # minor | serious | sentinel
    summary: str
    reported_at: datetime = Field(sa_type=UtcDateTime)
    ack_due_at: datetime = Field(sa_type=UtcDateTime)
    status: str = "open"  # open | acknowledged | escalated
    acked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    acked_by: str | None = None
    ack_notes: str = ""
    escalated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # added later, nullable (store.db.add_missing_columns): the draft MedWatch 3500 of a serious or sentinel event
    medwatch_path: str | None = None
    medwatch_sha256: str | None = None
