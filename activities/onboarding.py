"""Activities of the onboarding stages. Each is idempotent: the store's unique keys, the e-mail
notification log and DocuSign's ``external_id`` lookup make a retried call change nothing more.

Logs carry workflow ids, NPIs and pharmacy ids only — never names, e-mails or phones.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from domain import assessment, documents, matching, pharmacy
from domain.codes import Stage
from domain.messages import (
    AgreementRequest, AssessRequest, CancelRecord, DecisionRecord, EligibilityRequest, EnvelopeRecord, LaunchRequest,
    MatchRequest, Notice, OfferRequest, OfferStatusUpdate, PacketRequest, PharmacyRequest, PharmacySelection,
    ProtocolRequest, StageRecord, StartRecord, VoidRequest,
)
from domain.onboarding import AgreementSpec, EnvelopeView, MatchResult, OversightPlan, ProtocolView, ReservationResult
from esign.adapter import Document, ESignAdapter, ESignPermanentError, ESignRetryableError, Signer
from activities.mailer import Mailer
from api import links
from store import agreements, audit, onboardings, roster
from store import oversight as oversight_store

log = activity.logger


def _invalid(message: str) -> ApplicationError:
    """A business failure that retrying cannot fix."""
    return ApplicationError(message, type="InvalidInput", non_retryable=True)


@contextmanager
def _esign_errors(operation: str) -> Iterator[None]:
    """DocuSign's typed errors as Temporal failures: retryable ones honour ``retry_after``."""
    try:
        yield
    except ESignRetryableError as exc:
        delay = exc.retry_after
        raise ApplicationError(f"{operation}: {exc}", type="ESignRetryable",
                               next_retry_delay=timedelta(seconds=delay) if delay else None) from exc
    except ESignPermanentError as exc:
        raise ApplicationError(f"{operation}: {exc}", type="ESignPermanent", non_retryable=True) from exc


