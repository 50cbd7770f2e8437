"""``ReservationReconciliationWorkflow``: one reconciliation pass, started by the Temporal Schedule
``mdco-reservation-reconcile`` (mdco_temporal/schedules.py). Orchestration only: the work, and why a
reservation is released or kept, is in activities/reconcile.py."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.reconcile import ReconcileSummary
    from workflows.activity_options import ActivityOptions

#: One pass over every open reservation; heartbeats per reservation; three tries, then the next
#: scheduled run tries again anyway.
RECONCILE = ActivityOptions(start_to_close=timedelta(minutes=5), schedule_to_close=None, maximum_attempts=3,
                            heartbeat=timedelta(seconds=30))


@workflow.defn
class ReservationReconciliationWorkflow:
    @workflow.run
    async def run(self) -> ReconcileSummary:
        return await workflow.execute_activity("reconcile_reservations", result_type=ReconcileSummary,
                                               **RECONCILE.kwargs())
