"""``OversightWorkflow``: the post-launch loop that outlives the onboarding.

Each cycle opens a chart review (sample % from the plan) and waits the cadence; the history is kept
bounded with continue-as-new. The daily compliance sweep (``ComplianceSweepWorkflow``) signals
``compliance_alert`` when a renewal notice went out, a credential lapsed or the director was found on
the OIG LEIE list; a lapse or exclusion suspends states (carried through continue-as-new).

Release 1 histories must keep replaying: everything that adds commands (search-attribute upserts, the
offboarding activity) runs behind ``workflow.patched(OVERSIGHT_COMPLIANCE)``; signal handlers that only
change state add no commands.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.messages import ChartReviewRequest
    from domain.onboarding import DirectorChange, OversightInput, OversightStatus
    from domain.oversight import ComplianceAlert, OffboardRecord, OversightCompliance
    from workflows import search_attributes as sa
    from workflows.activity_options import options_for
    from workflows.patches import OVERSIGHT_COMPLIANCE

CYCLES_PER_RUN = 12  # one year of monthly reviews per run keeps each history small
ALERTS_KEPT = 20  # the most recent compliance alerts shown in the query (the store keeps them all)


@workflow.defn
class OversightWorkflow:
    @workflow.init
    def __init__(self, inp: OversightInput) -> None:
        self._inp = inp
        self._cycles = inp.cycles_done
        self._next_at: datetime | None = None
        self._open: list[str] = list(inp.open_reviews)
        self._stop_reason = ""
        self._suspended: list[str] = sorted(set(inp.suspended_states))
        self._alerts: list[ComplianceAlert] = []
        self._offboarded = False
        self._replacement_id = inp.replacement_workflow_id

    @workflow.run
    async def run(self, inp: OversightInput) -> OversightStatus:
        every = inp.timing.chart_review_every or timedelta(days=inp.chart_review.cadence_days)
        for _ in range(CYCLES_PER_RUN):
            self._next_at = workflow.now() + every
            workflow.set_current_details(self._details())
            self._publish()
            try:
                await workflow.wait_condition(lambda: bool(self._stop_reason),
                                              timeout=every)
            except asyncio.TimeoutError:
                pass
            if self._stop_reason:
                return await self._end()
            self._cycles += 1
            review_id = f"{inp.clinic_key}-cr-{self._cycles}"
            await workflow.execute_activity(
                "open_chart_review",
                ChartReviewRequest(clinic_key=inp.clinic_key, physician_npi=self._inp.physician_npi,
                                   cycle=self._cycles, sample_percent=inp.chart_review.percent,
                                   due_at=workflow.now() + inp.timing.chart_review_deadline,
                                   protocol_review_every=inp.timing.protocol_review_every),
                **options_for("open_chart_review").kwargs())
            self._open = (self._open + [review_id])[-12:]
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._stop_reason:  # ended while the last cycle's handlers finished: do not start a new run
            return await self._end()
        workflow.continue_as_new(self._inp.model_copy(update={
            "cycles_done": self._cycles, "open_reviews": self._open, "suspended_states": self._suspended,
            "replacement_workflow_id": self._replacement_id}))

    async def _end(self) -> OversightStatus:
        """The engagement ended: offboard (release capacity, tell every party, terminate agreements)."""
        if workflow.patched(OVERSIGHT_COMPLIANCE):
            await workflow.execute_activity(
                "offboard_clinic",
                OffboardRecord(clinic_key=self._inp.clinic_key, physician_npi=self._inp.physician_npi,
                               reason=self._stop_reason, at=workflow.now()),
                **options_for("offboard_clinic").kwargs())
            self._offboarded = True
            self._publish()
        return self._status()

    @workflow.signal
    def end_engagement(self, reason: str) -> None:
        """The engagement ended (clinic offboarded): stop the loop."""
        self._stop_reason = reason or "engagement ended"

    @workflow.signal
    def compliance_alert(self, alert: ComplianceAlert) -> None:
        """The daily sweep sent a renewal notice, or a lapse / exclusion suspends states."""
        self._alerts = (self._alerts + [alert])[-ALERTS_KEPT:]
        if alert.suspended_states:
            self._suspended = sorted(set(self._suspended) | set(alert.suspended_states))
        workflow.set_current_details(self._details())
        self._publish()

    @workflow.signal
    def replacement_started(self, workflow_id: str) -> None:
        """Ops (or the sweep) started a replacement placement for this clinic's director."""
        self._replacement_id = workflow_id
        workflow.set_current_details(self._details())
        self._publish()

    @workflow.signal
    def replacement_ended(self, workflow_id: str) -> None:
        """The replacement placement was cancelled: the clinic stays with its director."""
        if self._replacement_id == workflow_id:
            self._replacement_id = ""
            workflow.set_current_details(self._details())
            self._publish()

    @workflow.signal
    def director_replaced(self, change: DirectorChange) -> None:
        """The replacement launched: oversight goes on with the new director; the suspensions it
        was started for are lifted (the store's are lifted by the launch activity)."""
        self._inp = self._inp.model_copy(update={"physician_npi": change.npi})
        self._replacement_id, self._suspended = "", []
        workflow.set_current_details(self._details())
        self._publish()

    @workflow.query
    def status(self) -> OversightStatus:
        return self._status()

    @workflow.query
    def ack_deadline(self, severity: str) -> float | None:
        """Seconds the director has to acknowledge an adverse event of ``severity`` under this clinic's
        Timing; None: the policy's deadline applies (a query: no command, replays unchanged)."""
        left = self._inp.timing.event_ack.get(severity)  # type: ignore[call-overload]
        return left.total_seconds() if left is not None else None

    @workflow.query
    def compliance(self) -> OversightCompliance:
        return OversightCompliance(clinic_key=self._inp.clinic_key, status=self._state(),
                                   suspended_states=list(self._suspended), alerts=list(self._alerts),
                                   next_chart_review_at=self._next_at)

    def _state(self) -> str:
        if self._offboarded:
            return "offboarded"
        if self._replacement_id:
            return "replacing"
        return "suspended" if self._suspended else "active"

    def _details(self) -> str:
        text = f"**oversight** · chart review {self._cycles + 1} due {self._next_at.isoformat() if self._next_at else '-'}"
        if self._suspended:
            text += f" · **suspended** in {', '.join(self._suspended)}"
        return text

    def _publish(self) -> None:
        """Search attributes ops filter on (no PII): the oversight status and the next due date."""
        if not workflow.patched(OVERSIGHT_COMPLIANCE):
            return
        updates = [sa.OVERSIGHT_STATUS.value_set(self._state())]
        if self._next_at is not None:
            updates.append(sa.OVERSIGHT_NEXT_DUE.value_set(self._next_at))
        workflow.upsert_search_attributes(updates)

    def _status(self) -> OversightStatus:
        return OversightStatus(clinic_key=self._inp.clinic_key, physician_npi=self._inp.physician_npi,
                               cycles_done=self._cycles, next_chart_review_at=self._next_at,
                               open_reviews=list(self._open))
