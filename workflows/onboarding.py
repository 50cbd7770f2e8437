"""``OnboardingWorkflow``: the six stages from intake to launch, with the placement SLA on timers.

Orchestration only: every side effect is an activity called by name, every duration comes from
``Timing``, and humans answer through updates (validated) and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any, Callable

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError, ApplicationError, ChildWorkflowError, FailureError, WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (pydantic imports these lazily to check e-mail fields)
    import idna  # noqa: F401

    from domain.codes import SlaStatus, Stage, oversight_id_for
    from domain.messages import (
        AgreementRequest, AssessRequest, CancelRecord, CancelRequest, DecisionRecord, EnvelopeRecord,
        LaunchRequest, MatchRequest, Notice, OfferRequest, OfferStatusUpdate, PacketRequest,
        PharmacyConfirmation, PharmacyDecline, PharmacyRequest, PharmacySelection, PhysicianAnswer, PlanDecision,
        ProtocolRequest, ResendRequest, RetryRequest, StageRecord, StartRecord, VoidRequest, AssignRequest,
        EligibilityRequest,
    )
    from domain.onboarding import (
        AgreementSpec, DirectorChange, EnvelopeEvent, EnvelopeView, MatchResult, OfferAnswer, OfferView,
        OnboardingCarry, OnboardingInput, OnboardingStatus, OversightInput, OversightPlan, PharmacyAssignment,
        ProtocolView, Replacement, ReservationResult, TimelineEntry,
    )
    from workflows import patches
    from workflows import search_attributes as sa
    from workflows.activity_options import ANSWER_WRITES, options_for
    from workflows.oversight import OversightWorkflow

MAX_PARALLEL_OFFERS = 10
TERMINAL_ENVELOPE = {"completed", "declined", "voided"}
PROTOCOLS_CHANGED = ("the protocols changed since you read them (their SHA-256s differ); read them again and "
                     "approve what you read")
ENVELOPE_ORDER = {"created": 0, "sent": 1, "delivered": 2, "completed": 3, "declined": 3, "voided": 4}


class OnboardingCancelled(Exception):
    """Raised inside the stage task when ops cancel; unwinds to the cleanup path."""


class ContinueAsNewDue(Exception):
    """Raised inside the stage task at a long wait once the history is long; the run hands over."""


def _party(party: str, on_behalf_of: str) -> str:
    """The audit actor of a party's answer: the party, or ``ops:<sub> for <party>`` when ops acted."""
    return f"{on_behalf_of} for {party}" if on_behalf_of else party


def _sha256s(protocols: Any) -> list[str]:
    """The SHA-256s of protocol documents, sorted (what an approval binds to)."""
    return sorted(p.sha256 for p in protocols)


def _span(t: timedelta) -> str:
    """A delay as people read it: "45 min", "1 h 30 min", "11.25 s" (the demo's clock)."""
    if t < timedelta(minutes=1):
        return f"{t.total_seconds():g} s"
    hours, minutes = divmod(round(t.total_seconds() / 60), 60)
    return " ".join(p for p in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if p)


