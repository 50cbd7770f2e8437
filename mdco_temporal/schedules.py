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
    try:
        await client.create_schedule(RECONCILE_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
            existing = current.description.schedule
            return ScheduleUpdate(schedule=Schedule(action=schedule.action, spec=schedule.spec,
                                                    policy=schedule.policy, state=existing.state))

        await client.get_schedule_handle(RECONCILE_SCHEDULE_ID).update(keep_state)
