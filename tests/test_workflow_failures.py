"""Failures stop cleanly and answers are race-free (time-skipping server, fake activities under the
real names): blocked -> retry, blocked -> cancel, cancel racing an accept, idempotent updates, the
SLA clock when workers start late, quiet roster waits that continue-as-new."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.errors import BusinessFailureInterceptor
from api import service
from api.idempotency import use_key
from domain.codes import workflow_id_for
from domain.intake import Intake
from domain.messages import CancelRequest, PhysicianAnswer, RetryRequest
from domain.onboarding import OnboardingInput, Timing
from tests.fake_activities import FakeWorld, sample_intake
from tests.test_workflow_onboarding import Harness, harness, play_to_launch, rejected, until  # noqa: F401
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

pytestmark = pytest.mark.timeout(120)


async def _blocked_in_protocols(h: Harness, key: str):
    h.world.failures["prepare_protocols"] = "template for testosterone_hrt has no TX overlay"
    handle = await h.start(key)
    st = await until(handle, lambda s: s.offers)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "blocked")
    return handle, st, npi


async def test_business_failure_blocks_then_ops_retry_the_step(harness: Harness, unique_key):
    handle, st, npi = await _blocked_in_protocols(harness, unique_key)
    assert st.blocked_stage == "protocol_setup" and st.waiting_on == "ops"
    assert "no TX overlay" in st.waiting_reason
    assert any(n.to_role == "ops" and n.key.startswith("blocked-protocol_setup") for n in harness.world.notices)
    desc = await handle.describe()
    assert desc.status.name == "RUNNING"  # never FAILED for a business reason
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi), "no protocols await")
    harness.world.failures.clear()  # ops fixed the template
    assert await handle.execute_update(OnboardingWorkflow.retry, RetryRequest(reason="overlay added")) == "retrying"
    await rejected(handle, OnboardingWorkflow.retry, RetryRequest(reason="again"), "only a blocked onboarding")
    st = await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    assert st.blocked_stage == "" and st.physician_npi == npi
    final = await play_to_launch(harness, handle, npi, accept=False)
    assert final.stage == "launched"
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_blocked_then_cancel_releases_capacity(harness: Harness, unique_key):
    handle, _, npi = await _blocked_in_protocols(harness, unique_key)
    assert harness.world.reservations[workflow_id_for(unique_key)] == npi
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="clinic walked away"))
    final = await handle.result()
    assert final.stage == "cancelled" and final.cancel_reason == "clinic walked away"
    assert workflow_id_for(unique_key) in harness.world.released
    assert workflow_id_for(unique_key) not in harness.world.reservations
    assert harness.world.capacity[npi] == 1


async def test_notice_failure_never_fails_an_onboarding(harness: Harness, unique_key):
    harness.world.failures["notify"] = "SMTP relay refuses the ops address"
    handle = await harness.start(unique_key, fanout=2)
    st = await until(handle, lambda s: len(s.offers) == 2)
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=st.offers[0].npi))
    final = await play_to_launch(harness, handle, st.offers[1].npi)  # withdrawal notice fails: noted, skipped
    assert final.stage == "launched"
    assert any("notify failed and was skipped" in t.event for t in final.timeline)
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_cancel_racing_an_accept_releases_the_reservation(harness: Harness, unique_key):
    harness.world.delays["reserve_physician"] = 1.0  # the accept holds the lock while capacity is reserved
    handle = await harness.start(unique_key, fanout=2)
    st = await until(handle, lambda s: len(s.offers) == 2)
    first, second = st.offers[0].npi, st.offers[1].npi
    accept = asyncio.create_task(handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=first)))
    while not harness.world.called("reserve_physician"):
        await asyncio.sleep(0.05)
    assert await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="deal lost")) == "cancelling"
    await rejected(handle, OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=second), "being cancelled")
    answer = await accept
    final = await handle.result()
    assert final.stage == "cancelled"
    names = [n for n, _ in harness.world.calls]
    assert names.index("record_cancellation") > names.index("reserve_physician")  # cleanup waited for the lock
    assert workflow_id_for(unique_key) not in harness.world.reservations  # whatever the accept reserved is freed
    assert answer.accepted and harness.world.capacity[first] == 1
    told = [n for n in harness.world.notices if n.key == f"placement-cancelled-{first}"]
    assert told and told[0].to_role == "physician" and told[0].to_id == first  # the winner learns it is off


async def test_same_idempotency_key_acts_once(harness: Harness, unique_key):
    handle = await harness.start(unique_key, fanout=2)
    st = await until(handle, lambda s: len(s.offers) == 2)
    npi = st.offers[0].npi
    use_key("req-42")
    try:
        first = await service.answer_offer(harness.env.client, handle.id, npi, accept=False)
        again = await service.answer_offer(harness.env.client, handle.id, npi, accept=False)  # a retried request
    finally:
        use_key(None)
    assert first == again and first.status == "declined"
    declines = [c for c in harness.world.called("record_offer") if c.npi == npi and c.status == "declined"]
    assert len(declines) == 1
    with pytest.raises(service.Rejected, match="is declined"):  # a new request (new key) is validated again
        await service.answer_offer(harness.env.client, handle.id, npi, accept=False)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_sla_clock_starts_at_workflow_start_even_when_workers_start_late(time_env, task_queue, unique_key):
    world = FakeWorld()
    intake = Intake.model_validate(sample_intake(unique_key))
    handle = await time_env.client.start_workflow(
        OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=Timing()),
        id=workflow_id_for(unique_key), task_queue=task_queue)
    started = (await handle.describe()).start_time
    await asyncio.sleep(3)  # no worker polls yet: the first workflow task runs 3 s after the start
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        st = await until(handle, lambda s: s.offers)
        assert st.started_at == started  # not the time of the first workflow task
        assert st.sla_deadline == started + timedelta(hours=24)
        first_task = st.timeline[0].at
        assert (first_task - started).total_seconds() >= 2.5
        await time_env.sleep(timedelta(hours=12) - (first_task - started) + timedelta(minutes=1))
        st = await until(handle, lambda s: s.sla_status == "at_risk")  # 12 h after the start, not the worker
        await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
        await handle.result()


async def test_quiet_roster_wait_backs_off_and_continues_as_new(time_env, task_queue, unique_key):
    world = FakeWorld(roster=[])
    intake = Intake.model_validate(sample_intake(unique_key))
    timing = Timing(max_history_events=60)
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        handle = await time_env.client.start_workflow(
            OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=timing),
            id=workflow_id_for(unique_key), task_queue=task_queue)
        first_run = (await handle.describe()).run_id
        await until(handle, lambda s: s.waiting_on == "roster")
        await time_env.sleep(timedelta(days=6))
        latest = time_env.client.get_workflow_handle_for(OnboardingWorkflow.run, handle.id)
        st = await until(latest, lambda s: any("continues matching" in t.event for t in s.timeline))
        assert (await latest.describe()).run_id != first_run
        assert st.stage == "matching" and st.waiting_on == "roster" and st.sla_status == "breached"
        assert sum(n.key.startswith("roster-empty") for n in world.notices) == 1  # ops told once, not hourly
        assert sum(n.key == "sla-breached" for n in world.notices) == 1  # not repeated by the new run
        # over six days, a back-off to one day: far fewer than 144 hourly look-ups
        assert len(world.called("find_candidates")) < 20
        world.roster.append("1000000007")
        await latest.signal(OnboardingWorkflow.roster_updated)
        st = await until(latest, lambda s: any(o.status == "open" for o in s.offers))
        await latest.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi="1000000007"))
        st = await until(latest, lambda s: s.stage == "protocol_setup")
        assert st.sla_status == "breached" and st.physician_npi == "1000000007"
        await latest.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
        final = await latest.result()
        assert final.stage == "cancelled"


async def test_validators_refuse_answers_once_a_cancel_is_pending(harness: Harness, unique_key):
    harness.world.delays["record_offer"] = 1.0  # the main path is inside an activity when the cancel lands
    handle = await harness.start(unique_key, fanout=2)
    st = await until(handle, lambda s: len(s.offers) == 2)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="deal lost"))
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=st.offers[1].npi))
    final = await handle.result()
    assert final.stage == "cancelled" and all(o.status == "withdrawn" for o in final.offers)


async def test_data_that_fails_validation_mid_flight_blocks_at_once(time_env, task_queue, unique_key):
    world = FakeWorld()
    world.bad_data["select_pharmacies"] = "pharmacy austin-rx: licensed_states has an unknown code 'XX'"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4),
                      interceptors=[BusinessFailureInterceptor()]):
        h = Harness(time_env, task_queue, world)
        handle = await h.start(unique_key)
        st = await until(handle, lambda s: s.offers)
        await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=st.offers[0].npi))
        await until(handle, lambda s: s.protocols)
        await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=st.offers[0].npi))
        st = await until(handle, lambda s: s.stage == "blocked")
        assert st.blocked_stage == "pharmacy_coordination" and "unknown code 'XX'" in st.waiting_reason
        assert len(world.called("select_pharmacies")) == 1  # not retried: the same data fails every time
        await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
        assert (await handle.result()).stage == "cancelled"


async def test_cancel_from_temporal_while_blocked_releases_capacity(harness: Harness, unique_key):
    handle, _, npi = await _blocked_in_protocols(harness, unique_key)
    await handle.cancel()  # what the Temporal UI's "Request Cancellation" does
    final = await handle.result()
    assert final.stage == "cancelled" and "cancelled from Temporal" in final.cancel_reason
    assert workflow_id_for(unique_key) in harness.world.released and harness.world.capacity[npi] == 1


async def test_encrypted_deployment_writes_no_plaintext_failures(time_env, task_queue, unique_key):
    from temporalio.client import Client

    from mdco_temporal.client import converter_for_keys
    from mdco_temporal.codec import new_key_spec

    client = Client(**{**time_env.client.config(), "data_converter": converter_for_keys(new_key_spec())})
    world = FakeWorld()
    world.failures["prepare_protocols"] = "SECRET-REASON template overlay missing"
    async with Worker(client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        handle = await Harness(type("E", (), {"client": client})(), task_queue, world).start(unique_key)
        st = await until(handle, lambda s: s.offers)
        await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=st.offers[0].npi))
        st = await until(handle, lambda s: s.stage == "blocked")
        assert "SECRET-REASON" in st.waiting_reason  # decoded for whoever holds the key
        raw = (await time_env.client.get_workflow_handle(handle.id).fetch_history()).to_json()
        assert "activityTaskFailedEventAttributes" in raw
        assert "SECRET-REASON" not in raw and "Glow Aesthetics" not in raw and "dana@glow.example" not in raw
        await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
        await handle.result()


async def test_cancel_during_launch_is_honoured_when_the_activity_returns(harness: Harness, unique_key):
    from datetime import datetime, timezone

    from domain.messages import PharmacyConfirmation
    from domain.onboarding import EnvelopeEvent

    harness.world.delays["launch_clinic"] = 1.5
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: s.offers)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "pharmacy_coordination" and s.pharmacies)
    await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=st.pharmacies[0].pharmacy_id))
    st = await until(handle, lambda s: s.waiting_on == "signers")
    for e in st.envelopes:
        await handle.signal(OnboardingWorkflow.envelope_event, EnvelopeEvent(
            envelope_id=e.envelope_id, status="completed", generated_at=datetime.now(timezone.utc)))
    while not harness.world.called("launch_clinic"):
        await asyncio.sleep(0.05)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="clinic sold"))
    final = await handle.result()
    assert final.stage == "cancelled" and final.oversight_workflow_id == ""  # no oversight was started
    assert workflow_id_for(unique_key) in harness.world.released
