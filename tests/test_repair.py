"""``mdco repair`` on a run the platform really wedged (dev server, the real OnboardingWorkflow, fake activities).

The wedge is temporalio 1.35's, reproduced here on purpose (mdco_temporal/repair.py says how): a status
query dispatched while no workflow worker polls, a timer firing meanwhile, an accept sent meanwhile, then
a fresh worker. The history it writes fails the deployed code's own replay, and a restarted worker fails
every workflow task. The repair resets the run before the divergence; the accept is re-applied and the
onboarding goes on to launch. If the trigger stops reproducing, the SDK changed: the first assertion
says so, and README "Repairing a stuck workflow" should be revisited.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowQueryFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from google.protobuf import json_format

from domain.codes import workflow_id_for
from domain.intake import Intake
from domain.messages import PhysicianAnswer
from domain.onboarding import OnboardingInput, OnboardingStatus, Timing
from mdco_temporal import repair
from api import service
from mdco_temporal.client import STATUS_QUERY_TIMEOUT, STICKY_QUEUE_TIMEOUT, ensure_search_attributes
from starter.binaries import temporal_cli
from tests.fake_activities import FakeWorld, sample_intake
from tests.test_workflow_onboarding import play_to_launch, until
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

WORKFLOWS = [OnboardingWorkflow, OversightWorkflow]
STUCK_HISTORY = Path(__file__).parent / "data" / "stuck_nondeterminism_history.json"


def test_plan_resets_to_the_task_that_wrote_the_diverging_command():
    """A history bench.chaos wedged (update accepted after the main loop's commands): reset to the task
    whose completion wrote event 127, re-applying what came after it."""
    events = json_format.Parse(STUCK_HISTORY.read_text(), History()).events
    failure = ("[TMPRL1100] Nondeterminism error: Update machine does not handle this event: "
               "HistoryEvent(id: 127, UpsertWorkflowSearchAttributes)")
    plan = repair.plan_from_history("onboarding-x", "run-1", events, failure)
    assert (plan.diverging_event_id, plan.reset_to_event_id, plan.repairable) == (127, 126, True)
    assert (plan.signals_reapplied, plan.updates_reapplied) == (3, 1)
    assert plan.activities_rerun[:3] == ["record_decision", "prepare_protocol_packet", "send_agreement"]
    assert "reset to event 126" in plan.summary()


def test_plan_refuses_what_a_reset_cannot_fix():
    events = json_format.Parse(STUCK_HISTORY.read_text(), History()).events
    assert repair.plan_from_history("w", "r", events, "").summary().startswith("replays cleanly")
    other = repair.plan_from_history("w", "r", events, "ValueError: bad input")
    assert not other.repairable and "another reason" in other.refused
    nameless = repair.plan_from_history("w", "r", events, "[TMPRL1100] Nondeterminism error: something")
    assert not nameless.repairable and "names no event" in nameless.refused
    first = repair.plan_from_history("w", "r", events, "Nondeterminism: HistoryEvent(id: 2, WorkflowTaskScheduled)")
    assert not first.repairable and "no completed workflow task" in first.refused


def _worker(client, queue: str, world: FakeWorld | None = None) -> Worker:
    """Workflows (``world`` None) or the fake activities (workflows None) on ``queue``."""
    if world is None:
        return Worker(client, task_queue=queue, workflows=WORKFLOWS)
    return Worker(client, task_queue=queue, activities=world.activities(), activity_executor=ThreadPoolExecutor(4))


async def _killable_worker(address: str, queue: str, sticky_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.workflow_worker_proc", address, queue, str(sticky_s)],
                            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    assert line.strip() == "polling", line
    return proc


async def _raw_status(handle) -> OnboardingStatus:
    return await handle.query(OnboardingWorkflow.status, result_type=OnboardingStatus)


async def _wedge(env: WorkflowEnvironment, queue: str, key: str, sticky: float = 4.0, ask_status=_raw_status,
                 then=None):
    """Drive the platform bug as a worker crash does (the sticky timeouts order it): the workflow worker is
    SIGKILLed; a status query waits on its sticky queue; the SLA at-risk timer fires and its task waits
    there too; an accept is sent; the query times out to the normal queue first, where a fresh worker
    answers it from the full history (applying the timer), then takes the task carrying the accept.
    ``then(handle, npi)`` runs while that worker (which still caches the run) polls.
    Returns the handle, the accepted NPI and what the status query gave (a status or the error)."""
    client, at_risk = env.client, timedelta(seconds=10)
    timing = Timing(sla_at_risk=at_risk, offer_ttl=timedelta(hours=1))
    intake = Intake.model_validate(sample_intake(key))
    proc = await _killable_worker(client.service_client.config.target_host, queue, sticky)
    try:
        handle = await client.start_workflow(
            OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=timing, offer_fanout=1),
            id=workflow_id_for(key), task_queue=queue)
        st = await until(handle, lambda s: s.offers and s.waiting_on == "physician")
        fires_in = (st.started_at + at_risk - datetime.now(timezone.utc)).total_seconds()
        assert fires_in > 2.5, "the onboarding took too long to send its offer"
        await asyncio.sleep(fires_in - 2.0)  # kill at T, the timer fires at T + 2 s
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    query = asyncio.create_task(ask_status(handle))
    async with _worker(client, queue):
        await asyncio.sleep(3.0)  # the timer fired 1 s ago; its task (until T + 6 s) and the query (T + 4 s) wait
        # on the dead sticky queue: 2 s margins either way
        accept = asyncio.create_task(handle.execute_update(OnboardingWorkflow.accept_offer,
                                                           PhysicianAnswer(npi=st.offers[0].npi)))
        asked = (await asyncio.gather(asyncio.wait_for(query, 30), return_exceptions=True))[0]
        assert (await asyncio.wait_for(accept, 30)).accepted
        if then is not None:
            await then(handle, st.offers[0].npi)
    return handle, st.offers[0].npi, asked


@pytest.fixture
async def dev():
    """A dev server of its own, a task queue and the fake activities polling it (no workflow worker)."""
    env = await WorkflowEnvironment.start_local(data_converter=pydantic_data_converter,
                                                dev_server_existing_path=temporal_cli())
    try:
        queue, world = f"tq-{uuid.uuid4().hex[:10]}", FakeWorld()
        await ensure_search_attributes(env.client)
        async with _worker(env.client, queue, world):
            yield env, queue, world
    finally:
        await env.shutdown()


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_repair_resets_a_wedged_onboarding_which_then_launches(dev):
    env, queue, world = dev
    client = env.client
    handle, npi, asked = await _wedge(env, queue, f"clinic-{uuid.uuid4().hex[:8]}")
    assert isinstance(asked, OnboardingStatus), asked
    failure = await repair.replay_failure(client, await handle.fetch_history(), WORKFLOWS)
    assert "Nondeterminism" in failure, (
        "temporalio no longer writes a history its replay rejects in this scenario: revisit "
        "mdco_temporal/repair.py and README 'Repairing a stuck workflow'")

    async with _worker(client, queue):  # a restarted worker: every workflow task of the run fails now
        await handle.signal(OnboardingWorkflow.roster_updated)
        stuck: list[str] = []
        for _ in range(200):  # the server reports the failing task in visibility after a few attempts
            stuck = await repair.stuck_workflow_ids(client, [w.__name__ for w in WORKFLOWS])
            if stuck:
                break
            await asyncio.sleep(0.3)
        assert stuck == [handle.id]
        old_server = "ExecutionStatus = 'Running' AND MdcoNoSuchAttribute IS NOT NULL"  # rejected, as by 1.27
        assert await repair.stuck_workflow_ids(client, [w.__name__ for w in WORKFLOWS], old_server) == [handle.id]

        plan = await repair.diagnose(client, handle.id, WORKFLOWS)
        assert plan.repairable and plan.updates_reapplied == 1, plan
        assert plan.reset_to_event_id < plan.diverging_event_id
        new_run = await repair.reset(client, plan, "test: wedged by the platform", identity="test")
        assert [u.input.name for u in plan.updates] == ["accept_offer"]
        assert await repair.resend_rejected_updates(client, plan, new_run, identity="test") == []  # re-applied
        with pytest.raises(ValueError, match="no longer the running one"):  # one reset per plan
            await repair.reset(client, plan, "again", identity="test")
        assert (await handle.describe()).run_id == new_run

        fresh = client.get_workflow_handle_for(OnboardingWorkflow.run, handle.id)
        st = await until(fresh, lambda s: s.physician_npi == npi and s.stage != "matching", timeout=60)
        assert [o.status for o in st.offers] == ["accepted"]  # the accept was re-applied
        assert world.reservations[handle.id] == npi
        final = await play_to_launch(None, fresh, npi, accept=False)
        assert final.stage == "launched"
    assert await repair.replay_failure(client, await fresh.fetch_history(), WORKFLOWS) == ""


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_the_api_status_gives_up_before_the_query_could_wedge_the_run(dev):
    """The same crash through ``service.get_status`` (what the API and CLI call), with the worker's real sticky
    timeout: the query gives up (503) before the server hands it to a fresh worker, so the accept is applied
    with the timer in one task and the history replays."""
    assert STATUS_QUERY_TIMEOUT < STICKY_QUEUE_TIMEOUT
    env, queue, _ = dev
    handle, npi, asked = await _wedge(env, queue, f"clinic-{uuid.uuid4().hex[:8]}",
                                      sticky=STICKY_QUEUE_TIMEOUT.total_seconds(),
                                      ask_status=lambda h: service.get_status(env.client, h.id))
    assert isinstance(asked, service.Unavailable) and "no worker answered within 5 s" in str(asked), asked
    assert await repair.replay_failure(env.client, await handle.fetch_history(), WORKFLOWS) == ""
    async with _worker(env.client, queue):  # a restarted worker replays it and goes on
        st = await until(handle, lambda s: s.physician_npi == npi and s.stage != "matching")
    assert [o.status for o in st.offers] == ["accepted"]


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_a_launched_onboarding_whose_history_cannot_replay_still_has_its_status(dev):
    """The worker that wrote the out-of-order history still caches the run and plays it to launch; afterwards a
    query cannot replay it, and the status comes from the run's result instead."""
    env, queue, _ = dev

    async def launch(handle, npi):
        typed = env.client.get_workflow_handle_for(OnboardingWorkflow.run, handle.id)
        assert (await play_to_launch(None, typed, npi, accept=False)).stage == "launched"

    handle, _, _ = await _wedge(env, queue, f"clinic-{uuid.uuid4().hex[:8]}", then=launch)
    async with _worker(env.client, queue):
        with pytest.raises(WorkflowQueryFailedError, match="Nondeterminism"):
            await _raw_status(handle)
        st = await service.get_status(env.client, handle.id)
    assert st.stage == "launched" and [o.status for o in st.offers] == ["accepted"]


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_mdco_repair_leaves_healthy_runs_alone_and_refuses_bad_ids(stack, tmp_path):
    from tests.test_integration import intake_file, mdco

    settings, env = stack
    key = f"repair-{uuid.uuid4().hex[:8]}"
    wf = json.loads(mdco(env, "onboard", str(intake_file(tmp_path, "glow-austin", key)), "--json").stdout)["workflow_id"]
    assert wf == workflow_id_for(key)
    rows = json.loads(mdco(env, "repair", key, "--apply", "--json").stdout)
    assert rows == [{"workflow_id": wf, "run_id": rows[0]["run_id"], "new_run_id": "", "updates_sent_again": [],
                     "plan": "replays cleanly with the deployed code: nothing to repair"}]
    assert wf not in mdco(env, "repair").stdout  # not reported stuck by the server either
    for args, why in ((("",), "id: must not be empty"),
                      (("onboarding-nobody-here",), "id: no workflow onboarding-nobody-here"),
                      ((key, "--apply", "--reason", " "), "reason: must not be empty")):
        proc = mdco(env, "repair", *args, check=False)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_repair_sends_again_an_answer_the_reset_run_rejected(dev):
    """The protocols are prepared while the worker is dead; a query answered by a fresh worker shows them (it
    applied the activity's completion early), so the physician approves; the history cannot replay. After the
    reset the server re-applies the approval, but the new run validates it before the protocols arrive in the
    same task and rejects it: the repair sends it again, and it is accepted."""
    env, queue, world = dev
    client, key = env.client, f"clinic-{uuid.uuid4().hex[:8]}"
    world.delays["prepare_protocols"] = 2.0
    intake = Intake.model_validate(sample_intake(key))
    handle = await client.start_workflow(
        OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=Timing(), offer_fanout=1),
        id=workflow_id_for(key), task_queue=queue)
    proc = await _killable_worker(client.service_client.config.target_host, queue, 4.0)
    try:
        st = await until(handle, lambda s: s.offers and s.waiting_on == "physician")
        npi = st.offers[0].npi
        assert (await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))).accepted
        for _ in range(100):  # prepare_protocols started: the task that scheduled it is done, none is pending
            if world.called("prepare_protocols"):
                break
            await asyncio.sleep(0.05)
    finally:  # killed at T while prepare_protocols runs (it completes at about T + 2 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    query = asyncio.create_task(_raw_status(handle))  # on the dead sticky queue until T + 4 s
    async with _worker(client, queue):
        shown = await asyncio.wait_for(query, 30)
        assert shown.protocols, "the fresh worker did not apply the completion to answer the query"
        await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    assert "Nondeterminism" in await repair.replay_failure(client, await handle.fetch_history(), WORKFLOWS)

    async with _worker(client, queue):
        plan = await repair.diagnose(client, handle.id, WORKFLOWS)
        assert plan.repairable and [u.input.name for u in plan.updates] == ["approve_protocols"], plan
        new_run = await repair.reset(client, plan, "test", identity="test")
        assert await repair.resend_rejected_updates(client, plan, new_run, identity="test") == [
            "approve_protocols sent again: accepted"]
        st = await until(handle, lambda s: s.stage not in ("protocol_setup", "matching"), timeout=60)
    assert st.physician_npi == npi
