"""Fake activities registered under the real names, for workflow tests on the time-skipping server.

They keep an in-memory world (roster capacity, sent offers, e-mails) so tests can assert what the
workflow asked for without a database, SMTP or e-sign server.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.codes import PharmacyKind, Service
from domain.messages import (
    AgreementRequest, AssessRequest, CancelRecord, ChartReviewRequest, DecisionRecord, EligibilityRequest, EnvelopeRecord,
    LaunchRequest, MatchRequest, Notice, OfferRequest, OfferStatusUpdate, PacketRequest, PharmacyRequest,
    PharmacySelection, ProtocolRequest, StageRecord, StartRecord, VoidRequest,
)
from activities.onboarding import envelope_external_id
from activities.replacement import ReplacementRequest, ReplacementStarted
from domain.oversight import AdverseEventWatch, OffboardRecord, SweepRequest, SweepSummary
from domain.onboarding import (
    AgreementSpec, Candidate, EnvelopeEvent, EnvelopeView, Exclusion, Finding, MatchResult, OversightPlan, PharmacyAssignment,
    ProtocolView, Quote, ReservationResult, StatePlan,
)


@dataclass
class FakeWorld:
    roster: list[str] = field(default_factory=lambda: ["1000000001", "1000000002", "1000000003", "1000000004"])
    capacity: dict[str, int] = field(default_factory=dict)  # npi -> free slots (default 1)
    blocking_findings: bool = False
    calls: list[tuple[str, object]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    reservations: dict[str, str] = field(default_factory=dict)
    envelopes: dict[str, str] = field(default_factory=dict)  # external id -> envelope id
    envelope_status: dict[str, str] = field(default_factory=dict)  # what a status GET answers
    ineligible: dict[str, list[str]] = field(default_factory=dict)  # npi -> reasons
    failures: dict[str, str] = field(default_factory=dict)  # activity name -> non-retryable business failure
    delays: dict[str, float] = field(default_factory=dict)  # activity name -> real seconds it takes
    bad_data: dict[str, str] = field(default_factory=dict)  # activity name -> ValueError it raises
    released: list[str] = field(default_factory=list)  # workflow ids whose capacity was released
    sweep_alerts: list = field(default_factory=list)  # ComplianceAlerts the next compliance_sweep returns
    acked_events: set = field(default_factory=set)  # event ids acknowledged (escalate_adverse_event: no-op)
    pharmacies: list[str] = field(default_factory=lambda: ["austin-rx", "dallas-rx"])  # in selection order
    protocol_text: str = "v1"  # what prepare_protocols renders (its SHA-256s change with it)
    #: Connect reports each protocol packet completed as soon as it is sent (False: the test signs it)
    packet_signed_at_once: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def called(self, name: str) -> list[object]:
        return [arg for n, arg in self.calls if n == name]

    def activities(self) -> list:
        world = self

        def record(name: str, arg: object) -> None:
            with world.lock:
                world.calls.append((name, arg))
                failure, delay, bad = world.failures.get(name), world.delays.get(name, 0.0), world.bad_data.get(name)
            if delay:
                time.sleep(delay)
            if failure:
                raise ApplicationError(failure, type="InvalidInput", non_retryable=True)
            if bad:
                raise ValueError(bad)

        @activity.defn(name="record_start")
        def record_start(req: StartRecord) -> None:
            record("record_start", req)

        @activity.defn(name="assess_needs")
        def assess_needs(req: AssessRequest) -> OversightPlan:
            record("assess_needs", req)
            findings = [Finding(rule_id="test.blocking", severity="blocking", message="needs review")] \
                if world.blocking_findings else []
            return OversightPlan(as_of=req.as_of, states={s: StatePlan(state=s) for s in req.intake.states},
                                 findings=findings, quote=Quote(monthly_usd=1500))

        @activity.defn(name="find_candidates")
        def find_candidates(req: MatchRequest) -> MatchResult:
            record("find_candidates", req)
            left = sorted((n for n in world.roster if n not in req.exclude_npis), key=lambda n: n in req.reoffer_npis)
            return MatchResult(
                candidates=[Candidate(npi=n, display_name=f"Dr {n}", score=100 - i) for i, n in enumerate(left)][:req.top],
                excluded=[Exclusion(npi="1999999999", display_name="Dr X", reasons=["no licence in TX"])])

        @activity.defn(name="send_offer")
        def send_offer(req: OfferRequest) -> None:
            record("send_offer", req)

        @activity.defn(name="record_offer")
        def record_offer(req: OfferStatusUpdate) -> None:
            record("record_offer", req)

        @activity.defn(name="reserve_physician")
        def reserve_physician(workflow_id: str, npi: str) -> ReservationResult:
            record("reserve_physician", (workflow_id, npi))
            with world.lock:
                if world.reservations.get(workflow_id) == npi:
                    return ReservationResult(ok=True)
                free = world.capacity.get(npi, 1)
                if free <= 0:
                    return ReservationResult(ok=False, reason="at capacity")
                world.capacity[npi] = free - 1
                world.reservations[workflow_id] = npi
            return ReservationResult(ok=True)

        @activity.defn(name="notify")
        def notify(notice: Notice) -> None:
            record("notify", notice)
            with world.lock:
                world.notices.append(notice)

        @activity.defn(name="record_stage")
        def record_stage(req: StageRecord) -> None:
            record("record_stage", req)

        @activity.defn(name="record_decision")
        def record_decision(req: DecisionRecord) -> None:
            record("record_decision", req)

        @activity.defn(name="prepare_protocols")
        def prepare_protocols(req: ProtocolRequest) -> list[ProtocolView]:
            record("prepare_protocols", req)
            return [ProtocolView(service=s, template_version="v1", sha256=protocol_sha256(s))
                    for s in req.intake.services]

        def protocol_sha256(service: Service) -> str:
            return hashlib.sha256(f"{service.value}:{world.protocol_text}".encode()).hexdigest()

        @activity.defn(name="select_pharmacies")
        def select_pharmacies(req: PharmacyRequest) -> PharmacySelection:
            record("select_pharmacies", req)
            services = [s for s in req.intake.services if s in (Service.glp1_weight_loss, Service.testosterone_hrt)
                        and (req.only is None or s in req.only)]
            if not services:
                return PharmacySelection()
            left = [p for p in world.pharmacies if p not in req.exclude]
            if not left:
                return PharmacySelection(problems=[f"{s.value}: no 503A pharmacy on file (declined: "
                                                   f"{', '.join(req.exclude)})" for s in services])
            return PharmacySelection(assignments=[PharmacyAssignment(
                pharmacy_id=left[0], kind=PharmacyKind.compounding_503a, services=services)])

        @activity.defn(name="send_prescriber_packet")
        def send_prescriber_packet(req: PacketRequest) -> None:
            record("send_prescriber_packet", req)

        @activity.defn(name="prepare_agreements")
        def prepare_agreements(req: ProtocolRequest) -> list[AgreementSpec]:
            record("prepare_agreements", req)
            specs = [AgreementSpec(agreement_kind="medical_director", template_version="v1", title="MDA")]
            for state in sorted({m.state for m in req.intake.midlevels if m.role in ("NP", "PA")}):
                specs.append(AgreementSpec(agreement_kind=f"collaborative_practice_{state}",
                                           template_version="v1", title=f"CPA {state}"))
            return specs

        @activity.defn(name="prepare_protocol_packet")
        def prepare_protocol_packet(req: ProtocolRequest) -> AgreementSpec:
            record("prepare_protocol_packet", req)
            return AgreementSpec(agreement_kind="protocol_packet", template_version="v1", title="Protocol packet",
                                 sha256s=sorted(protocol_sha256(s) for s in req.intake.services))

        @activity.defn(name="send_agreement")
        async def send_agreement(req: AgreementRequest) -> EnvelopeView:
            record("send_agreement", req)
            external = envelope_external_id(req.workflow_id, req.spec.agreement_kind, req.spec.template_version,
                                            req.attempt)
            with world.lock:
                env_id = world.envelopes.setdefault(external, f"env-{len(world.envelopes) + 1}")
            if req.spec.agreement_kind == "protocol_packet" and world.packet_signed_at_once:
                await activity.client().get_workflow_handle(req.workflow_id).signal(
                    "envelope_event", EnvelopeEvent(envelope_id=env_id, status="completed",
                                                    generated_at=datetime.now(timezone.utc)))
            return EnvelopeView(envelope_id=env_id, agreement_kind=req.spec.agreement_kind,
                                template_version=req.spec.template_version)

        @activity.defn(name="void_envelope")
        def void_envelope(req: VoidRequest) -> None:
            record("void_envelope", req)
            world.envelope_status[req.envelope_id] = "voided"

        @activity.defn(name="check_envelope")
        def check_envelope(envelope_id: str) -> str:
            record("check_envelope", envelope_id)
            return world.envelope_status.get(envelope_id, "sent")

        @activity.defn(name="check_eligibility")
        def check_eligibility(req: EligibilityRequest) -> list[str]:
            record("check_eligibility", req)
            return world.ineligible.get(req.npi, [])

        @activity.defn(name="record_envelope")
        def record_envelope(req: EnvelopeRecord) -> None:
            record("record_envelope", req)

        @activity.defn(name="launch_clinic")
        def launch_clinic(req: LaunchRequest) -> None:
            record("launch_clinic", req)

        @activity.defn(name="record_cancellation")
        def record_cancellation(req: CancelRecord) -> None:
            record("record_cancellation", req)
            with world.lock:
                npi = world.reservations.pop(req.workflow_id, None)
                if npi is not None:
                    world.capacity[npi] = world.capacity.get(npi, 0) + 1
                world.released.append(req.workflow_id)

        @activity.defn(name="open_chart_review")
        def open_chart_review(req: ChartReviewRequest) -> None:
            record("open_chart_review", req)

        @activity.defn(name="compliance_sweep")
        def compliance_sweep(req: SweepRequest) -> SweepSummary:
            record("compliance_sweep", req)
            with world.lock:
                alerts, world.sweep_alerts = list(world.sweep_alerts), []
            return SweepSummary(as_of=req.as_of or date(2027, 1, 1), alerts=alerts)

        @activity.defn(name="start_replacement")
        def start_replacement(req: ReplacementRequest) -> ReplacementStarted:
            record("start_replacement", req)
            return ReplacementStarted(workflow_id=f"onboarding-{req.clinic_key}-r1", status="started")

        @activity.defn(name="offboard_clinic")
        def offboard_clinic(req: OffboardRecord) -> None:
            record("offboard_clinic", req)

        @activity.defn(name="escalate_adverse_event")
        def escalate_adverse_event(watch: AdverseEventWatch) -> bool:
            record("escalate_adverse_event", watch)
            return watch.event_id not in world.acked_events

        return [record_start, assess_needs, find_candidates, send_offer, record_offer, reserve_physician, notify,
                record_stage, record_decision, prepare_protocols, select_pharmacies, send_prescriber_packet,
                prepare_agreements, prepare_protocol_packet, send_agreement, record_envelope, launch_clinic, record_cancellation,
                open_chart_review, void_envelope, check_envelope, check_eligibility, compliance_sweep,
                offboard_clinic, escalate_adverse_event, start_replacement]


def sample_intake(clinic_key: str, **overrides) -> dict:
    data = {
        "clinic_key": clinic_key, "clinic_name": "Glow Aesthetics Austin LLC",
        "contact": {"name": "Dana Reyes", "email": "dana@glow.example", "phone": "+15125550100"},
        "states": ["TX", "OK"], "care_model": "hybrid",
        "services": ["neurotoxins", "dermal_fillers", "glp1_weight_loss", "testosterone_hrt"],
        "monthly_patients": 350, "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}],
        "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"}],
        "requested_start": date(2026, 12, 15).isoformat(),
    }
    data.update(overrides)
    return data
