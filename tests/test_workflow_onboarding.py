"""OnboardingWorkflow on the time-skipping server with fake activities under the real names."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker
from concurrent.futures import ThreadPoolExecutor

from domain.codes import workflow_id_for
from domain.intake import Intake
from domain.messages import CancelRequest, PharmacyConfirmation, PhysicianAnswer, PlanDecision
from domain.onboarding import EnvelopeEvent, OnboardingInput, OnboardingStatus, Timing
from tests.fake_activities import FakeWorld, sample_intake
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

pytestmark = pytest.mark.timeout(120)


async def until(handle: WorkflowHandle, pred, timeout: float = 20.0) -> OnboardingStatus:
    """Poll the status query (real time, no skipping) until ``pred(status)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.query(OnboardingWorkflow.status, result_type=OnboardingStatus)
        if pred(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met; last status: {status.model_dump_json(indent=1)}")
        await asyncio.sleep(0.1)


async def rejected(handle: WorkflowHandle, update, arg, match: str) -> None:
    """The update's validator refuses ``arg`` with a message containing ``match``."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(update, arg)
    assert match in str(info.value.cause), str(info.value.cause)


class Harness:
    def __init__(self, env, task_queue: str, world: FakeWorld):
        self.env, self.task_queue, self.world = env, task_queue, world

    async def start(self, key: str, fanout: int = 1, timing: Timing | None = None, **intake_overrides) -> WorkflowHandle:
        intake = Intake.model_validate(sample_intake(key, **intake_overrides))
        return await self.env.client.start_workflow(
            OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=timing or Timing(), offer_fanout=fanout),
            id=workflow_id_for(key), task_queue=self.task_queue)


@pytest.fixture
async def harness(time_env, task_queue):
    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        yield Harness(time_env, task_queue, world)


async def play_to_launch(h: Harness, handle: WorkflowHandle, npi: str, *, accept: bool = True) -> OnboardingStatus:
    """Play every human from the offer (``accept=False``: the physician is already placed) to launch."""
    if accept:
        await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "pharmacy_coordination" and s.pharmacies)
    for p in st.pharmacies:
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=p.pharmacy_id))
    st = await until(handle, lambda s: s.stage == "agreements" and s.waiting_on == "signers")
    now = datetime.now(timezone.utc)
    for i, env in enumerate(st.envelopes):
        await handle.signal(OnboardingWorkflow.envelope_event,
                            EnvelopeEvent(envelope_id=env.envelope_id, status="completed",
                                          generated_at=now + timedelta(seconds=i)))
    return await handle.result()


async def test_happy_path_reaches_launch(harness: Harness, unique_key):
    handle = await harness.start(unique_key, timing=Timing(protocol_review_every=timedelta(days=200)))
    st = await until(handle, lambda s: s.stage == "matching" and s.offers)
    assert st.waiting_on == "physician" and st.sla_status == "on_track"
    npi = st.offers[0].npi
    final = await play_to_launch(harness, handle, npi)
    assert final.stage == "launched" and final.sla_status == "met" and final.physician_npi == npi
    assert {e.agreement_kind for e in final.envelopes} == {"protocol_packet", "medical_director",
                                                           "collaborative_practice_TX"}
    assert all(e.status == "completed" for e in final.envelopes)
    assert final.oversight_workflow_id == f"oversight-{unique_key}"
    (launch,) = harness.world.called("launch_clinic")
    assert launch.protocol_review_every == timedelta(days=200)  # the clinic's oversight keeps its Timing's interval
    desc = await harness.env.client.get_workflow_handle(final.oversight_workflow_id).describe()
    assert desc.status.name == "RUNNING"  # oversight outlives the onboarding
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_fanout_first_accept_wins_and_others_withdrawn(harness: Harness, unique_key):
    handle = await harness.start(unique_key, fanout=3)
    st = await until(handle, lambda s: len(s.offers) == 3)
    first, second = st.offers[1].npi, st.offers[2].npi
    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=first))
    assert answer.accepted
    await rejected(handle, OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=second), "offers are closed")
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    statuses = {o.npi: o.status for o in st.offers}
    assert statuses[first] == "accepted" and sorted(statuses.values()).count("withdrawn") == 2
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    assert (await handle.result()).stage == "cancelled"


async def test_decline_moves_to_next_physician(harness: Harness, unique_key):
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: len(s.offers) == 1)
    first = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=first))
    st = await until(handle, lambda s: len(s.offers) == 2)
    assert st.offers[0].status == "declined" and st.offers[1].status == "open"
    assert st.offers[1].npi != first
    final = await play_to_launch(harness, handle, st.offers[1].npi)
    assert final.physician_npi == st.offers[1].npi
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_offer_expiry_then_sla_at_risk_and_breach(harness: Harness, unique_key):
    harness.world.roster = ["1000000001", "1000000002"]
    handle = await harness.start(unique_key, timing=Timing(offer_rounds_max=1))  # no later rounds here
    await until(handle, lambda s: len(s.offers) == 1)
    await harness.env.sleep(timedelta(hours=4, minutes=5))
    st = await until(handle, lambda s: len(s.offers) == 2)
    assert st.offers[0].status == "expired"
    await harness.env.sleep(timedelta(hours=8))  # 12 h 05 since start
    st = await until(handle, lambda s: s.sla_status == "at_risk")
    assert st.waiting_on == "roster"  # both offers expired, nobody left
    assert "no eligible physician" in st.waiting_reason
    await harness.env.sleep(timedelta(hours=12))
    st = await until(handle, lambda s: s.sla_status == "breached")
    keys = {n.key for n in harness.world.notices if n.to_role == "ops"}
    assert {"sla-at_risk", "sla-breached"} <= keys
    # a roster import brings a new physician; the SLA stays breached but the match is recorded
    harness.world.roster.append("1000000009")
    await handle.signal(OnboardingWorkflow.roster_updated)
    st = await until(handle, lambda s: any(o.npi == "1000000009" for o in s.offers))
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi="1000000009"))
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    assert st.sla_status == "breached" and st.matched_at is not None  # a late placement stays visible
    assert st.time_to_match_minutes > 24 * 60
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_nobody_eligible_waits_on_roster(harness: Harness, unique_key):
    harness.world.roster = []
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: s.waiting_on == "roster")
    assert st.stage == "matching" and "no licence in TX" in st.waiting_reason
    desc = await handle.describe()
    assert desc.typed_search_attributes is not None
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="no roster"))
    final = await handle.result()
    assert final.stage == "cancelled" and final.cancel_reason == "no roster"
    assert len(harness.world.called("record_cancellation")) == 1


async def test_validators_reject_wrong_answers(harness: Harness, unique_key):
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: len(s.offers) == 1)
    npi = st.offers[0].npi
    await rejected(handle, OnboardingWorkflow.accept_offer, PhysicianAnswer(npi="1234567893"), "no offer was made")
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi), "no protocols await approval")
    await rejected(handle, OnboardingWorkflow.review_plan, PlanDecision(reason="ok"), "no assessment is waiting")
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi="1000000004"), "only the matched medical director")
    # rejected updates leave no trace in history and change nothing
    assert len(harness.world.called("reserve_physician")) == 1
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="done"))
    await rejected(handle, OnboardingWorkflow.cancel, CancelRequest(reason="again"), "cannot cancel")
    final = await handle.result()
    assert final.stage == "cancelled"
    assert not harness.world.reservations and harness.world.released  # capacity released by record_cancellation


async def test_blocking_findings_wait_for_ops_review(harness: Harness, unique_key):
    harness.world.blocking_findings = True
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: s.waiting_on == "ops")
    assert st.stage == "needs_assessment"
    await harness.env.sleep(timedelta(hours=9))
    await until(handle, lambda s: True)
    assert any(n.key.startswith("plan-review-reminder") for n in harness.world.notices)
    await handle.execute_update(OnboardingWorkflow.review_plan, PlanDecision(reason="client uses FDA-approved product"))
    await until(handle, lambda s: s.stage == "matching")
    decisions = harness.world.called("record_decision")
    assert decisions[0].action == "plan_approved" and decisions[0].reason
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_capacity_race_lost_answer(harness: Harness, unique_key):
    harness.world.capacity["1000000001"] = 0
    handle = await harness.start(unique_key)
    st = await until(handle, lambda s: len(s.offers) == 1)
    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=st.offers[0].npi))
    assert not answer.accepted and answer.status == "lost" and "capacity" in answer.message
    st = await until(handle, lambda s: len(s.offers) == 2)
    assert st.offers[0].status == "lost"
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_each_expired_offer_widens_the_fanout(harness: Harness, unique_key):
    harness.world.roster = [f"100000000{i}" for i in range(1, 9)]
    handle = await harness.start(unique_key, fanout=2, timing=Timing(offer_burst_max=0))  # no SLA burst
    await until(handle, lambda s: len(s.offers) == 2)
    await harness.env.sleep(timedelta(hours=4, minutes=1))
    st = await until(handle, lambda s: sum(o.status == "open" for o in s.offers) == 4)
    assert sum(o.status == "expired" for o in st.offers) == 2  # 2 + 2 expired = 4 in parallel
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