class OnboardingActivities:
    """Bound to one settings/engine pair, so tests can run several isolated sets side by side."""

    def __init__(self, settings: Settings, engine: Engine, *,
                 esign_factory: Callable[[], ESignAdapter] | None = None, mailer: Mailer | None = None):
        self.settings = settings
        self.engine = engine
        self.mailer = mailer or Mailer(settings)
        self._esign_factory = esign_factory or (lambda: ESignAdapter(settings))
        self._esign: ESignAdapter | None = None

    @property
    def esign(self) -> ESignAdapter:
        if self._esign is None:  # one adapter per worker: its JWT token is cached and renewed
            self._esign = self._esign_factory()
        return self._esign

    def all(self) -> list:
        return [self.record_start, self.assess_needs, self.record_decision, self.find_candidates, self.send_offer,
                self.record_offer, self.reserve_physician, self.notify, self.record_stage, self.prepare_protocols,
                self.select_pharmacies, self.send_prescriber_packet, self.prepare_agreements, self.send_agreement,
                self.record_envelope, self.launch_clinic, self.record_cancellation, self.void_envelope,
                self.check_envelope, self.check_eligibility, self.prepare_protocol_packet]

    # ------------------------------------------------------------------ start and stage records
    @activity.defn(name="record_start")
    def record_start(self, req: StartRecord) -> None:
        onboardings.upsert_clinic(self.engine, req.intake)
        onboardings.record_onboarding(self.engine, req.workflow_id, req.intake.clinic_key,
                               stage=Stage.needs_assessment.value, sla_status="on_track", started_at=req.started_at)
        audit.audit(self.engine, req.workflow_id, req.actor, "onboarding_started", at=req.started_at,
                   detail={"states": req.intake.states, "services": [s.value for s in req.intake.services]},
                   idem_key=f"{req.workflow_id}:start")
        log.info("onboarding %s recorded", req.workflow_id)

    @activity.defn(name="record_stage")
    def record_stage(self, req: StageRecord) -> None:
        fields: dict = {"stage": req.stage.value, "sla_status": req.sla_status}
        if req.physician_npi:
            fields["physician_npi"] = req.physician_npi
        if req.stage == Stage.cancelled:
            fields.update(cancelled_at=req.at, cancel_reason=req.note)
        if req.stage == Stage.protocol_setup:
            fields["matched_at"] = req.at
        onboardings.record_onboarding(self.engine, req.workflow_id, req.clinic_key, **fields)
        audit.audit(self.engine, req.workflow_id, "workflow", f"stage_{req.stage.value}", at=req.at,
                   idem_key=f"{req.workflow_id}:stage:{req.stage.value}")

    @activity.defn(name="record_decision")
    def record_decision(self, req: DecisionRecord) -> None:
        # one entry per decision, never dropped: the same person deciding twice (a second resend) is a
        # second entry; a retry of this activity (same run, same activity id) writes none twice
        info = activity.info()
        audit.audit(self.engine, req.workflow_id, req.actor, req.action, detail=req.detail, reason=req.reason,
                   at=req.at, idem_key=f"{req.workflow_id}:{req.action}:{req.actor}:{info.workflow_run_id}:"
                                       f"{info.activity_id}")
        if req.action == "protocols_approved":
            onboardings.approve_protocols(self.engine, req.workflow_id, party_of(req.actor).removeprefix("physician:"),
                                          req.at, sha256s=req.detail.get("sha256s"))
        if req.action == "pharmacy_confirmed":
            pharmacy_id = party_of(req.actor).removeprefix("pharmacy:")
            for a in onboardings.list_pharmacy_assignments(self.engine, req.workflow_id):
                if a.pharmacy_id == pharmacy_id:
                    onboardings.upsert_pharmacy_assignment(self.engine, req.workflow_id, pharmacy_id,
                                                    [s.value for s in a.services], "confirmed", req.at)

    # ------------------------------------------------------------------ stage 1
    @activity.defn(name="assess_needs")
    def assess_needs(self, req: AssessRequest) -> OversightPlan:
        plan = assessment.assess(req.intake, req.as_of)
        onboardings.save_plan(self.engine, req.workflow_id, plan)
        audit.audit(self.engine, req.workflow_id, "rules-engine", "plan_assessed", at=None,
                   detail={"findings": [f.rule_id for f in plan.findings], "monthly_usd": plan.quote.monthly_usd},
                   idem_key=f"{req.workflow_id}:assessed:{req.as_of.isoformat()}")
        return plan

    # ------------------------------------------------------------------ stage 2
    @activity.defn(name="find_candidates")
    def find_candidates(self, req: MatchRequest) -> MatchResult:
        physicians = roster.list_physicians(self.engine, licensed_in=list(req.intake.states), trim_to_states=True)
        history = onboardings.offer_history(self.engine, [p.npi for p in physicians])
        result = matching.fresh_first(matching.rank(
            physicians, req.intake, req.plan, exclude_npis=set(req.exclude_npis), history=history, explain=True),
            req.reoffer_npis, req.top)
        result.excluded = result.excluded[:25]  # enough to explain a wait; keeps the history small
        log.info("%s: %d candidates, %d excluded", req.workflow_id, len(result.candidates), len(result.excluded))
        return result

    @activity.defn(name="send_offer")
    def send_offer(self, req: OfferRequest) -> None:
        onboardings.upsert_offer(self.engine, req.workflow_id, req.npi, "open", req.sent_at, req.expires_at)
        clinic = onboardings.get_clinic(self.engine, req.clinic_key) or {}
        link = links.url(self.settings, req.workflow_id, f"physician:{req.npi}", "offer", req.expires_at)
        self._mail(Notice(
            workflow_id=req.workflow_id, key=offer_key(req.npi, req.round), to_role="physician", to_id=req.npi,
            subject=f"Medical director offer: {clinic.get('name', req.clinic_key)} ({', '.join(clinic.get('states', []))})",
            body=(f"You are invited to become the supervising physician of {clinic.get('name', req.clinic_key)}.\n"
                  f"States: {', '.join(clinic.get('states', []))}; services: {', '.join(clinic.get('services', []))}.\n"
                  f"The offer expires at {req.expires_at.isoformat()}.\n\n"
                  f"Read the offer and accept or decline it here:\n{link}\n")))

    @activity.defn(name="record_offer")
    def record_offer(self, req: OfferStatusUpdate) -> None:
        existing = {o.npi: o for o in onboardings.list_offers(self.engine, req.workflow_id)}
        offer = existing.get(req.npi)
        if offer is None:
            raise _invalid(f"no offer to NPI {req.npi} in {req.workflow_id}")
        onboardings.upsert_offer(self.engine, req.workflow_id, req.npi, req.status, offer.sent_at, offer.expires_at,
                          answered_at=req.at, reason=req.reason)
        audit.audit(self.engine, req.workflow_id, f"physician:{req.npi}" if req.status in ("accepted", "declined")
                   else "workflow", f"offer_{req.status}", detail={"npi": req.npi}, reason=req.reason, at=req.at,
                   idem_key=f"{req.workflow_id}:offer:{req.npi}:{req.status}" + (f":r{req.round}" if req.round > 1 else ""))

    @activity.defn(name="check_eligibility")
    def check_eligibility(self, req: EligibilityRequest) -> list[str]:
        """Why a hand-picked physician cannot take this clinic (empty when eligible)."""
        physician = roster.get_physician(self.engine, req.npi)
        if physician is None:
            return [f"NPI {req.npi} is not on the roster"]
        result = matching.rank([physician], req.intake, req.plan, explain=True)
        return [] if result.candidates else [r for e in result.excluded for r in e.reasons]

    @activity.defn(name="reserve_physician")
    def reserve_physician(self, workflow_id: str, npi: str) -> ReservationResult:
        result = roster.reserve_physician(self.engine, workflow_id, npi)
        log.info("%s: reservation of NPI %s ok=%s", workflow_id, npi, result.ok)
        return result

    # ------------------------------------------------------------------ stage 3
    @activity.defn(name="prepare_protocols")
    def prepare_protocols(self, req: ProtocolRequest) -> list[ProtocolView]:
        """Each service's standing order rendered from ``domain.protocols.build_protocol``; the document,
        its SHA-256 (what an approval binds to) and the content it was rendered from are stored."""
        physician = self._physician(req.npi)
        views = []
        for service in req.intake.services:
            version, body, content = documents.protocol_document(service, req.intake, req.plan, physician)
            sha = hashlib.sha256(body.encode()).hexdigest()
            onboardings.save_protocol(self.engine, req.workflow_id, service.value, version, body, sha,
                                      content=content.model_dump(mode="json"))
            views.append(ProtocolView(service=service, template_version=version, sha256=sha))
        self._mail(Notice(
            workflow_id=req.workflow_id, key="protocols-ready", to_role="physician", to_id=req.npi,
            subject=f"Protocols ready for your approval: {req.intake.clinic_name}",
            body=("Protocols: " + ", ".join(f"{v.service.value} ({v.template_version}, SHA-256 {v.sha256[:12]}…)"
                                           for v in views) +
                  "\n\nRead each protocol (with its SHA-256) and approve them here:\n" +
                  links.url(self.settings, req.workflow_id, f"physician:{req.npi}", "protocols",
                            activity.info().started_time + links.OPEN_REQUEST_TTL) + "\n")))
        return views

    # ------------------------------------------------------------------ stage 4
    @activity.defn(name="select_pharmacies")
    def select_pharmacies(self, req: PharmacyRequest) -> PharmacySelection:
        # credentials must hold today and on the plan's date (a later assessment date in tests/demos)
        on = max(req.plan.as_of, activity.info().started_time.date())
        assignments, problems = pharmacy.select_pharmacies(req.intake, req.plan, roster.list_pharmacies(self.engine),
                                                           on=on, exclude=req.exclude, only=req.only)
        return PharmacySelection(assignments=assignments, problems=problems)

    @activity.defn(name="send_prescriber_packet")
    def send_prescriber_packet(self, req: PacketRequest) -> None:
        a = req.assignment
        onboardings.upsert_pharmacy_assignment(self.engine, req.workflow_id, a.pharmacy_id, [s.value for s in a.services],
                                        "packet_sent", activity.info().started_time)
        physician = self._physician(req.npi)
        clinic = onboardings.get_clinic(self.engine, req.clinic_key) or {}
        self._mail(Notice(
            workflow_id=req.workflow_id, key=f"packet-{a.pharmacy_id}" + (f"-r{req.revision}" if req.revision else ""), to_role="pharmacy", to_id=a.pharmacy_id,
            subject=f"Prescriber packet: {clinic.get('name', req.clinic_key)} ({a.kind.value})",
            # the director's licence and DEA numbers stay behind the signed link (the page), never in mail
            body=(f"Please open a prescriber account for {physician.display_name} (NPI {physician.npi}) "
                  f"supervising {clinic.get('name', req.clinic_key)}.\n"
                  f"Services: {', '.join(s.value for s in a.services)}\n\n"
                  "The director's licences and DEA registrations are on this page, where you confirm the "
                  "account with its number or decline it:\n" +
                  links.url(self.settings, req.workflow_id, f"pharmacy:{a.pharmacy_id}", "pharmacy",
                            activity.info().started_time + links.OPEN_REQUEST_TTL) + "\n")))

    # ------------------------------------------------------------------ stage 5
    @activity.defn(name="prepare_agreements")
    def prepare_agreements(self, req: ProtocolRequest) -> list[AgreementSpec]:
        specs = documents.agreements_for(req.intake, req.plan)
        for spec in specs:
            agreements.upsert_agreement(self.engine, req.workflow_id, spec.agreement_kind, spec.template_version)
        return specs

    @activity.defn(name="prepare_protocol_packet")
    def prepare_protocol_packet(self, req: ProtocolRequest) -> AgreementSpec:
        """The protocol packet's spec, bound to the approved protocols' SHA-256s (refused while any
        protocol is unapproved); its agreement row is what a cancel voids and the audit packet lists."""
        docs = onboardings.protocol_documents(self.engine, req.workflow_id)
        unapproved = [d["service"] for d in docs if not d["approved_at"]]
        if not docs or unapproved:
            raise _invalid(f"protocol_packet: protocols not approved: {', '.join(unapproved) or 'none prepared'}")
        spec = documents.protocol_packet_spec(req.intake, [d["sha256"] for d in docs])
        agreements.upsert_agreement(self.engine, req.workflow_id, spec.agreement_kind, spec.template_version)
        return spec

    def _envelope_content(self, req: AgreementRequest) -> tuple[list[Document], list[documents.SignerSpec],
                                                                dict[str, str]]:
        """The documents, signers and extra custom fields of one agreement's envelope. The protocol
        packet carries a cover page to sign, then each approved protocol as the exact bytes approved
        (``txt``: its SHA-256 is the document's), each SHA-256 also a custom field ``sha256_<service>``."""
        physician = self._physician(req.npi)
        title = req.spec.title[:100]
        if req.spec.agreement_kind != documents.PROTOCOL_PACKET:
            html, signer_specs = documents.render_agreement(req.spec, req.intake, req.plan, physician)
            return [Document(name=title, file_extension="html", content=html.encode(), document_id="1")], \
                signer_specs, {}
        protocols = onboardings.protocol_documents(self.engine, req.workflow_id)
        try:
            html, signer_specs = documents.render_protocol_packet(req.spec, req.intake, req.plan, physician, protocols)
        except ValueError as err:  # the stored texts are not the approved ones: never sent, ops decide
            raise _invalid(str(err)) from None
        docs = [Document(name=title, file_extension="html", content=html.encode(), document_id="1")]
        docs += [Document(name=f"Protocol {p['service']} ({p['template_version']}, SHA-256 {p['sha256'][:12]})",
                          file_extension="txt", content=p["body"].encode(), document_id=str(i))
                 for i, p in enumerate(protocols, start=2)]
        return docs, signer_specs, {f"sha256_{p['service']}": p["sha256"] for p in protocols}

    @activity.defn(name="send_agreement")
    def send_agreement(self, req: AgreementRequest) -> EnvelopeView:
        docs, signer_specs, fields = self._envelope_content(req)
        external_id = envelope_external_id(req.workflow_id, req.spec.agreement_kind, req.spec.template_version,
                                           req.attempt)
        signers = [Signer(name=s.name, email=s.email, routing_order=s.routing_order,
                          recipient_id=str(i), anchor=s.anchor) for i, s in enumerate(signer_specs, start=1)]
        activity.heartbeat(external_id)
        # a first attempt skips the look-up (it cannot have created anything) unless this agreement has an
        # envelope already: a send re-run after `mdco repair` reset the workflow, which must find it
        prior = agreements.get_agreement(self.engine, req.workflow_id, req.spec.agreement_kind)
        look_up = (activity.info().attempt > 1 or self.settings.esign_always_look_up
                   or bool(prior and prior.get("envelope_id")))
        with _esign_errors("send_agreement"):
            envelope_id = self.esign.send_envelope(
                external_id, req.spec.title[:100], docs, signers, self.settings.resolved_connect_url,
                look_up_first=look_up, custom_fields=fields)
        agreements.upsert_agreement(self.engine, req.workflow_id, req.spec.agreement_kind, req.spec.template_version,
                              envelope_id=envelope_id, status="sent", status_at=activity.info().started_time)
        audit.audit(self.engine, req.workflow_id, "workflow", "envelope_sent",
                   detail={"kind": req.spec.agreement_kind, "envelope_id": envelope_id},
                   idem_key=f"{req.workflow_id}:envelope:{external_id}")
        log.info("%s: envelope %s for %s", req.workflow_id, envelope_id, req.spec.agreement_kind)
        return EnvelopeView(envelope_id=envelope_id, agreement_kind=req.spec.agreement_kind,
                            template_version=req.spec.template_version, status="sent")

    @activity.defn(name="void_envelope")
    def void_envelope(self, req: VoidRequest) -> None:
        with _esign_errors("void"):
            self.esign.void(req.envelope_id, req.reason[:200])
        agreement = agreements.get_agreement(self.engine, req.workflow_id, req.agreement_kind)
        if agreement is not None and agreement.get("envelope_id") == req.envelope_id:
            agreements.upsert_agreement(self.engine, req.workflow_id, req.agreement_kind, agreement["template_version"],
                                  status="voided", status_at=activity.info().started_time)
        audit.audit(self.engine, req.workflow_id, "workflow", "envelope_voided", reason=req.reason,
                   detail={"kind": req.agreement_kind, "envelope_id": req.envelope_id},
                   idem_key=f"{req.workflow_id}:envelope:{req.envelope_id}:voided")

    @activity.defn(name="check_envelope")
    def check_envelope(self, envelope_id: str) -> str:
        """One status GET, used only when Connect has been silent (reconciliation)."""
        with _esign_errors("get_status"):
            return self.esign.get_status(envelope_id)

    @activity.defn(name="record_envelope")
    def record_envelope(self, req: EnvelopeRecord) -> None:
        agreement = agreements.get_agreement(self.engine, req.workflow_id, req.agreement_kind)
        if agreement is None:
            raise _invalid(f"no agreement {req.agreement_kind} in {req.workflow_id}")
        fields: dict = {"envelope_id": req.envelope_id, "status": req.status, "status_at": req.at}
        if req.status == "completed":
            with _esign_errors("download_combined"):
                pdf = self.esign.download_combined(req.envelope_id)
            path, sha = write_document(self.settings.documents_dir / req.workflow_id,
                                       f"{req.agreement_kind}-{req.envelope_id}.pdf", pdf)
            fields.update(document_path=str(path.resolve()), sha256=sha)
        agreements.upsert_agreement(self.engine, req.workflow_id, req.agreement_kind, agreement["template_version"], **fields)
        audit.audit(self.engine, req.workflow_id, "docusign", f"envelope_{req.status}", at=req.at,
                   detail={"kind": req.agreement_kind, "envelope_id": req.envelope_id},
                   idem_key=f"{req.workflow_id}:envelope:{req.envelope_id}:{req.status}")

    # ------------------------------------------------------------------ stage 6
    @activity.defn(name="launch_clinic")
    def launch_clinic(self, req: LaunchRequest) -> None:
        if req.replaces is not None:
            self._hand_over(req)
            return
        onboardings.activate_clinic(self.engine, req.clinic_key, req.npi, req.at)
        # the oversight about to start keeps this Timing's protocol-review interval (its chart reviews say it again)
        oversight_store.set_protocol_review_every(self.engine, req.clinic_key, req.protocol_review_every)
        onboardings.record_onboarding(self.engine, req.workflow_id, req.clinic_key, stage=Stage.launched.value,
                               launched_at=req.at, physician_npi=req.npi)
        audit.audit(self.engine, req.workflow_id, "workflow", "clinic_launched", at=req.at,
                   detail={"npi": req.npi, "pharmacies": req.pharmacy_ids}, idem_key=f"{req.workflow_id}:launched")
        physician = self._physician(req.npi)
        clinic = onboardings.get_clinic(self.engine, req.clinic_key) or {}
        name = clinic.get("name", req.clinic_key)
        self._mail(Notice(workflow_id=req.workflow_id, key="launch-clinic", to_role="clinic", to_id=req.clinic_key,
                          subject=f"You are live: {name}",
                          body=f"{physician.display_name} (NPI {req.npi}) is now your medical director. "
                               "Protocols are approved and agreements signed."))
        self._mail(Notice(workflow_id=req.workflow_id, key="launch-physician", to_role="physician", to_id=req.npi,
                          subject=f"Oversight starts: {name}",
                          body="The clinic is live. Monthly chart reviews will be sent to you."))
        for pharmacy_id in req.pharmacy_ids:
            self._mail(Notice(workflow_id=req.workflow_id, key=f"launch-{pharmacy_id}", to_role="pharmacy",
                              to_id=pharmacy_id, subject=f"Clinic live: {name}",
                              body=f"Prescriptions from {physician.display_name} for {name} may start."))

    def _hand_over(self, req: LaunchRequest) -> None:
        """A replacement launches: the clinic stays live under the new director, the outgoing one's
        capacity is released, suspensions lift, and clinic, both directors and pharmacies are told."""
        old = req.replaces
        assert old is not None
        onboardings.activate_clinic(self.engine, req.clinic_key, req.npi, req.at)
        onboardings.record_onboarding(self.engine, req.workflow_id, req.clinic_key, stage=Stage.launched.value,
                                      launched_at=req.at, physician_npi=req.npi)
        released = roster.release_physician(self.engine, old.previous_workflow_id)
        lifted = [s["state"] for s in oversight_store.suspensions(self.engine, req.clinic_key)
                  if oversight_store.lift(self.engine, req.clinic_key, s["state"], req.at)]
        audit.audit(self.engine, req.workflow_id, "workflow", "director_replaced", at=req.at, reason=old.reason,
                    detail={"npi": req.npi, "outgoing_npi": old.outgoing_npi, "capacity_released": released,
                            "suspensions_lifted": lifted, "pharmacies": req.pharmacy_ids},
                    idem_key=f"{req.workflow_id}:launched")
        physician = self._physician(req.npi)
        name = (onboardings.get_clinic(self.engine, req.clinic_key) or {}).get("name", req.clinic_key)
        notices = [
            Notice(workflow_id=req.workflow_id, key="replaced-clinic", to_role="clinic", to_id=req.clinic_key,
                   subject=f"Your new medical director: {name}",
                   body=f"{physician.display_name} (NPI {req.npi}) is now your medical director"
                        + (f"; prescribing resumes in {', '.join(lifted)}" if lifted else "") + "."),
            Notice(workflow_id=req.workflow_id, key="replaced-physician", to_role="physician", to_id=req.npi,
                   subject=f"Oversight starts: {name}",
                   body="You take over as medical director. Chart reviews will be sent to you."),
            Notice(workflow_id=req.workflow_id, key="replaced-outgoing", to_role="physician", to_id=old.outgoing_npi,
                   subject=f"Your supervision of {name} has ended",
                   body="A new medical director took over; your capacity for this clinic is released."),
        ] + [Notice(workflow_id=req.workflow_id, key=f"replaced-{pharmacy_id}", to_role="pharmacy", to_id=pharmacy_id,
                    subject=f"New prescriber for {name}",
                    body=f"Prescriptions for {name} now come from {physician.display_name} (NPI {req.npi}).")
             for pharmacy_id in req.pharmacy_ids]
        for notice in notices:
            self._mail(notice)

    @activity.defn(name="record_cancellation")
    def record_cancellation(self, req: CancelRecord) -> None:
        self._release_everything(req.workflow_id, req.clinic_key, req.reason, req.at, req.actor,
                                 keep_clinic=req.keep_clinic)

    def _release_everything(self, workflow_id: str, clinic_key: str | None, reason: str, at: datetime,
                            actor: str, keep_clinic: bool = False) -> bool:
        """The cleanup of a cancelled onboarding, shared by ``record_cancellation`` and the reconciler
        (activities/reconcile.py): release the capacity, void the envelopes still out, mark the clinic
        and the onboarding cancelled (skipped when ``clinic_key`` is None: no record to mark) and audit.
        Idempotent; True when this call released the capacity."""
        released = roster.release_physician(self.engine, workflow_id)
        for agreement in agreements.list_agreements(self.engine, workflow_id):
            if agreement.get("envelope_id") and agreement.get("status") not in ("completed", "voided", "declined"):
                if activity.in_activity():  # the reconciler also runs from the CLI, outside any activity
                    activity.heartbeat(agreement["envelope_id"])
                try:
                    with _esign_errors("void"):
                        self.esign.void(agreement["envelope_id"], f"Onboarding cancelled: {reason}"[:200])
                except ApplicationError as exc:
                    if not exc.non_retryable:
                        raise  # DocuSign busy: the cleanup retries until it is done
                    # already completed/voided at DocuSign, or gone: nothing left to release there
                    log.warning("%s: envelope %s not voided on cancel: %s", workflow_id,
                                agreement["envelope_id"], exc.message)
                agreements.upsert_agreement(self.engine, workflow_id, agreement["kind"], agreement["template_version"],
                                      status="voided", status_at=at)
        if clinic_key is not None:
            if not keep_clinic:  # a cancelled replacement leaves the live clinic alone
                onboardings.set_clinic_status(self.engine, clinic_key, "cancelled")
            onboardings.record_onboarding(self.engine, workflow_id, clinic_key, stage=Stage.cancelled.value,
                                          cancelled_at=at, cancel_reason=reason)
        audit.audit(self.engine, workflow_id, actor, "onboarding_cancelled", reason=reason, at=at,
                   detail={"capacity_released": released}, idem_key=f"{workflow_id}:cancelled")
        return released

    # ------------------------------------------------------------------ e-mail
    @activity.defn(name="notify")
    def notify(self, notice: Notice) -> None:
        self._mail(notice)

    def _mail(self, notice: Notice) -> None:
        key = f"{notice.workflow_id}:{notice.key}"
        if audit.notification_sent(self.engine, key):
            return
        to = self._addresses(notice)
        if not to:
            raise _invalid(f"notice {notice.key}: no address for {notice.to_role} {notice.to_id}")
        self.mailer.send(to, notice.subject, notice.body, message_id_key=key)
        audit.mark_notification_sent(self.engine, key, notice.to_role, notice.subject)
        log.info("%s: mailed %s (%s)", notice.workflow_id, notice.to_role, notice.key)

    def _addresses(self, notice: Notice) -> list[str]:
        if notice.to_role == "ops":
            return [self.settings.ops_email]
        if notice.to_role == "physician":
            return [str(self._physician(notice.to_id).email)]
        if notice.to_role == "clinic":
            clinic = onboardings.get_clinic(self.engine, notice.to_id)
            return [clinic["contact_email"]] if clinic else []
        if notice.to_role in ("pharmacy", "pharmacies"):
            wanted = set(notice.to_id.split(","))
            return [str(p.email) for p in roster.list_pharmacies(self.engine) if p.pharmacy_id in wanted]
        raise _invalid(f"unknown recipient role {notice.to_role!r}")

    def _physician(self, npi: str):
        physician = roster.get_physician(self.engine, npi)
        if physician is None:
            raise _invalid(f"NPI {npi} is not on the roster")
        return physician


