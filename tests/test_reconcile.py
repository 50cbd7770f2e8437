"""Reconciliation of leaked reservations: a real database (SQLite and Postgres), the real time-skipping
Temporal server for workflow states, the real dev server for the schedule."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update
from temporalio.client import ScheduleOverlapPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.onboarding import OnboardingActivities
from activities.reconcile import reconcile_registrations
from config import Settings
from domain.intake import Intake
from domain.reconcile import ReconcileSummary
from mdco_temporal.schedules import RECONCILE_SCHEDULE_ID, ensure_reconcile_schedule
from starter.binaries import temporal_cli
from starter.demo import DEMO_DIR
from store import audit, onboardings, roster
from store import tables as t
from store.common import sql_table
from store.tables import now_utc
from tests.db_fixtures import npi_for, physician_record
from workflows.reconcile import ReservationReconciliationWorkflow

pytestmark = pytest.mark.timeout(120)


def reserve(engine, workflow_id: str, n: int, age: timedelta = timedelta(minutes=5)) -> None:
    """Physician ``n`` reserved by ``workflow_id``, ``age`` ago."""
    assert roster.reserve_physician(engine, workflow_id, npi_for(n)).ok
    res = sql_table(t.CapacityReservation)
    with engine.begin() as conn:
        conn.execute(update(res).where(res.c.workflow_id == workflow_id).values(reserved_at=now_utc() - age))


def onboarding_of(engine, workflow_id: str, stage: str) -> str:
    """A clinic and its onboarding record at ``stage``; returns the clinic key."""
    key = f"clinic-{uuid.uuid4().hex[:10]}"
    data = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    data["clinic_key"] = key
    onboardings.upsert_clinic(engine, Intake.model_validate(data))
    onboardings.record_onboarding(engine, workflow_id, key, stage=stage, started_at=now_utc() - timedelta(hours=1))
    return key


def active(engine, n: int) -> int:
    return roster.get_physician(engine, npi_for(n)).active_clinics


async def test_reconcile_releases_closed_onboardings_only(engine, tmp_path, time_env, task_queue):
    client = time_env.client
    roster.upsert_physicians(engine, [physician_record(n) for n in range(1, 7)])
    onboarding = OnboardingActivities(Settings(var_dir=tmp_path / "var"), engine)
    run_id = uuid.uuid4().hex[:8]
    nobody = f"nobody-{run_id}"  # no worker polls it: workflows started there stay RUNNING

    missing = f"onboarding-missing-{run_id}"  # never existed in Temporal
    reserve(engine, missing, 1)

    running = f"onboarding-running-{run_id}"
    await client.start_workflow("OnboardingWorkflow", id=running, task_queue=nobody)
    onboarding_of(engine, running, "matching")
    reserve(engine, running, 2)

    terminated = f"onboarding-terminated-{run_id}"
    handle = await client.start_workflow("OnboardingWorkflow", id=terminated, task_queue=nobody)
    clinic = onboarding_of(engine, terminated, "protocol_setup")
    sent = now_utc() - timedelta(hours=1)
    onboardings.upsert_offer(engine, terminated, npi_for(3), "open", sent, sent + timedelta(hours=4))
    onboardings.upsert_offer(engine, terminated, npi_for(4), "declined", sent, sent + timedelta(hours=4),
                             answered_at=sent, reason="busy")
    reserve(engine, terminated, 3)
    await handle.terminate("from the UI")

    launched = f"onboarding-launched-{run_id}"  # its workflow is gone from Temporal too: launched keeps it
    onboarding_of(engine, launched, "launched")
    reserve(engine, launched, 5)

    young = f"onboarding-young-{run_id}"  # may be mid-start
    reserve(engine, young, 6, age=timedelta(seconds=5))

    workflows, activities = reconcile_registrations(onboarding, client)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(client, task_queue=task_queue, workflows=workflows, activities=activities,
                          activity_executor=executor):
            first = await client.execute_workflow(ReservationReconciliationWorkflow.run,
                                                  id=f"reconcile-{run_id}-1", task_queue=task_queue)
            assert isinstance(first, ReconcileSummary)
            assert first.checked == 5 and sorted(first.released) == sorted([missing, terminated]) and first.kept == 3

            assert [active(engine, n) for n in range(1, 7)] == [0, 1, 0, 0, 1, 1]
            assert {o.npi: o.status for o in onboardings.list_offers(engine, terminated)} == \
                {npi_for(3): "withdrawn", npi_for(4): "declined"}
            record = onboardings.get_onboarding(engine, terminated)
            assert record["stage"] == "cancelled"
            assert record["cancel_reason"] == "workflow terminated without cleanup (reconciled)"
            assert onboardings.get_clinic(engine, clinic)["status"] == "cancelled"
            assert onboardings.get_onboarding(engine, missing) is None  # no record to mark
            assert onboardings.get_onboarding(engine, running)["stage"] == "matching"
            assert onboardings.get_onboarding(engine, launched)["stage"] == "launched"
            trail = {wf: [(e["actor"], e["action"]) for e in audit.list_audit(engine, wf)]
                     for wf in (missing, terminated)}
            assert trail == {wf: [("reconciler", "onboarding_cancelled")] for wf in (missing, terminated)}

            second = await client.execute_workflow(ReservationReconciliationWorkflow.run,
                                                   id=f"reconcile-{run_id}-2", task_queue=task_queue)
            assert second == ReconcileSummary(checked=3, released=[], kept=3)
            assert [active(engine, n) for n in range(1, 7)] == [0, 1, 0, 0, 1, 1]
            assert {wf: [(e["actor"], e["action"]) for e in audit.list_audit(engine, wf)]
                    for wf in (missing, terminated)} == trail
            assert onboardings.get_onboarding(engine, terminated) == record


@pytest.mark.integration
async def test_reconcile_schedule_is_created_once_and_updated_in_place():
    env = await WorkflowEnvironment.start_local(data_converter=pydantic_data_converter,
                                                dev_server_existing_path=temporal_cli())
    try:
        client = env.client
        queue = f"tq-{uuid.uuid4().hex[:10]}"
        await ensure_reconcile_schedule(client, queue)
        handle = client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
        await handle.pause(note="ops looking")
        await ensure_reconcile_schedule(client, queue, every=timedelta(minutes=5))  # already there: updated

        desc = await handle.describe()
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert desc.schedule.policy.catchup_window == timedelta(minutes=5)
        assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(minutes=5)]
        assert desc.schedule.action.task_queue == queue
        assert desc.schedule.action.workflow == "ReservationReconciliationWorkflow"
        assert desc.schedule.state.paused and desc.schedule.state.note == "ops looking"  # ops' pause kept
    finally:
        await env.shutdown()
