"""OversightWorkflow: monthly chart reviews on a timer, a status query, bounded history."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio.worker import Worker

from domain.onboarding import ChartReview, OversightInput, OversightStatus, Timing
from tests.fake_activities import FakeWorld
from workflows.oversight import CYCLES_PER_RUN, OversightWorkflow

pytestmark = pytest.mark.timeout(120)


async def test_chart_reviews_follow_the_plan_cadence_and_history_stays_bounded(time_env, task_queue, unique_key):
    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        handle = await time_env.client.start_workflow(
            OversightWorkflow.run,
            OversightInput(clinic_key=unique_key, physician_npi="1000000001", states=["TX"],
                           chart_review=ChartReview(percent=20, cadence_days=30),
                           timing=Timing(protocol_review_every=timedelta(days=400))),
            id=f"oversight-{unique_key}", task_queue=task_queue)
        await time_env.sleep(timedelta(days=29))
        status = await handle.query(OversightWorkflow.status, result_type=OversightStatus)
        assert status.cycles_done == 0 and world.called("open_chart_review") == []
        await time_env.sleep(timedelta(days=2))
        for _ in range(50):
            status = await handle.query(OversightWorkflow.status, result_type=OversightStatus)
            if status.cycles_done == 1:
                break
            await asyncio.sleep(0.1)
        assert status.cycles_done == 1
        (review,) = world.called("open_chart_review")
        assert review.sample_percent == 20 and review.cycle == 1
        assert review.protocol_review_every == timedelta(days=400)  # the Timing's interval, kept per clinic
        # a year later the run continued as new: same workflow id, fresh history, counter carried over
        await time_env.sleep(timedelta(days=30 * CYCLES_PER_RUN))
        for _ in range(50):
            status = await handle.query(OversightWorkflow.status, result_type=OversightStatus)
            if status.cycles_done >= CYCLES_PER_RUN + 1:
                break
            await asyncio.sleep(0.1)
        assert status.cycles_done >= CYCLES_PER_RUN + 1
        desc = await time_env.client.get_workflow_handle(handle.id).describe()
        assert desc.run_id != handle.first_execution_run_id
        assert len(status.open_reviews) == 12  # the open reviews travelled through continue-as-new too
        assert status.open_reviews[-1] == f"{unique_key}-cr-{status.cycles_done}"
        await handle.signal(OversightWorkflow.end_engagement, "test over")


async def test_the_event_acknowledgement_deadline_comes_from_the_clinics_timing_else_the_policy(
        time_env, task_queue, unique_key):
    from domain.renewals import policy
    from starter.oversight_cli import ack_deadline

    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        await time_env.client.start_workflow(
            OversightWorkflow.run,
            OversightInput(clinic_key=unique_key, physician_npi="1000000001", states=["TX"],
                           timing=Timing(event_ack={"sentinel": timedelta(minutes=20)})),
            id=f"oversight-{unique_key}", task_queue=task_queue)
        assert await ack_deadline(time_env.client, unique_key, "sentinel") == timedelta(minutes=20)
        assert await ack_deadline(time_env.client, unique_key, "serious") is None  # the policy's 24 h applies
        assert await ack_deadline(time_env.client, f"{unique_key}-none", "sentinel") is None  # no oversight running
    assert policy().ack_deadline("serious") == timedelta(hours=24)
