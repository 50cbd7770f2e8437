"""On the real dev server: the `mdco-compliance-sweep` Schedule is created idempotently (ops' pause kept),
and a triggered run sweeps a real database with the real activities, suspends the state of a lapsed
licence in the clinic's running oversight workflow, and the audit packet then holds the notices."""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit_packet import build_packet
from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from config import Settings
from domain.onboarding import ChartReview, OversightInput, Timing
from domain.oversight import OversightCompliance
from mdco_temporal.client import ensure_search_attributes
from mdco_temporal.schedules import COMPLIANCE_SCHEDULE_ID, ensure_compliance_schedule
from starter.binaries import temporal_cli
from store import oversight
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import FakeMailer, live_clinic
from workflows import search_attributes as sa
from workflows.compliance import COMPLIANCE_WORKFLOWS
from workflows.oversight import OversightWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


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
        acts = OversightActivities(OnboardingActivities(Settings(var_dir=tmp_path / "var"), engine, mailer=mailer))
        async with Worker(client, task_queue=queue, workflows=[OversightWorkflow, *COMPLIANCE_WORKFLOWS],
                          activities=acts.all(), activity_executor=ThreadPoolExecutor(4)):
            wf = await client.start_workflow(
                OversightWorkflow.run,
                OversightInput(clinic_key=key, physician_npi=npi_for(21), states=["TX", "OK"],
                               chart_review=ChartReview(), timing=Timing()),
                id=f"oversight-{key}", task_queue=queue)
            await handle.trigger()
            for _ in range(150):
                state = await wf.query(OversightWorkflow.compliance, result_type=OversightCompliance)
                if state.status == "suspended":
                    break
                await asyncio.sleep(0.2)
            assert state.status == "suspended" and state.suspended_states == ["TX"]
            for _ in range(50):
                attrs = (await wf.describe()).typed_search_attributes
                if attrs.get(sa.OVERSIGHT_STATUS) == "suspended":
                    break
                await asyncio.sleep(0.2)
            assert attrs.get(sa.OVERSIGHT_STATUS) == "suspended"
            assert [s["state"] for s in oversight.suspensions(engine, key)] == ["TX"]
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