def party_of(actor: str) -> str:
    """The party an audit actor speaks for: ``ops:olga for physician:123`` -> ``physician:123``."""
    return actor.rsplit(" for ", 1)[-1]


def offer_key(npi: str, round_: int = 1) -> str:
    """The idempotency key of one offer: round 1 keeps release 1's key, a later round its own."""
    return f"offer-{npi}" if round_ <= 1 else f"offer-{npi}-r{round_}"


def envelope_external_id(workflow_id: str, kind: str, template_version: str, attempt: int = 1) -> str:
    """DocuSign custom field ``external_id``: the idempotency key of one send (``:rN`` for resends).

    ``<workflow_id>:<kind>:<template_version>[:rN]`` whenever that fits DocuSign's 100-character custom
    field (envelopes in flight are looked up by it); only a longer one becomes the compact
    ``<workflow_id>:<first 10 hex of sha256(kind:template_version)>[:rN]`` (``domain.limits``)."""
    from domain.limits import DOCUSIGN_TEXT_CUSTOM_FIELD_MAX, EXTERNAL_ID_DIGEST_CHARS

    suffix = "" if attempt <= 1 else f":r{attempt}"
    exact = f"{workflow_id}:{kind}:{template_version}{suffix}"
    if len(exact) <= DOCUSIGN_TEXT_CUSTOM_FIELD_MAX:
        return exact
    digest = hashlib.sha256(f"{kind}:{template_version}".encode()).hexdigest()[:EXTERNAL_ID_DIGEST_CHARS]
    return f"{workflow_id}:{digest}{suffix}"


def write_document(folder: Path, name: str, content: bytes) -> tuple[Path, str]:
    """Atomically write a document and return its path and SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(content)
    tmp.replace(path)
    return path, hashlib.sha256(content).hexdigest()
