"""The daily sweep workflow signals the affected oversight workflows; a lapse suspends states (carried
through continue-as-new, shown in the query and the OversightStatus search attribute); the end of the
engagement runs the offboarding; an adverse event not acknowledged in time escalates. Time-skipping
server, fake activities under the real names."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio.worker import Worker

from domain.onboarding import ChartReview, OversightInput, OversightStatus, Timing
from domain.oversight import AdverseEventWatch, ComplianceAlert, OversightCompliance, SweepRequest, SweepSummary
from tests.fake_activities import FakeWorld
from workflows import search_attributes as sa
from workflows.compliance import AdverseEventWorkflow, ComplianceSweepWorkflow
from workflows.oversight import CYCLES_PER_RUN, OversightWorkflow

pytestmark = pytest.mark.timeout(120)


async def until(pred, handle_query, tries: int = 100):
    for _ in range(tries):
        value = await handle_query()
        if pred(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met; last {value!r}")


def oversight_input(key: str, **kw) -> OversightInput:
    return OversightInput(clinic_key=key, physician_npi="1000000001", states=["TX", "OK"],
                          chart_review=ChartReview(percent=10, cadence_days=30), timing=Timing(), **kw)


async def test_sweep_signals_oversight_a_lapse_suspends_and_survives_continue_as_new(time_env, task_queue,
                                                                                    unique_key):
    world = FakeWorld()
    client = time_env.client
    async with Worker(client, task_queue=task_queue, workflows=[OversightWorkflow, ComplianceSweepWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        handle = await client.start_workflow(OversightWorkflow.run, oversight_input(unique_key),
                                             id=f"oversight-{unique_key}", task_queue=task_queue)
        compliance = lambda: handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)  # noqa: E731
        first = await until(lambda c: c.next_chart_review_at is not None, compliance)
        assert first.status == "active" and first.suspended_states == []
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.OVERSIGHT_STATUS) == "active"
        assert desc.typed_search_attributes.get(sa.OVERSIGHT_NEXT_DUE) is not None

        now = (await handle.describe()).start_time
        world.sweep_alerts = [
            ComplianceAlert(clinic_key=unique_key, kind="renewal_notice", credential_key="license:1000000001:TX:-",
                            step="30", at=now),
            ComplianceAlert(clinic_key=unique_key, kind="lapse", credential_key="dea:1000000001:TX:-", step="lapsed",
                            suspended_states=["TX"], at=now),
            ComplianceAlert(clinic_key="no-such-clinic", kind="exclusion", credential_key="exclusion:1",
                            suspended_states=["FL"], at=now),  # its oversight is not running: skipped
        ]
        summary = await client.execute_workflow(ComplianceSweepWorkflow.run, SweepRequest(),
                                                id=f"sweep-{unique_key}", task_queue=task_queue,
                                                result_type=SweepSummary)
        assert len(summary.alerts) == 3 and len(world.called("compliance_sweep")) == 1
        started = sorted(r.clinic_key for r in world.called("start_replacement"))
        assert started == sorted([unique_key, "no-such-clinic"])  # a suspension seeks a new director at once
        state = await until(lambda c: c.status == "suspended", compliance)
        assert state.suspended_states == ["TX"] and [a.kind for a in state.alerts] == ["renewal_notice", "lapse"]
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.OVERSIGHT_STATUS) == "suspended"

        # a year of cycles later the run continued as new: the suspension travelled with it
        await time_env.sleep(timedelta(days=30 * CYCLES_PER_RUN + 1))
        status = await until(lambda s: s.cycles_done >= CYCLES_PER_RUN,
                             lambda: handle.query(OversightWorkflow.status, result_type=OversightStatus))
        assert status.cycles_done >= CYCLES_PER_RUN
        assert (await handle.describe()).run_id != handle.first_execution_run_id
        state = await until(lambda c: c.next_chart_review_at is not None, compliance)
        assert state.status == "suspended" and state.suspended_states == ["TX"]
        history = await client.get_workflow_handle(handle.id).fetch_history()
        assert len(history.events) < 200  # the new run's history is small

        # offboarding: the engagement ends, the offboarding activity runs once, the workflow completes
        await handle.signal(OversightWorkflow.end_engagement, "clinic closed")
        result = await handle.result()
        assert result.clinic_key == unique_key
        (off,) = world.called("offboard_clinic")
        assert (off.clinic_key, off.physician_npi, off.reason) == (unique_key, "1000000001", "clinic closed")
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.OVERSIGHT_STATUS) == "offboarded"


async def test_an_unacknowledged_sentinel_event_escalates_at_its_deadline(time_env, task_queue, unique_key):
    world = FakeWorld()
    client = time_env.client
    async with Worker(client, task_queue=task_queue, workflows=[AdverseEventWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        start = await client.start_workflow(AdverseEventWorkflow.run, AdverseEventWatch(
            event_id=f"{unique_key}-ae-1", clinic_key=unique_key, severity="sentinel",
            ack_due_at=(await time_env.get_current_time()) + timedelta(hours=1)),
            id=f"adverse-event-{unique_key}-1", task_queue=task_queue)
        acked = await client.start_workflow(AdverseEventWorkflow.run, AdverseEventWatch(
            event_id=f"{unique_key}-ae-2", clinic_key=unique_key, severity="serious",
            ack_due_at=(await time_env.get_current_time()) + timedelta(hours=24)),
            id=f"adverse-event-{unique_key}-2", task_queue=task_queue)
        await acked.signal(AdverseEventWorkflow.acknowledged)
        assert await acked.result() == "acknowledged"
        assert world.called("escalate_adverse_event") == []
        assert await start.result() == "escalated"
        (watch,) = world.called("escalate_adverse_event")
        assert watch.event_id == f"{unique_key}-ae-1"
