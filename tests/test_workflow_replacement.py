"""Replacement placements (time-skipping server, fake activities): the onboarding stages run again
for a new director without the outgoing one, and the clinic's oversight workflow takes the new
director over instead of a second oversight starting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.worker import Worker

from domain.codes import oversight_id_for, workflow_id_for
from domain.intake import Intake
from domain.messages import CancelRequest
from domain.onboarding import OnboardingInput, OversightInput, OversightStatus, Replacement, Timing
from tests.fake_activities import FakeWorld, sample_intake
from tests.test_workflow_onboarding import Harness, play_to_launch, until
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

pytestmark = pytest.mark.timeout(120)

OUTGOING = "1000000001"


async def _replacement(env, task_queue: str, key: str):
    """A running oversight under OUTGOING, and a replacement placement started for it."""
    oversight = await env.client.start_workflow(
        OversightWorkflow.run, OversightInput(clinic_key=key, physician_npi=OUTGOING, states=["TX", "OK"],
                                              suspended_states=["TX"], timing=Timing()),
        id=oversight_id_for(key), task_queue=task_queue)
    wf_id = f"{workflow_id_for(key)}-r1"
    replacement = Replacement(outgoing_npi=OUTGOING, previous_workflow_id=workflow_id_for(key),
                              oversight_workflow_id=oversight.id, reason="licence lapsed in TX")
    handle = await env.client.start_workflow(
        OnboardingWorkflow.run, OnboardingInput(intake=Intake.model_validate(sample_intake(key)), timing=Timing(),
                                                offer_fanout=3, replacement=replacement),
        id=wf_id, task_queue=task_queue)
    await oversight.signal(OversightWorkflow.replacement_started, wf_id)
    return oversight, handle


async def test_replacement_matches_without_the_outgoing_director_and_hands_over(time_env, task_queue, unique_key):
    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        oversight, handle = await _replacement(time_env, task_queue, unique_key)
        st = await until(handle, lambda s: len(s.offers) == 3)
        assert OUTGOING not in {o.npi for o in st.offers}  # the outgoing director is never offered it
        assert all(OUTGOING in r.exclude_npis for r in world.called("find_candidates"))
        new = st.offers[0].npi
        final = await play_to_launch(Harness(time_env, task_queue, world), handle, new)
        assert final.stage == "launched" and final.physician_npi == new and final.sla_status == "met"
        assert final.oversight_workflow_id == oversight.id
        (launch,) = world.called("launch_clinic")
        assert launch.replaces is not None and launch.replaces.outgoing_npi == OUTGOING
        status = await oversight.query(OversightWorkflow.status, result_type=OversightStatus)
        assert status.physician_npi == new  # the same oversight workflow goes on with the new director
        compliance = await oversight.query(OversightWorkflow.compliance)
        assert compliance.status == "active" and compliance.suspended_states == []
        await oversight.terminate("test done")


async def test_cancelled_replacement_leaves_the_live_clinic_alone(time_env, task_queue, unique_key):
    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        oversight, handle = await _replacement(time_env, task_queue, unique_key)
        assert (await oversight.query(OversightWorkflow.compliance)).status == "replacing"
        await until(handle, lambda s: s.offers)
        await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="director stays after all"))
        final = await handle.result()
        assert final.stage == "cancelled"
        (record,) = world.called("record_cancellation")
        assert record.keep_clinic  # the clinic stays live under its director
        compliance = await oversight.query(OversightWorkflow.compliance)
        assert compliance.status == "suspended" and compliance.suspended_states == ["TX"]  # no longer replacing
        await oversight.terminate("test done")


async def test_reonboarding_a_clinic_hands_its_running_oversight_to_the_new_director(time_env, task_queue,
                                                                                     unique_key):
    world = FakeWorld()
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        oversight = await time_env.client.start_workflow(  # left running by an earlier engagement
            OversightWorkflow.run, OversightInput(clinic_key=unique_key, physician_npi="1999999999", states=["TX"],
                                                  timing=Timing()),
            id=oversight_id_for(unique_key), task_queue=task_queue)
        h = Harness(time_env, task_queue, world)
        handle = await h.start(unique_key)
        st = await until(handle, lambda s: s.offers)
        final = await play_to_launch(h, handle, st.offers[0].npi)
        assert final.oversight_workflow_id == oversight.id
        status = await oversight.query(OversightWorkflow.status, result_type=OversightStatus)
        assert status.physician_npi == st.offers[0].npi  # no old loop addressed to the old physician
        await oversight.terminate("test done")
