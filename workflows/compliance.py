"""The daily compliance sweep and the adverse-event acknowledgement watch. Orchestration only: the
work is in activities/oversight.py.

``ComplianceSweepWorkflow`` is started by the Temporal Schedule ``mdco-compliance-sweep``
(mdco_temporal/schedules.py): one sweep activity, then one ``compliance_alert`` signal to each affected
``oversight-<clinic_key>``. A clinic whose oversight workflow is gone is skipped (the store already
holds the notice or suspension; ``mdco oversight status`` reads it from there).

``AdverseEventWorkflow`` (``adverse-event-<event_id>``) waits for the director's acknowledgement until
the deadline of the event's severity, then escalates to ops.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from domain.codes import oversight_id_for
    from domain.oversight import AdverseEventWatch, SweepRequest, SweepSummary, replacement_reasons
    from activities.replacement import ReplacementRequest, ReplacementStarted
    from workflows.activity_options import options_for
    from workflows.patches import SWEEP_STARTS_REPLACEMENT

#: The signal the sweep sends (``OversightWorkflow.compliance_alert``).
ALERT_SIGNAL = "compliance_alert"


@workflow.defn
class ComplianceSweepWorkflow:
    @workflow.run
    async def run(self, req: SweepRequest | None = None) -> SweepSummary:
        summary: SweepSummary = await workflow.execute_activity(
            "compliance_sweep", req or SweepRequest(), result_type=SweepSummary,
            **options_for("compliance_sweep").kwargs())
        for alert in summary.alerts:
            try:
                await workflow.get_external_workflow_handle(oversight_id_for(alert.clinic_key)).signal(
                    ALERT_SIGNAL, alert)
            except FailureError:
                workflow.logger.warning("oversight of %s not running: alert kept in the store", alert.clinic_key)
        suspended = replacement_reasons(summary.alerts)
        if suspended and workflow.patched(SWEEP_STARTS_REPLACEMENT):
            for clinic_key, reason in suspended.items():  # a new director is sought at once (unless already sought)
                await workflow.execute_activity(
                    "start_replacement", ReplacementRequest(clinic_key=clinic_key, reason=reason),
                    result_type=ReplacementStarted, **options_for("start_replacement").kwargs())
        return summary


@workflow.defn
class AdverseEventWorkflow:
    def __init__(self) -> None:
        self._acknowledged = False

    @workflow.run
    async def run(self, watch: AdverseEventWatch) -> str:
        left = max(watch.ack_due_at - workflow.now(), timedelta(0))
        try:
            await workflow.wait_condition(lambda: self._acknowledged, timeout=left)
            return "acknowledged"
        except TimeoutError:
            pass
        escalated = await workflow.execute_activity("escalate_adverse_event", watch, result_type=bool,
                                                    **options_for("escalate_adverse_event").kwargs())
        return "escalated" if escalated else "acknowledged"

    @workflow.signal
    def acknowledged(self) -> None:
        self._acknowledged = True


COMPLIANCE_WORKFLOWS = [ComplianceSweepWorkflow, AdverseEventWorkflow]
