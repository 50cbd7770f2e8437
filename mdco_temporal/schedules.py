"""Temporal Schedules of mdco-onboarding."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleIntervalSpec,
    ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec, ScheduleUpdate, ScheduleUpdateInput,
)

from workflows.reconcile import ReservationReconciliationWorkflow

RECONCILE_SCHEDULE_ID = "mdco-reservation-reconcile"
#: The server refuses a catchup window under 10 s.
MIN_CATCHUP_WINDOW = timedelta(seconds=10)


async def ensure_reconcile_schedule(client: Client, task_queue: str,
                                    every: timedelta = timedelta(minutes=15)) -> None:
    """Create (or bring up to date) the schedule that runs ``ReservationReconciliationWorkflow`` every
    ``every``; safe to call at every worker start, from several workers at once.

    Overlap policy SKIP: a run still going when the next is due (a slow DocuSign, a large backlog)
    makes the next one skip instead of queueing behind it; runs never pile up, and two passes never
    race to release the same reservation.

    Catchup window of one interval: after a Temporal outage, only a run missed within the last
    ``every`` is started late, not one per missed interval. One pass reconciles every open
    reservation at once, so a single catch-up run does all that the missed ones would have done.

    Already there (``ScheduleAlreadyRunningError``): its spec, action and policy are updated to these
    (a changed interval or task queue takes effect); its state (paused by ops, notes) is kept.
    """
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(ReservationReconciliationWorkflow.run,
                                           id=f"{RECONCILE_SCHEDULE_ID}-run", task_queue=task_queue,
                                           execution_timeout=timedelta(minutes=30)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, MIN_CATCHUP_WINDOW)),
    )
    await _create_or_update(client, RECONCILE_SCHEDULE_ID, schedule)


async def _create_or_update(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create the schedule; already there: its spec, action and policy become these, its state
    (paused by ops, notes) is kept."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
            existing = current.description.schedule
            return ScheduleUpdate(schedule=Schedule(action=schedule.action, spec=schedule.spec,
                                                    policy=schedule.policy, state=existing.state))

        await client.get_schedule_handle(schedule_id).update(keep_state)


COMPLIANCE_SCHEDULE_ID = "mdco-compliance-sweep"


async def ensure_compliance_schedule(client: Client, task_queue: str, every: timedelta = timedelta(days=1)) -> None:
    """Create (or bring up to date) the schedule that runs ``ComplianceSweepWorkflow`` daily; safe to
    call at every worker start, from several workers at once.

    Overlap policy SKIP: a sweep still running when the next is due is left to finish and the new one
    is skipped; two sweeps never send the same ladder step side by side (the store would de-duplicate
    them anyway) and a slow day never builds a queue.

    Catchup window of one day: after a Temporal outage, the most recent missed sweep runs late (and only
    one of them). A sweep works from the ladder *position* on the day it runs, so one late run sends
    every notice that is still current; a missed older step is superseded, never sent stale, and a
    lapse is caught whenever the next sweep runs.
    """
    from workflows.compliance import ComplianceSweepWorkflow

    schedule = Schedule(
        action=ScheduleActionStartWorkflow(ComplianceSweepWorkflow.run, id=f"{COMPLIANCE_SCHEDULE_ID}-run",
                                           task_queue=task_queue, execution_timeout=timedelta(hours=3)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, MIN_CATCHUP_WINDOW)),
    )
    await _create_or_update(client, COMPLIANCE_SCHEDULE_ID, schedule)
