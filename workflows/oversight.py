"""``OversightWorkflow``: the post-launch loop that outlives the onboarding.

Each cycle opens a chart review (sample % from the plan) and waits the cadence; the history is kept
bounded with continue-as-new. Deeper oversight (renewal ladder, adverse events) builds on this loop.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.messages import ChartReviewRequest
    from domain.onboarding import OversightInput, OversightStatus
    from workflows.activity_options import options_for

CYCLES_PER_RUN = 12  # one year of monthly reviews per run keeps each history small


@workflow.defn
class OversightWorkflow:
    @workflow.init
    def __init__(self, inp: OversightInput) -> None:
        self._inp = inp
        self._cycles = inp.cycles_done
        self._next_at: datetime | None = None
        self._open: list[str] = list(inp.open_reviews)
        self._stop_reason = ""

    @workflow.run
    async def run(self, inp: OversightInput) -> OversightStatus:
        every = inp.timing.chart_review_every or timedelta(days=inp.chart_review.cadence_days)
        for _ in range(CYCLES_PER_RUN):
            self._next_at = workflow.now() + every
            workflow.set_current_details(
                f"**oversight** · chart review {self._cycles + 1} due {self._next_at.isoformat()}")
            try:
                await workflow.wait_condition(lambda: bool(self._stop_reason),
                                              timeout=every)
            except asyncio.TimeoutError:
                pass
            if self._stop_reason:
                return self._status()
            self._cycles += 1
            review_id = f"{inp.clinic_key}-cr-{self._cycles}"
            await workflow.execute_activity(
                "open_chart_review",
                ChartReviewRequest(clinic_key=inp.clinic_key, physician_npi=inp.physician_npi,
                                   cycle=self._cycles, sample_percent=inp.chart_review.percent,
                                   due_at=workflow.now() + inp.timing.chart_review_deadline),
                **options_for("open_chart_review").kwargs())
            self._open = (self._open + [review_id])[-12:]
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._stop_reason:  # ended while the last cycle's handlers finished: do not start a new run
            return self._status()
        workflow.continue_as_new(inp.model_copy(update={"cycles_done": self._cycles, "open_reviews": self._open}))

    @workflow.signal
    def end_engagement(self, reason: str) -> None:
        """The engagement ended (clinic offboarded): stop the loop."""
        self._stop_reason = reason or "engagement ended"

    @workflow.query
    def status(self) -> OversightStatus:
        return self._status()

    def _status(self) -> OversightStatus:
        return OversightStatus(clinic_key=self._inp.clinic_key, physician_npi=self._inp.physician_npi,
                               cycles_done=self._cycles, next_chart_review_at=self._next_at,
                               open_reviews=list(self._open))