def _failure_reason(err: FailureError) -> str:
    """The innermost message of a failure chain (the business reason, not 'activity task failed')."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        message = getattr(cause, "message", None) or str(cause) or message
        cause = cause.__cause__
    return message[:500]


@workflow.defn
class OnboardingWorkflow:
    @workflow.init
    def __init__(self, inp: OnboardingInput) -> None:
        self._inp = inp
        self._intake = inp.intake
        self._timing = inp.timing
        self._wf_id = workflow.info().workflow_id
        self._stage = Stage.needs_assessment
        self._sla = SlaStatus.on_track
        self._started_at: datetime = workflow.now()
        self._matched_at: datetime | None = None
        self._waiting_on = ""
        self._waiting_reason = ""
        self._plan: OversightPlan | None = None
        self._plan_decision: PlanDecision | None = None
        self._offers: dict[str, OfferView] = {}  # each physician's latest offer
        self._past_offers: list[OfferView] = []  # offers a later round superseded
        self._round = 1
        self._reoffer_at_expiry = False  # patch REOFFER_AT_EXPIRY marked: rounds are per physician
        self._burst = False  # patch SLA_BURST marked: widened to offer_burst_max open offers
        self._local_writes: bool | None = None  # answer writes as local activities (ANSWER_WRITES_LOCAL runs)
        self._burst_told = False  # ops were told of the widening (once per onboarding)
        self._widen_early_asked = False  # patch SLA_WIDEN_EARLY asked (once per run): the early widening's moment
        self._widened_early = False  # the widening came from offer_widen_after, not from an expiry
        self._offers_version = 0
        self._physician: str | None = None
        self._protocols: list[ProtocolView] = []
        self._protocols_approved = False
        self._pharmacies: dict[str, PharmacyAssignment] = {}
        self._envelopes: dict[str, EnvelopeView] = {}
        self._envelope_events: list[EnvelopeEvent] = []
        #: pharmacy confirmations that came before that pharmacy's packet went out (a signal re-applied by a
        #: workflow reset, or a pharmacy quicker than the task recording the send): applied when it goes out
        self._early_confirms: dict[str, PharmacyConfirmation] = {}
        self._specs: dict[str, AgreementSpec] = {}
        self._checked_at: dict[str, datetime] = {}
        self._resend_requested = False
        self._timeline: list[TimelineEntry] = []
        self._roster_version = 0
        self._roster_asked: int | None = None  # the roster version the last look-up saw
        self._cancel: CancelRequest | None = None
        self._oversight_id = ""
        self._lock = asyncio.Lock()
        self._blocked_stage: Stage | None = None
        self._retry: RetryRequest | None = None
        self._roster_waits = 0  # consecutive quiet waits on the roster (backoff exponent)
        self._notified_gap: tuple[str, int] | None = None  # (what, roster version) ops were last told
        self._runs = 1
        self._stages_task: asyncio.Task | None = None
        self._launching = False
        carry = inp.carry
        if carry is not None:
            self._stage, self._started_at, self._matched_at, self._sla = (
                carry.stage, carry.started_at, carry.matched_at, carry.sla)
            self._plan, self._physician, self._protocols = carry.plan, carry.physician, carry.protocols
            self._offers = {o.npi: o for o in carry.offers}
            self._past_offers, self._round = carry.past_offers, carry.offer_round
            self._pharmacies = {p.pharmacy_id: p for p in carry.pharmacies}
            self._envelopes = {e.envelope_id: e for e in carry.envelopes}
            self._timeline, self._roster_version, self._runs = carry.timeline, carry.roster_version, carry.runs
            self._roster_waits = carry.roster_waits
            self._waiting_on, self._waiting_reason = carry.waiting_on, carry.waiting_reason
            self._notified_gap = (carry.told_ops, carry.roster_version) if carry.told_ops else None
            self._burst_told = carry.offers_widened

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingStatus:
        if inp.carry is None and workflow.patched(patches.SLA_FROM_START_TIME):
            self._started_at = workflow.info().workflow_start_time  # a late worker does not shift the SLA
        self._sla_deadline = self._started_at + self._timing.sla_breach
        self._upsert_search_attributes()
        if inp.carry is None:
            await self._act("record_start", StartRecord(
                workflow_id=self._wf_id, intake=self._intake, started_at=self._started_at, actor=inp.started_by))
            self._note("onboarding started")
        else:
            self._note(f"run {self._runs} continues {inp.carry.stage.value} (history was long)")
        sla_clock = asyncio.create_task(self._sla_clock())
        stages = self._stages_task = asyncio.create_task(self._stages())
        try:
            await workflow.wait_condition(stages.done)
        except asyncio.CancelledError:  # cancelled from the Temporal UI/CLI: same cleanup as ops cancel
            self._cancel = self._cancel or CancelRequest(reason="cancelled from Temporal", actor="temporal")
            await workflow.wait_condition(stages.done)
        error = stages.exception()
        if isinstance(error, ContinueAsNewDue):
            sla_clock.cancel()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._cancel is None:
                workflow.continue_as_new(inp.model_copy(update={"carry": self._carry()}))
            error = None  # a cancel arrived while handlers finished: clean up in this run
        if error is not None and not isinstance(error, OnboardingCancelled):
            raise error
        if self._cancel is not None and self._stage != Stage.launched:
            await self._cleanup_after_cancel()
        sla_clock.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status()

    async def _stages(self) -> None:
        steps = [(Stage.needs_assessment, self._assess), (Stage.matching, self._match),
                 (Stage.protocol_setup, self._setup_protocols),
                 (Stage.pharmacy_coordination, self._coordinate_pharmacies),
                 (Stage.agreements, self._sign_agreements), (Stage.launched, self._launch)]
        first = [stage for stage, _ in steps].index(self._inp.carry.stage) if self._inp.carry else 0
        for stage, step in steps[first:]:
            await self._run_step(stage, step)

    async def _run_step(self, stage: Stage, step: Callable[[], Any]) -> None:
        """Run one stage; a business failure retrying cannot fix moves to ``blocked`` until ops retry
        the stage (``retry`` update) or cancel. The workflow never ends FAILED for a business reason."""
        while True:
            try:
                await step()
                return
            except (ActivityError, ChildWorkflowError) as err:
                if not workflow.patched(patches.BLOCKED_STAGE):
                    raise
                await self._block(stage, _failure_reason(err))

    async def _block(self, stage: Stage, reason: str) -> None:
        self._blocked_stage, self._retry = stage, None
        self._stage = Stage.blocked
        self._wait_for("ops", f"{stage.value} failed: {reason}")
        self._note(f"blocked in {stage.value}: {reason}")
        await self._best_effort("record_stage", StageRecord(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, stage=Stage.blocked,
            sla_status=self._sla.value, at=workflow.now(), physician_npi=self._physician, note=reason[:200]))
        await self._notify(Notice(
            workflow_id=self._wf_id, key=f"blocked-{stage.value}-{len(self._timeline)}", to_role="ops",
            subject=f"Blocked: {self._wf_id} stopped in {stage.value}",
            body=f"{reason}\n\nRetry the step with `mdco retry {self._wf_id} --reason ...` "
                 f"(POST /onboardings/{self._wf_id}/retry) or cancel with `mdco cancel`."))
        await self._wait(lambda: self._retry is not None)
        assert self._retry is not None
        self._note(f"retry of {stage.value} requested by {self._retry.actor}: {self._retry.reason}")
        self._blocked_stage, self._retry = None, None
        self._stage = stage

    @workflow.update
    async def retry(self, request: RetryRequest) -> str:
        """Ops retry the step that failed (after fixing its cause: roster data, DocuSign account...)."""
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor=request.actor, action="retry_requested", at=workflow.now(),
            reason=request.reason, detail={"stage": self._blocked_stage.value if self._blocked_stage else ""}))
        if self._stage != Stage.blocked or self._cancel is not None:
            raise ApplicationError("the onboarding is no longer blocked", type="Rejected")
        self._retry = request
        return "retrying"

    @retry.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.blocked:
            raise ValueError(f"only a blocked onboarding can be retried (stage {self._stage.value})")
        if self._retry is not None:
            raise ValueError("a retry is already under way")

    def _carry(self) -> OnboardingCarry:
        assert self._plan is not None
        return OnboardingCarry(
            stage=self._stage, started_at=self._started_at, matched_at=self._matched_at, sla=self._sla,
            plan=self._plan, offers=list(self._offers.values()), past_offers=self._past_offers,
            offer_round=self._round, physician=self._physician,
            protocols=self._protocols, pharmacies=list(self._pharmacies.values()),
            timeline=self._timeline[-200:], roster_version=self._roster_version, roster_waits=self._roster_waits,
            told_ops=self._notified_gap[0] if self._notified_gap and self._notified_gap[1] == self._roster_version
            else "", waiting_on=self._waiting_on, waiting_reason=self._waiting_reason, runs=self._runs + 1,
            envelopes=list(self._envelopes.values()), offers_widened=self._burst_told)

    def _refuse_if_cancelling(self) -> None:
        if self._cancel is not None:
            raise ValueError("the onboarding is being cancelled")

    # ------------------------------------------------------------------ stage 1
    async def _assess(self) -> None:
        await self._enter(Stage.needs_assessment)
        as_of = self._inp.as_of or self._started_at.date()
        self._plan = await self._act(
            "assess_needs", AssessRequest(workflow_id=self._wf_id, intake=self._intake, as_of=as_of),
            result_type=OversightPlan)
        blocking = self._plan.blocking
        self._note(f"oversight plan ready: {len(self._plan.findings)} findings, {len(blocking)} blocking, "
                   f"quote ${self._plan.quote.monthly_usd}/month")
        if not blocking:
            return
        self._wait_for("ops", "assessment has blocking findings: " + "; ".join(f.rule_id for f in blocking))
        await self._notify(Notice(
            workflow_id=self._wf_id, key="plan-review", to_role="ops",
            subject=f"Review needed: {self._wf_id} assessment has blocking findings",
            body="\n".join(f"- [{f.rule_id}] {f.message}" for f in blocking)))
        await self._wait_with_reminders(
            lambda: self._plan_decision is not None, every=self._timing.plan_review_reminder,
            reminder=lambda n: Notice(workflow_id=self._wf_id, key=f"plan-review-reminder-{n}", to_role="ops",
                                      subject=f"Reminder {n}: {self._wf_id} awaits plan review",
                                      body="Approve with `mdco plan approve` or cancel."))

    @workflow.update
    async def review_plan(self, decision: PlanDecision) -> str:
        """Ops accept an assessment that has blocking findings (or reject it, which cancels)."""
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor=decision.actor, at=workflow.now(), reason=decision.reason,
            action="plan_approved" if decision.approve else "plan_rejected"))
        if decision.approve:
            self._plan_decision = decision
            self._note(f"plan approved by {decision.actor}: {decision.reason}")
            return "approved"
        self._cancel = CancelRequest(reason=f"plan rejected: {decision.reason}", actor=decision.actor)
        return "rejected"

    @review_plan.validator
    def _validate_review_plan(self, decision: PlanDecision) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.needs_assessment or self._plan is None or not self._plan.blocking:
            raise ValueError("no assessment is waiting for review")
        if self._plan_decision is not None:
            raise ValueError("the assessment was already reviewed")

    # ------------------------------------------------------------------ stage 2
    async def _match(self) -> None:
        await self._enter(Stage.matching)
        assert self._plan is not None
        while self._physician is None:
            open_offers = [o for o in self._offers.values() if o.status == "open"]
            wanted = self._parallel_offers() - len(open_offers)
            unwidened = self._widened_per_expiry() - len(open_offers)  # what the rule without the burst sends
            if wanted > 0:
                self._roster_asked = self._roster_version  # an import from here on must wake a roster wait
                again = self._reofferable()
                result = await self._act("find_candidates", MatchRequest(
                    workflow_id=self._wf_id, intake=self._intake, plan=self._plan,
                    exclude_npis=[n for n in self._not_to_ask() if n not in again] + self._outgoing(), top=wanted,
                    reoffer_npis=again), result_type=MatchResult)
                sent = 0
                for cand in result.candidates[:wanted]:
                    if self._physician is not None:
                        break  # accepted while the fan-out was going out: send no more
                    await self._send_offer(cand.npi)
                    sent += 1
                open_offers = [o for o in self._offers.values() if o.status == "open"]
                if self._burst and not self._burst_told and sent > max(unwidened, 0):
                    await self._tell_widened(len(open_offers))
                if not open_offers:
                    if await self._start_next_round():
                        continue
                    await self._wait_for_roster(result)
                    continue
            widen_at = self._widen_at()
            if widen_at is not None and workflow.now() >= widen_at:  # its moment passed while offers went out
                if self._widen_early():
                    continue
                widen_at = None  # a run from before the patch: wait as it did
            self._wait_for("physician", f"{len(open_offers)} offer(s) open")
            seen = self._offers_version
            next_expiry = min(o.expires_at for o in open_offers)
            wake = next_expiry if widen_at is None else min(next_expiry, widen_at)  # one wait, one timer
            await self._wait_at_most(
                lambda: self._physician is not None or self._offers_version != seen,
                max(wake - workflow.now(), timedelta(seconds=1)))
            if widen_at is not None and self._physician is None and workflow.now() >= widen_at:
                self._widen_early()
            await self._expire_due_offers()
        async with self._answer_lock():
            await self._withdraw_open_offers()

    async def _withdraw_open_offers(self) -> None:
        for offer in list(self._offers.values()):
            if offer.status == "open":
                await self._close_offer(offer.npi, "withdrawn", "another physician accepted")
                await self._notify(Notice(
                    workflow_id=self._wf_id, key=f"offer-withdrawn-{offer.npi}", to_role="physician",
                    to_id=offer.npi, subject=f"Offer withdrawn: {self._intake.clinic_name}",
                    body="Another physician accepted this placement first. Thank you for your time."))

    def _parallel_offers(self) -> int:
        """How many offers may be open at once: the fan-out until an offer expired unanswered; then,
        with patch SLA_BURST and ``Timing.offer_burst_max`` set, up to that cap (every eligible physician
        not yet offered, the SLA being at risk), else one more per expired offer (``_widened_per_expiry``)."""
        if self._sla_burst():
            return max(self._inp.offer_fanout, self._timing.offer_burst_max or 0)
        return self._widened_per_expiry()

    def _widened_per_expiry(self) -> int:
        """The fan-out plus one for every offer that expired unanswered (up to MAX_PARALLEL_OFFERS), so a
        quiet roster widens the search before the SLA (the rule before patch SLA_BURST, or without a cap)."""
        expired = self._expired_offers()
        return min(MAX_PARALLEL_OFFERS, self._inp.offer_fanout + expired)

    def _sla_burst(self) -> bool:
        """SLA-pressure widening is on: an offer expired unanswered (the earliest point the 12 h promise
        is at risk) and a burst cap is set. The patch is asked only then, as ``_reofferable`` does, so
        histories without an expiry (or recorded before the patch) replay unchanged; once marked, it stays."""
        if self._burst:
            return True
        if not self._timing.offer_burst_max or not self._expired_offers():
            return False
        if not workflow.patched(patches.SLA_BURST):
            return False
        self._burst = True
        return True

    def _widen_at(self) -> datetime | None:
        """When the early widening is due (``Timing.offer_widen_after`` after this onboarding's first
        offer), or None: off (no delay or no burst cap), already widened, asked already in this run, or
        not before the first offer expires (the burst at expiry covers that)."""
        after = self._timing.offer_widen_after
        if after is None or not self._timing.offer_burst_max or self._burst or self._widen_early_asked \
                or after >= self._timing.offer_ttl:
            return None
        sent = [o.sent_at for o in self._all_offers()]
        return min(sent) + after if sent else None

    def _widen_early(self) -> bool:
        """Nobody accepted ``offer_widen_after`` after the first offer: with patch SLA_WIDEN_EARLY the
        SLA burst starts now (``_parallel_offers`` gives the cap; the loop sends the offers and tells ops
        once). Asked once per run; a history without the marker (recorded before) keeps its commands."""
        self._widen_early_asked = True
        if workflow.patched(patches.SLA_WIDEN_EARLY):
            self._burst = self._widened_early = True
        return self._widened_early

    async def _tell_widened(self, open_now: int) -> None:
        """The burst sent more offers than one per expired offer would have: ops are told once (the
        e-mail of a new round) and the audit log gets one ``offers_widened`` entry. Counts only, no NPI."""
        self._burst_told = True
        expired = self._expired_offers()
        cap = self._timing.offer_burst_max
        if self._widened_early and not expired:
            after = self._timing.offer_widen_after
            why = f"no physician accepted within {_span(after)} of the first offer"
            what = f"{why}, so the placement SLA is at risk: offers widened to {open_now} open at once (cap {cap})"
            told = f"{why}; offers widened to {open_now} open at once (cap {cap})"
        else:
            why = "the first offer expired unanswered"
            what = (f"an offer expired unanswered, so the placement SLA is at risk: offers widened to {open_now} "
                    f"open at once (cap {cap})")
            told = f"{expired} offer(s) expired unanswered; {what}"
        self._note(what)
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor="workflow", action="offers_widened", at=workflow.now(),
            reason=why, detail={"open_offers": open_now, "cap": cap, "expired": expired}))
        await self._notify(Notice(
            workflow_id=self._wf_id, key="offers-widened", to_role="ops",
            subject=f"Offers widened for {self._wf_id}",
            body=(f"{told}. The first accept wins and the other offers "
                  f"are withdrawn. Ranked candidates: `mdco match {self._wf_id} --explain`. "
                  "Ops may still assign a physician by hand.")))

    def _all_offers(self) -> list[OfferView]:
        return self._past_offers + list(self._offers.values())

    def _expired_offers(self) -> int:
        """Offers of this onboarding (every round) that expired unanswered."""
        return sum(o.status == "expired" for o in self._all_offers())

    def _not_to_ask(self) -> list[str]:
        """Physicians this round must not be offered: everyone asked already, except those whose
        offer expired unanswered in an earlier round (a decline is never re-asked)."""
        return sorted(npi for npi, o in self._offers.items() if not (o.status == "expired" and o.round < self._round))

    def _outgoing(self) -> list[str]:
        """A replacement never offers the placement to the director it replaces."""
        return [self._inp.replacement.outgoing_npi] if self._inp.replacement else []

    def _reofferable(self) -> list[str]:
        """Physicians whose latest offer expired unanswered, under the cap of ``offer_rounds_max``
        offers each: ranked after every fresh candidate, so each is re-offered as soon as its offer
        expires and nobody fresh is left, not once the whole round has closed (patch REOFFER_AT_EXPIRY)."""
        silent = sorted(npi for npi, o in self._offers.items()
                        if o.status == "expired" and o.round < self._timing.offer_rounds_max)
        if not (silent or self._round > 1):  # round > 1: a later run keeps counting rounds per physician
            return []
        if not (self._reoffer_at_expiry or workflow.patched(patches.REOFFER_AT_EXPIRY)):
            return []
        self._reoffer_at_expiry = True
        return silent

    async def _start_next_round(self) -> bool:
        """Fresh candidates are used up and nobody has an open offer: when some offers expired
        unanswered, start the next round (re-offer those physicians, ranked again with their silence
        counting against them), up to ``offer_rounds_max``; ops are told. False: wait on the roster.
        With REOFFER_AT_EXPIRY each silent physician was re-offered at expiry already: False."""
        silent = [o for o in self._offers.values() if o.status == "expired"]
        if not silent or self._round >= self._timing.offer_rounds_max or self._reoffer_at_expiry \
                or not workflow.patched(patches.OFFER_ROUNDS):
            return False
        self._round += 1
        await self._tell_round(f"{len(silent)} offer(s) expired unanswered and are re-offered now")
        return True

    async def _tell_round(self, what: str) -> None:
        """A later round starts: a timeline note and ops told (they may still assign by hand)."""
        self._note(f"offer round {self._round}: {what}")
        await self._notify(Notice(
            workflow_id=self._wf_id, key=f"offer-round-{self._round}", to_role="ops",
            subject=f"Offer round {self._round} for {self._wf_id}",
            body=(f"Every eligible physician was offered this placement; {what} "
                  f"(round {self._round} of {self._timing.offer_rounds_max}). "
                  "Ops may still assign a physician by hand.")))

    async def _send_offer(self, npi: str) -> None:
        now = workflow.now()
        rnd = self._round
        if self._reoffer_at_expiry:  # rounds per physician: the how-many-th offer to them this is
            rnd = self._offers[npi].round + 1 if npi in self._offers else 1
            if rnd > self._round:
                self._round = rnd
                await self._tell_round(f"NPI {npi}'s offer expired unanswered and is re-offered at once")
        offer = OfferView(npi=npi, sent_at=now, expires_at=now + self._timing.offer_ttl, round=rnd)
        await self._act("send_offer", OfferRequest(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, npi=npi,
            sent_at=offer.sent_at, expires_at=offer.expires_at, round=rnd))
        if npi in self._offers:
            self._past_offers.append(self._offers[npi])
        self._offers[npi] = offer
        self._note(f"offer sent to NPI {npi}" + (f" (round {rnd})" if rnd > 1 else ""))

    async def _wait_for_roster(self, result: MatchResult) -> None:
        reason = "no eligible physician left"
        if result.excluded:
            common = sorted({r for e in result.excluded for r in e.reasons})[:3]
            reason += f" ({len(result.excluded)} excluded; e.g. {'; '.join(common)})"
        if self._quiet_repeat("roster", reason):  # nothing changed since ops were told: just wait
            self._wait_for_if_changed("roster", reason)
        else:
            self._wait_for("roster", reason)
            self._note(reason)
            await self._notify(Notice(
                workflow_id=self._wf_id, key=f"roster-empty-{self._roster_version}", to_role="ops",
                subject=f"No eligible physician for {self._wf_id}", body=reason))
        await self._wait_for_roster_change(also=lambda: self._physician is not None)  # or an ops assignment

    async def _expire_due_offers(self) -> None:
        async with self._answer_lock():  # an accept being reserved is not expired under it
            now = workflow.now()
            for offer in list(self._offers.values()):
                if offer.status == "open" and offer.expires_at <= now:
                    await self._close_offer(offer.npi, "expired", "no answer before expiry")

    async def _close_offer(self, npi: str, status: str, reason: str) -> None:
        offer = self._offers[npi]
        offer.status = status  # type: ignore[assignment]
        offer.answered_at = workflow.now()
        offer.reason = reason
        self._offers_version += 1
        self._note(f"offer to NPI {npi} {status}")
        await self._act("record_offer", OfferStatusUpdate(
            workflow_id=self._wf_id, npi=npi, status=status, at=offer.answered_at, reason=reason, round=offer.round))

    @workflow.update
    async def accept_offer(self, answer: PhysicianAnswer) -> OfferAnswer:
        """The offered physician accepts; capacity is reserved atomically before the match counts."""
        async with self._lock:
            if self._physician is not None:
                return OfferAnswer(accepted=False, npi=answer.npi, status="lost",
                                   message="another physician accepted this placement first")
            closed = self._closed_meanwhile(answer.npi)
            if closed is not None:
                return closed
            reservation = await self._act("reserve_physician", args=[self._wf_id, answer.npi],
                                          result_type=ReservationResult)
            if not reservation.ok:
                await self._close_offer(answer.npi, "lost", reservation.reason)
                return OfferAnswer(accepted=False, npi=answer.npi, status="lost", message=reservation.reason)
            self._physician = answer.npi
            self._matched_at = workflow.now()
            await self._close_offer(answer.npi, "accepted", "accepted by the physician")
            self._placement_made()
            return OfferAnswer(accepted=True, npi=answer.npi, status="accepted",
                               message=f"you are the medical director for {self._intake.clinic_name}")

    @accept_offer.validator
    def _validate_accept(self, answer: PhysicianAnswer) -> None:
        self._require_open_offer(answer.npi)

    def _closed_meanwhile(self, npi: str) -> OfferAnswer | None:
        """Re-checked after taking the lock: the offer may have expired, been withdrawn or the
        onboarding cancelled while this answer waited for the lock."""
        offer = self._offers.get(npi)
        if not workflow.patched(patches.RACE_FREE) or (
                offer is not None and offer.status == "open" and self._cancel is None):
            return None
        why = "the onboarding is being cancelled" if self._cancel is not None else \
            f"the offer is {offer.status if offer else 'unknown'}"
        return OfferAnswer(accepted=False, npi=npi, status="closed", message=why)

    def _placement_made(self) -> None:
        """A physician is placed: the SLA is met, unless it was already breached (then it stays
        visible as breached, with ``matched_at`` saying how late)."""
        if self._sla == SlaStatus.breached and workflow.patched(patches.SLA_LATE_STAYS_BREACHED):
            self._note("placed after the SLA breach: SLA stays breached")
            return
        if self._sla != SlaStatus.met:
            self._set_sla(SlaStatus.met)

    @workflow.update
    async def decline_offer(self, answer: PhysicianAnswer) -> OfferAnswer:
        async with self._lock:
            closed = self._closed_meanwhile(answer.npi)
            if closed is not None:
                return closed
            by = f" ({answer.on_behalf_of} for the physician)" if answer.on_behalf_of else ""
            await self._close_offer(answer.npi, "declined", (answer.reason or "declined by the physician") + by)
        return OfferAnswer(accepted=False, npi=answer.npi, status="declined", message="decline recorded")

    @decline_offer.validator
    def _validate_decline(self, answer: PhysicianAnswer) -> None:
        self._require_open_offer(answer.npi)

    def _require_open_offer(self, npi: str) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.matching or self._physician is not None:
            raise ValueError(f"offers are closed: the onboarding is in stage {self._stage.value}")
        offer = self._offers.get(npi)
        if offer is None:
            raise ValueError(f"no offer was made to NPI {npi}")
        if offer.status != "open":
            raise ValueError(f"the offer to NPI {npi} is {offer.status}")
        if workflow.now() >= offer.expires_at:
            raise ValueError(f"the offer to NPI {npi} expired at {offer.expires_at.isoformat()}")

    @workflow.update
    async def assign_physician(self, request: AssignRequest) -> OfferAnswer:
        """Ops place a physician by hand; eligibility is re-checked against the roster first."""
        assert self._plan is not None
        async with self._lock:
            if self._physician is not None:
                raise ApplicationError("a physician was matched meanwhile", type="Rejected")
            if self._cancel is not None and workflow.patched(patches.RACE_FREE):
                raise ApplicationError("the onboarding is being cancelled", type="Rejected")
            reasons = await self._act("check_eligibility", EligibilityRequest(
                workflow_id=self._wf_id, intake=self._intake, plan=self._plan, npi=request.npi), result_type=list[str])
            if reasons:
                raise ApplicationError(f"NPI {request.npi} is not eligible: {'; '.join(reasons)}", type="Rejected")
            reservation = await self._act("reserve_physician", args=[self._wf_id, request.npi],
                                          result_type=ReservationResult)
            if not reservation.ok:
                raise ApplicationError(f"NPI {request.npi}: {reservation.reason}", type="Rejected")
            await self._act("record_decision", DecisionRecord(
                workflow_id=self._wf_id, actor=request.actor, action="physician_assigned", at=workflow.now(),
                reason=request.reason, detail={"npi": request.npi}))
            self._physician, self._matched_at = request.npi, workflow.now()
            self._note(f"NPI {request.npi} assigned by {request.actor}: {request.reason}")
            self._placement_made()
            return OfferAnswer(accepted=True, npi=request.npi, status="assigned", message="assigned by ops")

    @assign_physician.validator
    def _validate_assign(self, request: AssignRequest) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.matching or self._physician is not None or self._plan is None:
            raise ValueError(f"no physician can be assigned in stage {self._stage.value}")

    @workflow.signal
    def roster_updated(self) -> None:
        """A roster import happened: onboardings waiting on the roster try again."""
        self._roster_version += 1

    # ------------------------------------------------------------------ SLA clock
    async def _sla_clock(self) -> None:
        reached = {SlaStatus.at_risk: {SlaStatus.at_risk, SlaStatus.breached}, SlaStatus.breached: {SlaStatus.breached}}
        for status, after in ((SlaStatus.at_risk, self._timing.sla_at_risk),
                              (SlaStatus.breached, self._timing.sla_breach)):
            if self._sla in reached[status]:
                continue  # reached in an earlier run (continue-as-new): told once already
            remaining = self._started_at + after - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(lambda: self._physician is not None, timeout=remaining)
                except asyncio.TimeoutError:
                    pass
            if self._physician is not None or self._stage in (Stage.cancelled,):
                return
            self._set_sla(status)
            self._note(f"placement SLA {status.value}")
            await self._notify(Notice(
                workflow_id=self._wf_id, key=f"sla-{status.value}", to_role="ops",
                subject=f"SLA {status.value.replace('_', ' ')}: {self._wf_id} has no medical director yet",
                body=(f"Started {self._started_at.isoformat()}; deadline {self._sla_deadline.isoformat()}. "
                      f"Waiting on {self._waiting_on or 'nothing'}: {self._waiting_reason}" + self._assign_hint())))

    def _assign_hint(self) -> str:
        """What ops can do when the SLA is at risk in matching: assign by hand (offers may still be open)."""
        if self._stage != Stage.matching:
            return ""
        silent = self._expired_offers()
        return (f"\n\nOffer round {self._round}; {silent} offer(s) expired unanswered so far. Ranked candidates and "
                f"each offer's round: `mdco match {self._wf_id} --explain`. Assign a physician by hand: "
                f"`mdco assign {self._wf_id} --npi NPI --reason ...`.")

    def _set_sla(self, status: SlaStatus) -> None:
        self._sla = status
        self._upsert_search_attributes()

    # ------------------------------------------------------------------ stage 3
    async def _setup_protocols(self) -> None:
        await self._enter(Stage.protocol_setup)
        assert self._plan is not None and self._physician is not None
        approved = _sha256s(p for p in self._protocols if p.status == "approved")
        self._protocols = await self._act("prepare_protocols", ProtocolRequest(
            workflow_id=self._wf_id, intake=self._intake, plan=self._plan, npi=self._physician),
            result_type=list[ProtocolView])
        if self._protocols_approved:  # re-prepared (a retry): an approval holds only for the texts it named
            if _sha256s(self._protocols) == approved or not workflow.patched(patches.PROTOCOL_APPROVAL_BOUND):
                for p in self._protocols:
                    p.status = "approved"
            else:
                self._protocols_approved = False
                self._note("the protocols changed since they were approved: a new approval is needed")
        self._wait_for("physician", f"approval of {len(self._protocols)} protocol(s)")
        await self._wait_with_reminders(
            lambda: self._protocols_approved, every=self._timing.reminder_every,
            reminder=lambda n: Notice(workflow_id=self._wf_id, key=f"protocol-reminder-{n}", to_role="physician",
                                      to_id=self._physician or "", subject=f"Reminder {n}: protocols await your approval",
                                      body=f"Protocols for {self._intake.clinic_name} await your approval."),
            escalation_subject="protocol approval overdue")
        if workflow.patched(patches.PROTOCOL_PACKET_SIGNED):
            await self._sign_protocol_packet()

    async def _sign_protocol_packet(self) -> None:
        """The approved protocols go out for signature as an envelope of their own agreement kind: the
        director signs, each midlevel with an e-mail acknowledges, and stage 3 ends only once it is completed.

        Sent as the approval's consequence, not instead of it: the approval (bound to the SHA-256s read)
        records the review; the envelope carries those exact texts (document bytes and custom fields)
        and its certificate of completion proves who signed what and when, which a board investigator
        asks for and a click on an answer page does not show. Expiry, decline, void and resend are stage
        5's (``_collect_signatures``); a packet of texts since replaced is voided and sent again."""
        assert self._plan is not None and self._physician is not None
        spec = await self._act("prepare_protocol_packet", ProtocolRequest(
            workflow_id=self._wf_id, intake=self._intake, plan=self._plan, npi=self._physician),
            result_type=AgreementSpec)
        held = self._specs.get(spec.agreement_kind)
        self._specs[spec.agreement_kind] = spec
        for e in self._current_envelopes():
            if e.agreement_kind == spec.agreement_kind and held is not None and held.sha256s != spec.sha256s:
                await self._void_and_resend(e, "the protocols changed since this packet was sent", force=True)
        await self._collect_signatures([spec], escalation="protocol packet unsigned",  # not the approval's e-mail
                                       escalation_key="escalation-protocol-packet", reminder=lambda n: Notice(
            workflow_id=self._wf_id, key=f"protocol-packet-reminder-{n}", to_role="physician",
            to_id=self._physician or "", subject=f"Reminder {n}: the protocol packet awaits your signature",
            body=f"The protocols you approved for {self._intake.clinic_name} await your signature in DocuSign."))
        acknowledged = sum(1 for m in self._intake.midlevels if m.email)
        self._note(f"protocol packet signed by NPI {self._physician}, acknowledged by {acknowledged} practitioner(s)")

    @workflow.update
    async def approve_protocols(self, answer: PhysicianAnswer) -> str:
        """The director approves exactly the documents read: ``sha256s`` (the current ones when omitted)
        are recorded in the audit and bind the approval; a changed text needs a new approval."""
        bound = sorted(answer.sha256s) if answer.sha256s is not None else _sha256s(self._protocols)
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor=_party(f"physician:{answer.npi}", answer.on_behalf_of),
            action="protocols_approved",
            at=workflow.now(), detail={"services": [p.service.value for p in self._protocols], "sha256s": bound}))
        if _sha256s(self._protocols) != bound:  # re-prepared while the approval was being recorded
            raise ApplicationError(PROTOCOLS_CHANGED, type="Rejected")
        for p in self._protocols:
            p.status = "approved"
        self._protocols_approved = True
        self._note(f"protocols approved by NPI {answer.npi}")
        return "approved"

    @approve_protocols.validator
    def _validate_approve_protocols(self, answer: PhysicianAnswer) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.protocol_setup or not self._protocols:
            raise ValueError(f"no protocols await approval (stage {self._stage.value})")
        if self._protocols_approved:
            raise ValueError("the protocols are already approved")
        if answer.npi != self._physician:
            raise ValueError(f"only the matched medical director (NPI {self._physician}) may approve the protocols")
        if answer.sha256s is not None and sorted(answer.sha256s) != _sha256s(self._protocols):
            raise ValueError(PROTOCOLS_CHANGED)

    # ------------------------------------------------------------------ stage 4
    async def _coordinate_pharmacies(self) -> None:
        await self._enter(Stage.pharmacy_coordination)
        assert self._plan is not None and self._physician is not None
        if not self._pharmacies:  # a run continued from a decline's wait has sent its packets already
            selection = await self._select_pharmacies_until_filled(
                PharmacyRequest(workflow_id=self._wf_id, intake=self._intake, plan=self._plan),
                "pharmacy-gap-{}", f"No pharmacy for part of {self._wf_id}")
            if not selection.assignments:
                self._note("no compounded service: no pharmacy needed")
                return
            for assignment in selection.assignments:
                await self._send_packet(assignment)
        while True:
            revision = len(self._declined_pharmacies())  # 0 until a pharmacy declines
            self._wait_for("pharmacy", "prescriber account confirmation")
            await self._wait_with_reminders(
                lambda: bool(self._unreplaced_declines()) or all(
                    p.status != "packet_sent" for p in self._pharmacies.values()),
                every=self._timing.reminder_every,
                reminder=lambda n: Notice(workflow_id=self._wf_id,
                                          key=f"pharmacy-reminder-{n}" + (f"-r{revision}" if revision else ""),
                                          to_role="pharmacies",
                                          to_id=",".join(p.pharmacy_id for p in self._pharmacies.values()
                                                         if p.status == "packet_sent"),
                                          subject=f"Reminder {n}: please confirm the prescriber account",
                                          body=f"Prescriber account for {self._intake.clinic_name} awaits confirmation."),
                escalation_subject="pharmacy confirmation overdue")
            if not self._unreplaced_declines() or not workflow.patched(patches.PHARMACY_DECLINE):
                return
            await self._replace_declined_pharmacies()

    async def _select_pharmacies_until_filled(self, request: PharmacyRequest, gap_key: str,
                                              gap_subject: str) -> PharmacySelection:
        """Select pharmacies until every service is filled; meanwhile wait on ops (told once per roster
        version, ``gap_key`` formatted with it) and on the next pharmacy import."""
        while True:
            self._roster_asked = self._roster_version  # an import from here on must wake the wait below
            selection = await self._act("select_pharmacies", request, result_type=PharmacySelection)
            if not selection.problems:
                return selection
            gap = "; ".join(selection.problems)
            if self._quiet_repeat("ops", gap):
                self._wait_for_if_changed("ops", gap)
            else:
                self._wait_for("ops", gap)
                await self._notify(Notice(
                    workflow_id=self._wf_id, key=gap_key.format(self._roster_version), to_role="ops",
                    subject=gap_subject, body="\n".join(selection.problems)))
            await self._wait_for_roster_change()

    async def _send_packet(self, assignment: PharmacyAssignment) -> None:
        """Send the prescriber packet; a pharmacy asked again (for a decliner's services) gets a packet
        of its own for everything it now fills."""
        assert self._physician is not None
        held = self._pharmacies.get(assignment.pharmacy_id)
        revision = 0
        if held is not None and held.status != "declined":
            revision = len(self._declined_pharmacies())
            more = [s for s in assignment.services if s not in held.services]
            assignment = held.model_copy(update={"services": [*held.services, *more], "status": "packet_sent"})
        await self._act("send_prescriber_packet", PacketRequest(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, npi=self._physician,
            assignment=assignment, revision=revision))
        self._pharmacies[assignment.pharmacy_id] = assignment
        self._note(f"prescriber packet sent to pharmacy {assignment.pharmacy_id}")
        early = self._early_confirms.pop(assignment.pharmacy_id, None)
        if early is not None and assignment.status == "packet_sent" and workflow.patched(patches.EARLY_CONFIRM_KEPT):
            await self._apply_confirm(assignment, early)

    def _declined_pharmacies(self) -> list[str]:
        return [p.pharmacy_id for p in self._pharmacies.values() if p.status == "declined"]

    def _unreplaced_declines(self) -> list[PharmacyAssignment]:
        return [p for p in self._pharmacies.values() if p.status == "declined" and not p.replaced]

    async def _replace_declined_pharmacies(self) -> None:
        """The services of the pharmacies that declined go to the next qualifying pharmacy (decliners
        are never asked again); with nobody qualifying left, ops are asked with the reason."""
        assert self._plan is not None
        declined = self._unreplaced_declines()
        services = [s for p in declined for s in p.services]
        selection = await self._select_pharmacies_until_filled(
            PharmacyRequest(workflow_id=self._wf_id, intake=self._intake, plan=self._plan,
                            exclude=self._declined_pharmacies(), only=services),
            f"pharmacy-decline-gap-{len(self._declined_pharmacies())}-{{}}",
            f"No pharmacy left for part of {self._wf_id} after a decline")
        for p in declined:
            p.replaced = True
        for assignment in selection.assignments:
            await self._send_packet(assignment)

    @workflow.update
    async def decline_pharmacy(self, decline: PharmacyDecline) -> str:
        assignment = self._pharmacies[decline.pharmacy_id]
        assignment.status, assignment.decline_reason = "declined", decline.reason
        self._note(f"pharmacy {decline.pharmacy_id} declined the prescriber account: {decline.reason}")
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor=_party(f"pharmacy:{decline.pharmacy_id}", decline.on_behalf_of),
            action="pharmacy_declined", at=workflow.now(), reason=decline.reason,
            detail={"services": [s.value for s in assignment.services]}))
        return "declined; the next qualifying pharmacy will be asked"

    @decline_pharmacy.validator
    def _validate_decline_pharmacy(self, decline: PharmacyDecline) -> None:
        self._refuse_if_cancelling()
        if self._stage != Stage.pharmacy_coordination:
            raise ValueError(f"no pharmacy is being asked (stage {self._stage.value})")
        assignment = self._pharmacies.get(decline.pharmacy_id)
        if assignment is None or assignment.status != "packet_sent":
            raise ValueError(f"pharmacy {decline.pharmacy_id} has no open prescriber-account request"
                             + (f" ({assignment.status})" if assignment else ""))

    @workflow.signal
    async def confirm_pharmacy(self, confirmation: PharmacyConfirmation) -> None:
        assignment = self._pharmacies.get(confirmation.pharmacy_id)
        if assignment is None and self._stage != Stage.launched:
            self._early_confirms[confirmation.pharmacy_id] = confirmation  # applied when its packet is sent
            return
        if assignment is None or assignment.status != "packet_sent":
            return  # repeated or declined-then-confirmed answers change nothing
        await self._apply_confirm(assignment, confirmation)

    async def _apply_confirm(self, assignment: PharmacyAssignment, confirmation: PharmacyConfirmation) -> None:
        assignment.status = "confirmed"
        assignment.account_number = confirmation.account_number
        self._note(f"pharmacy {confirmation.pharmacy_id} confirmed the prescriber account")
        await self._best_effort("record_decision", DecisionRecord(  # a signal handler must not fail the run
            workflow_id=self._wf_id, actor=_party(f"pharmacy:{confirmation.pharmacy_id}", confirmation.on_behalf_of),
            action="pharmacy_confirmed", at=workflow.now(),
            detail={"account_number": confirmation.account_number} if confirmation.account_number else {}))

    # ------------------------------------------------------------------ stage 5
    async def _sign_agreements(self) -> None:
        """Send one envelope per agreement and wait until all are completed (``_collect_signatures``)."""
        await self._enter(Stage.agreements)
        assert self._plan is not None and self._physician is not None
        specs = await self._act("prepare_agreements", ProtocolRequest(
            workflow_id=self._wf_id, intake=self._intake, plan=self._plan, npi=self._physician),
            result_type=list[AgreementSpec])
        await self._collect_signatures(specs, escalation="agreements unsigned", reminder=lambda n: Notice(
            workflow_id=self._wf_id, key=f"agreement-reminder-{n}", to_role="clinic",
            to_id=self._intake.clinic_key, subject=f"Reminder {n}: agreements await signature",
            body="Your agreements are waiting for signature in DocuSign."))

    async def _collect_signatures(self, specs: list[AgreementSpec], *, reminder: Callable[[int], Notice],
                                  escalation: str, escalation_key: str = "") -> None:
        """Send one envelope per spec and wait until all are completed, with reminders, expiry
        (void + resend once, then ops), a decline path (ops resend or cancel) and a status GET when
        Connect stays silent (at most one per envelope per ``reconcile_min_gap``). Stage 3's protocol
        packet and stage 5's agreements both go through here."""
        self._specs.update({spec.agreement_kind: spec for spec in specs})
        kinds = {spec.agreement_kind for spec in specs}

        def current_envelopes() -> list[EnvelopeView]:
            return [e for e in self._current_envelopes() if e.agreement_kind in kinds]

        already_out = {e.agreement_kind for e in current_envelopes()}  # a retried stage resends nothing
        for spec in specs:
            if spec.agreement_kind not in already_out:
                await self._send_envelope(spec, attempt=1)
        t = self._timing
        reminders, next_reminder = 0, workflow.now() + t.reminder_every
        while True:
            await self._drain_envelope_events()
            current = current_envelopes()
            if all(e.status == "completed" for e in current):
                return
            stuck = [e for e in current if e.status in ("declined", "voided")]  # only ops can move these
            if self._resend_requested:
                self._resend_requested = False
                for e in stuck:
                    await self._void_and_resend(e, "resend requested by ops", force=True)
                continue
            if stuck:
                await self._ask_ops_about(stuck)
                await self._wait(lambda: self._resend_requested or bool(self._envelope_events))
                continue
            self._wait_for("signers", f"{sum(e.status != 'completed' for e in current)} envelope(s) out for signature")
            now = workflow.now()
            for e in current:
                if e.status not in TERMINAL_ENVELOPE and e.sent_at and now >= e.sent_at + t.agreement_expiry:
                    await self._void_and_resend(e, "expired unsigned")
            await self._reconcile_quiet_envelopes(now)
            if now >= next_reminder:
                reminders += 1
                next_reminder = now + t.reminder_every
                await self._notify(reminder(reminders))
                if reminders == t.escalate_after_reminders:
                    await self._escalate(escalation, reminders, key=escalation_key)
            due = [next_reminder] + [e.sent_at + t.agreement_expiry for e in current_envelopes()
                                     if e.sent_at and e.status not in TERMINAL_ENVELOPE]
            due += [self._reconcile_due(e) for e in current_envelopes() if e.status not in TERMINAL_ENVELOPE]
            await self._wait_at_most(lambda: bool(self._envelope_events) or self._resend_requested,
                                     max(min(due) - workflow.now(), timedelta(seconds=1)))

    def _current_envelopes(self) -> list[EnvelopeView]:
        return [e for e in self._envelopes.values() if e.current]

    async def _send_envelope(self, spec: AgreementSpec, attempt: int) -> None:
        assert self._plan is not None and self._physician is not None
        envelope = await self._act("send_agreement", AgreementRequest(
            workflow_id=self._wf_id, intake=self._intake, plan=self._plan, npi=self._physician, spec=spec,
            attempt=attempt), result_type=EnvelopeView)
        for other in self._envelopes.values():
            if other.agreement_kind == spec.agreement_kind and other.envelope_id != envelope.envelope_id:
                other.current = False
        envelope.sent_at, envelope.attempt, envelope.current = workflow.now(), attempt, True
        self._envelopes[envelope.envelope_id] = envelope
        self._note(f"envelope {envelope.envelope_id} sent for {spec.agreement_kind} (attempt {attempt})")

    async def _void_and_resend(self, envelope: EnvelopeView, reason: str, force: bool = False) -> None:
        """Void an envelope that cannot complete and send a fresh one; past the limit, ops decide."""
        if envelope.status not in ("voided", "completed", "declined"):
            await self._act("void_envelope", VoidRequest(
                workflow_id=self._wf_id, agreement_kind=envelope.agreement_kind,
                envelope_id=envelope.envelope_id, reason=reason))
            envelope.status, envelope.status_at = "voided", workflow.now()
            self._note(f"envelope {envelope.envelope_id} voided: {reason}")
        if envelope.attempt >= self._timing.agreement_max_sends and not force:
            return  # it stays current and voided: ops decide (resend or cancel)
        await self._send_envelope(self._specs[envelope.agreement_kind], attempt=envelope.attempt + 1)

    async def _ask_ops_about(self, stuck: list[EnvelopeView]) -> None:
        kinds = ", ".join(f"{e.agreement_kind} ({e.status})" for e in stuck)
        if self._waiting_on != "ops":
            self._wait_for("ops", f"agreements need a decision: {kinds}")
            await self._notify(Notice(
                workflow_id=self._wf_id, key=f"agreements-stuck-{'-'.join(e.envelope_id for e in stuck)}",
                to_role="ops", subject=f"Agreements need ops for {self._wf_id}",
                body=f"{kinds}. Resend with the resend_agreements update (POST .../agreements/resend) or cancel."))

    def _reconcile_due(self, envelope: EnvelopeView) -> datetime:
        """When Connect has been silent for ``reconcile_after`` since the last event, send or check."""
        checked = self._checked_at.get(envelope.envelope_id)
        quiet_since = max(filter(None, [envelope.status_at, envelope.sent_at, checked]), default=workflow.now())
        due = quiet_since + self._timing.reconcile_after
        return max(due, checked + self._timing.reconcile_min_gap) if checked else due

    async def _reconcile_quiet_envelopes(self, now: datetime) -> None:
        for envelope in self._current_envelopes():
            if envelope.status in TERMINAL_ENVELOPE or now < self._reconcile_due(envelope):
                continue
            self._checked_at[envelope.envelope_id] = now
            status = await self._act("check_envelope", envelope.envelope_id, result_type=str)
            self._note(f"envelope {envelope.envelope_id} reconciled by status check: {status}")
            if status != envelope.status:
                self._envelope_events.append(EnvelopeEvent(envelope_id=envelope.envelope_id, status=status,
                                                           generated_at=now))

    @workflow.update
    async def resend_agreements(self, request: ResendRequest) -> str:
        """Ops resend declined or expired agreements (a new envelope each)."""
        await self._act("record_decision", DecisionRecord(
            workflow_id=self._wf_id, actor=request.actor, action="agreements_resent", at=workflow.now(),
            reason=request.reason))
        self._resend_requested = True
        return "resending"

    @resend_agreements.validator
    def _validate_resend(self, request: ResendRequest) -> None:
        self._refuse_if_cancelling()  # stage 3's protocol packet is resent the same way
        if self._stage not in (Stage.agreements, Stage.protocol_setup) or self._waiting_on != "ops":
            raise ValueError("no declined or expired agreement is waiting for a resend")

    async def _drain_envelope_events(self) -> None:
        while self._envelope_events:
            event = self._envelope_events.pop(0)
            envelope = self._envelopes.get(event.envelope_id)
            if envelope is None or envelope.status in TERMINAL_ENVELOPE:
                continue
            newer = envelope.status_at is None or event.generated_at > envelope.status_at
            forward = ENVELOPE_ORDER.get(event.status, 0) >= ENVELOPE_ORDER.get(envelope.status, 0)
            if not (newer and forward):
                continue  # an older or duplicate event never moves an envelope back
            envelope.status = event.status
            envelope.status_at = event.generated_at
            self._note(f"envelope {envelope.envelope_id} ({envelope.agreement_kind}) {event.status}")
            await self._act("record_envelope", EnvelopeRecord(
                workflow_id=self._wf_id, envelope_id=envelope.envelope_id, agreement_kind=envelope.agreement_kind,
                status=event.status, at=event.generated_at))

    @workflow.signal
    def envelope_event(self, event: EnvelopeEvent) -> None:
        """A DocuSign Connect event (HMAC-verified by the API) for one of this onboarding's envelopes."""
        self._envelope_events.append(event)

    # ------------------------------------------------------------------ stage 6
    async def _launch(self) -> None:
        assert self._plan is not None and self._physician is not None
        self._wait_for("", "")
        replacement = self._inp.replacement
        await self._act("launch_clinic", LaunchRequest(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, npi=self._physician,
            pharmacy_ids=sorted(self._pharmacies), at=workflow.now(), replaces=replacement,
            protocol_review_every=self._timing.protocol_review_every))
        self._launching = True  # from here a cancel is refused: offboarding ends a live clinic
        if replacement is not None:
            await self._hand_over(replacement)
            return
        oversight_id = oversight_id_for(self._intake.clinic_key)
        try:
            await workflow.start_child_workflow(
                OversightWorkflow.run,
                OversightInput(clinic_key=self._intake.clinic_key, physician_npi=self._physician,
                               states=list(self._intake.states), chart_review=self._plan.chart_review,
                               timing=self._timing),
                id=oversight_id, parent_close_policy=workflow.ParentClosePolicy.ABANDON)
        except WorkflowAlreadyStartedError:  # oversight from an earlier engagement is still running:
            if workflow.patched(patches.REONBOARD_TAKES_OVER):  # it goes on with this director, not the old one
                await self._tell_oversight(oversight_id, OversightWorkflow.director_replaced, DirectorChange(
                    npi=self._physician, workflow_id=self._wf_id, at=workflow.now()))
        self._oversight_id = oversight_id
        await self._enter(Stage.launched)
        self._note(f"clinic launched; oversight continues in {oversight_id}")

    async def _hand_over(self, replacement: Replacement) -> None:
        """A replacement launched: oversight goes on in the same workflow with the new director."""
        assert self._physician is not None
        await self._tell_oversight(replacement.oversight_workflow_id, OversightWorkflow.director_replaced,
                                   DirectorChange(npi=self._physician, workflow_id=self._wf_id, at=workflow.now()))
        self._oversight_id = replacement.oversight_workflow_id
        await self._enter(Stage.launched)
        self._note(f"NPI {self._physician} replaces NPI {replacement.outgoing_npi}; "
                   f"oversight continues in {replacement.oversight_workflow_id}")

    async def _tell_oversight(self, oversight_id: str, signal: Any, arg: Any) -> None:
        """Signal the clinic's oversight workflow; one that is gone (offboarded) is noted, not fatal."""
        try:
            await workflow.get_external_workflow_handle(oversight_id).signal(signal, arg)
        except FailureError as err:
            self._note(f"oversight {oversight_id} not told: {_failure_reason(err)}")

    # ------------------------------------------------------------------ cancel
    @workflow.update
    async def cancel(self, request: CancelRequest) -> str:
        """Ops cancel the onboarding with a reason; capacity, offers and envelopes are released."""
        self._cancel = request
        return "cancelling"

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._cancel is not None:
            raise ValueError("cannot cancel: a cancel is already under way")
        if self._stage in (Stage.launched, Stage.cancelled):
            raise ValueError(f"cannot cancel an onboarding that is {self._stage.value}")
        if self._launching:
            raise ValueError("the clinic is being launched; offboard it instead")

    async def _cleanup_after_cancel(self) -> None:
        """Withdraw open offers, release capacity, void envelopes: after any answer being handled
        (it holds the lock) so an accept that reserved capacity meanwhile is released too."""
        assert self._cancel is not None
        async with self._answer_lock():
            for offer in list(self._offers.values()):
                if offer.status == "open":
                    await self._close_offer(offer.npi, "withdrawn", "onboarding cancelled")
            await self._act("record_cancellation", CancelRecord(
                workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, reason=self._cancel.reason,
                at=workflow.now(), actor=self._cancel.actor, keep_clinic=self._inp.replacement is not None))
        if self._physician is not None and workflow.patched(patches.CANCEL_TELLS_PHYSICIAN):
            await self._notify(Notice(  # the placed physician (even one whose accept just won) is told
                workflow_id=self._wf_id, key=f"placement-cancelled-{self._physician}", to_role="physician",
                to_id=self._physician, subject=f"Placement cancelled: {self._intake.clinic_name}",
                body="This placement will not go ahead: the onboarding was cancelled. Your capacity is released."))
        if self._inp.replacement is not None:  # the clinic's oversight stops showing "replacing"
            await self._tell_oversight(self._inp.replacement.oversight_workflow_id, OversightWorkflow.replacement_ended,
                                       self._wf_id)
        self._note(f"cancelled by {self._cancel.actor}: {self._cancel.reason}")
        self._wait_for("", "")
        await self._enter(Stage.cancelled)

    # ------------------------------------------------------------------ status
    @workflow.query
    def status(self) -> OnboardingStatus:
        return self._status()

    def _status(self) -> OnboardingStatus:
        return OnboardingStatus(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, stage=self._stage,
            sla_status=self._sla, sla_deadline=self._started_at + self._timing.sla_breach,
            started_at=self._started_at, matched_at=self._matched_at, waiting_on=self._waiting_on,
            time_to_match_minutes=round((self._matched_at - self._started_at).total_seconds() / 60, 1)
            if self._matched_at else None,
            waiting_reason=self._waiting_reason, physician_npi=self._physician,
            offers=sorted(self._all_offers(), key=lambda o: o.sent_at), offer_round=self._round,
            protocols=self._protocols,
            pharmacies=list(self._pharmacies.values()), envelopes=list(self._envelopes.values()),
            findings=self._plan.findings if self._plan else [],
            quote_monthly_usd=self._plan.quote.monthly_usd if self._plan else None,
            timeline=self._timeline, cancel_reason=self._cancel.reason if self._cancel else "",
            oversight_workflow_id=self._oversight_id,
            blocked_stage=self._blocked_stage.value if self._blocked_stage else "")

    # ------------------------------------------------------------------ helpers
    async def _act(self, name: str, arg: Any = None, *, args: list[Any] | None = None,
                   result_type: Any = None) -> Any:
        """Run activity ``name`` with its own timeouts and retries (``activity_options``). On the
        stage path a cancel accepted while it ran is honoured as soon as it returns."""
        call_args = args if args is not None else ([] if arg is None else [arg])
        result = await self._execute(name, call_args, result_type)
        if (self._cancel is not None and self._stage != Stage.launched
                and asyncio.current_task() is self._stages_task and workflow.patched(patches.RACE_FREE)):
            raise OnboardingCancelled(self._cancel.reason)
        return result

    async def _best_effort(self, name: str, arg: Any) -> bool:
        """An activity whose failure must not stop the onboarding (it is noted on the timeline)."""
        try:
            await self._execute(name, [arg], None)
            return True
        except ActivityError as err:
            self._note(f"{name} failed and was skipped: {_failure_reason(err)}")
            return False

    def _execute(self, name: str, call_args: list[Any], result_type: Any) -> Any:
        """Schedule ``name`` on the task queue; in runs that recorded ANSWER_WRITES_LOCAL the short writes a
        person's answer waits on are local activities (withdrawn: ANSWER_WRITES_QUEUED)."""
        options = options_for(name)
        if name in ANSWER_WRITES and self._answer_writes_local():
            return workflow.execute_local_activity(name, args=call_args, result_type=result_type,
                                                   **options.local_kwargs())
        return workflow.execute_activity(name, args=call_args, result_type=result_type, **options.kwargs())

    def _answer_writes_local(self) -> bool:
        """Only in runs that recorded ANSWER_WRITES_LOCAL (and not its successor ANSWER_WRITES_QUEUED)."""
        if self._local_writes is None:
            self._local_writes = (not workflow.patched(patches.ANSWER_WRITES_QUEUED)
                                  and workflow.patched(patches.ANSWER_WRITES_LOCAL))
        return self._local_writes

    async def _notify(self, notice: Notice) -> None:
        """E-mail a party; a notice that cannot be sent never fails a placement."""
        await self._best_effort("notify", notice)

    def _answer_lock(self) -> Any:
        """The lock answers take, for the main path's cleanup and expiry (new executions only)."""
        return self._lock if workflow.patched(patches.RACE_FREE) else contextlib.nullcontext()

    def _quiet_repeat(self, who: str, reason: str) -> bool:
        """True when this wait repeats the last one unchanged (same party, reason and roster): the
        search-attribute upsert, timeline entry and ops e-mail were done then."""
        key = (f"{who}:{reason}", self._roster_version)
        if self._notified_gap == key and workflow.patched(patches.QUIET_LONG_WAITS):
            return True
        self._notified_gap = key
        return False

    async def _enter(self, stage: Stage) -> None:
        self._stage = stage
        self._waiting_on, self._waiting_reason = "", ""
        self._note(f"stage {stage.value}")
        self._upsert_search_attributes()
        await self._act("record_stage", StageRecord(
            workflow_id=self._wf_id, clinic_key=self._intake.clinic_key, stage=stage, sla_status=self._sla.value,
            at=workflow.now(), physician_npi=self._physician,
            note=self._cancel.reason if self._cancel and stage == Stage.cancelled else ""))

    async def _wait(self, condition: Callable[[], bool], timeout: timedelta | None = None) -> None:
        """``wait_condition`` that also wakes on ops cancel and unwinds the stages when it does.

        Cancellation is cooperative: a cancelled activity future may still resolve, so the stages
        check the flag at every wait instead of relying on ``Task.cancel``."""
        await workflow.wait_condition(lambda: condition() or self._cancel is not None, timeout=timeout)
        if self._cancel is not None:
            raise OnboardingCancelled(self._cancel.reason)

    async def _wait_at_most(self, condition: Callable[[], bool], timeout: timedelta) -> None:
        """``_wait`` where running out of time is a normal outcome (the caller re-checks)."""
        try:
            await self._wait(condition, timeout=timeout)
        except asyncio.TimeoutError:
            pass

    async def _wait_for_roster_change(self, also: Callable[[], bool] = lambda: False) -> None:
        """Until a roster/pharmacy import signals (``roster_updated``), ``also`` holds, or the retry
        timer, which backs off (doubling up to ``roster_retry_max``) while nothing changes; a long
        history hands over to a fresh run here (continue-as-new)."""
        seen = self._roster_version
        if self._roster_asked is not None and workflow.patched(patches.ROSTER_SIGNAL_KEPT):
            seen = self._roster_asked  # an import signalled while ops were being told still counts
        timeout = self._timing.roster_retry
        quiet = workflow.patched(patches.QUIET_LONG_WAITS)
        if quiet:
            timeout = min(timeout * (2 ** min(self._roster_waits, 20)), self._timing.roster_retry_max)
        await self._wait_at_most(lambda: self._roster_version != seen or also(), timeout)
        if not quiet:
            return
        if self._roster_version != seen or also():
            self._roster_waits = 0
            return
        self._roster_waits += 1
        info = workflow.info()
        if info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._timing.max_history_events:
            raise ContinueAsNewDue()

    def _wait_for_if_changed(self, who: str, reason: str) -> None:
        """``_wait_for`` without the search-attribute upsert when nothing changed."""
        if (self._waiting_on, self._waiting_reason) != (who, reason):
            self._wait_for(who, reason)

    def _wait_for(self, who: str, reason: str) -> None:
        self._waiting_on, self._waiting_reason = who, reason
        self._upsert_search_attributes()

    async def _wait_with_reminders(self, done: Callable[[], bool], *, every: timedelta,
                                   reminder: Callable[[int], Notice], escalation_subject: str = "") -> None:
        """Wait for ``done``; remind the party every ``every``; tell ops once reminders run out."""
        sent = 0
        while True:
            if done():
                return
            try:
                await self._wait(done, timeout=every)
                continue
            except asyncio.TimeoutError:
                pass
            sent += 1
            await self._notify(reminder(sent))
            if escalation_subject and sent == self._timing.escalate_after_reminders:
                await self._escalate(escalation_subject, sent)

    async def _escalate(self, subject: str, reminders: int, key: str = "") -> None:
        await self._notify(Notice(
            workflow_id=self._wf_id, key=key or f"escalation-{self._stage.value}", to_role="ops",
            subject=f"Escalation: {self._wf_id} {subject}",
            body=f"{reminders} reminders sent; waiting on {self._waiting_on}: {self._waiting_reason}"))
        self._note(f"escalated to ops: {subject}")

    def _note(self, event: str) -> None:
        self._timeline.append(TimelineEntry(at=workflow.now(), stage=self._stage.value, event=event))
        self._refresh_details()

    def _upsert_search_attributes(self) -> None:
        workflow.upsert_search_attributes([
            sa.STAGE.value_set(self._stage.value),
            sa.SLA_STATUS.value_set(self._sla.value),
            sa.SLA_DEADLINE.value_set(self._started_at + self._timing.sla_breach),
            sa.STATES.value_set(list(self._intake.states)),
            sa.WAITING_ON.value_set(self._waiting_on or "nothing"),
        ])
        self._refresh_details()

    def _refresh_details(self) -> None:
        """What the Temporal UI shows for this run: stage, SLA and what it waits on."""
        details = f"**{self._stage.value}** · SLA {self._sla.value}"
        if self._round > 1 and self._stage == Stage.matching:
            details += f" · offer round {self._round} of {self._timing.offer_rounds_max}"
        if self._waiting_on:
            details += f" · waiting on {self._waiting_on}: {self._waiting_reason}"
        workflow.set_current_details(details)

