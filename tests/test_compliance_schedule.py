"""On the real dev server: the `mdco-compliance-sweep` Schedule is created idempotently (ops' pause kept),
and a triggered run sweeps a real database with the real activities (registered as worker.py does,
the replacement activity included), suspends the state of a lapsed licence in the clinic's running
oversight workflow and starts a replacement placement for its director, and the audit packet then holds
the notices."""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit_packet import build_packet
from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from activities.replacement import ReplacementActivities
from config import Settings
from domain.onboarding import ChartReview, OnboardingInput, OnboardingStatus, OversightInput, Timing
from domain.oversight import OversightCompliance
from mdco_temporal.client import ensure_search_attributes
from mdco_temporal.schedules import COMPLIANCE_SCHEDULE_ID, ensure_compliance_schedule
from starter.binaries import temporal_cli
from store import oversight
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import FakeMailer, live_clinic
from workflows import search_attributes as sa
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow
from worker import WORKFLOWS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def started_input(handle) -> OnboardingInput:
    """The input the workflow was started with (its first history event)."""
    (payload,) = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes.input.payloads
    return pydantic_data_converter.payload_converter.from_payload(payload, OnboardingInput)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_schedule_runs_the_sweep_which_suspends_a_lapsed_state(engine, tmp_path):
    env = await WorkflowEnvironment.start_local(data_converter=pydantic_data_converter,
                                                dev_server_existing_path=temporal_cli())
    try:
        client = env.client
        await ensure_search_attributes(client)
        queue = f"tq-{uuid.uuid4().hex[:10]}"
        await ensure_compliance_schedule(client, queue)
        handle = client.get_schedule_handle(COMPLIANCE_SCHEDULE_ID)
        await handle.pause(note="ops looking")
        await ensure_compliance_schedule(client, queue)  # a second worker start: updated in place
        desc = await handle.describe()
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert desc.schedule.policy.catchup_window == timedelta(days=1)
        assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(days=1)]
        assert desc.schedule.action.workflow == "ComplianceSweepWorkflow"
        assert desc.schedule.state.paused and desc.schedule.state.note == "ops looking"
        await handle.unpause()

        key = live_clinic(engine, 21, licence_expires=date.today() - timedelta(days=1))
        mailer = FakeMailer()
        onboarding = OnboardingActivities(Settings(var_dir=tmp_path / "var", task_queue=queue), engine, mailer=mailer)
        acts = OversightActivities(onboarding)
        async with Worker(client, task_queue=queue, workflows=WORKFLOWS,
                          activities=onboarding.all() + acts.all() + ReplacementActivities(onboarding, client).all(),
                          activity_executor=ThreadPoolExecutor(4)):
            wf = await client.start_workflow(
                OversightWorkflow.run,
                OversightInput(clinic_key=key, physician_npi=npi_for(21), states=["TX", "OK"],
                               chart_review=ChartReview(), timing=Timing()),
                id=f"oversight-{key}", task_queue=queue)
            await handle.trigger()
            # the lapse suspends TX, then the sweep starts a replacement placement: "replacing"
            replacement_id = f"onboarding-{key}-r1"
            for _ in range(150):
                state = await wf.query(OversightWorkflow.compliance, result_type=OversightCompliance)
                if state.status == "replacing":
                    break
                await asyncio.sleep(0.2)
            assert state.status == "replacing" and state.suspended_states == ["TX"]
            for _ in range(50):
                attrs = (await wf.describe()).typed_search_attributes
                if attrs.get(sa.OVERSIGHT_STATUS) == "replacing":
                    break
                await asyncio.sleep(0.2)
            assert attrs.get(sa.OVERSIGHT_STATUS) == "replacing"
            assert [s["state"] for s in oversight.suspensions(engine, key)] == ["TX"]
            # the replacement placement runs on the worker: same intake, the lapsed director outgoing
            replacement = client.get_workflow_handle(replacement_id)
            desc = await replacement.describe()
            assert desc.status == WorkflowExecutionStatus.RUNNING and desc.workflow_type == "OnboardingWorkflow"
            started = await started_input(replacement)
            assert started.replacement is not None and started.replacement.outgoing_npi == npi_for(21)
            assert started.started_by == "compliance-sweep" and started.intake.clinic_key == key
            for _ in range(100):
                status = await replacement.query(OnboardingWorkflow.status, result_type=OnboardingStatus)
                if oversight.running_replacement(engine, key) == replacement_id:
                    break
                await asyncio.sleep(0.2)
            assert oversight.running_replacement(engine, key) == replacement_id
            assert status.stage.value not in ("launched", "cancelled", "blocked")
            assert all(o.npi != npi_for(21) for o in status.offers)  # never offered to the outgoing director
            await replacement.terminate("test over")
            await wf.signal(OversightWorkflow.end_engagement, "test over")
            await wf.result()

        out = tmp_path / "packet.zip"
        manifest = build_packet(engine, key, out)
        with zipfile.ZipFile(out) as z:
            notices = json.loads(z.read("renewal_notices.json"))
            assert [n["step"] for n in notices if n["credential"] == "license"] == ["lapsed"]
            assert any(e["action"] == "oversight_suspended" for e in json.loads(z.read("timeline.json")))
            assert any(e["action"] == "offboarded" for e in json.loads(z.read("timeline.json")))
        assert {f["path"] for f in manifest["files"]} >= {"index.html", "timeline.json", "renewal_notices.json"}
    finally:
        await env.shutdown()
