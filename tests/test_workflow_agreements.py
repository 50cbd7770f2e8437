"""Stage 5 lifecycle and ops assignment on the time-skipping server (fake activities, real names)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from domain.messages import AssignRequest, CancelRequest, PharmacyConfirmation, PhysicianAnswer, ResendRequest
from domain.onboarding import EnvelopeEvent, OnboardingStatus
from tests.test_workflow_onboarding import Harness, harness, rejected, until  # noqa: F401  (fixture)
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


async def to_agreements(h: Harness, handle: WorkflowHandle) -> OnboardingStatus:
    st = await until(handle, lambda s: len(s.offers) >= 1)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "pharmacy_coordination" and s.pharmacies)
    for p in st.pharmacies:
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=p.pharmacy_id))
    return await until(handle, lambda s: s.stage == "agreements" and s.waiting_on == "signers")


def stage5(st: OnboardingStatus) -> list:
    """The stage-5 envelopes (stage 3's protocol packet, signed at once by the fake Connect, left out)."""
    return [e for e in st.envelopes if e.agreement_kind != "protocol_packet"]


async def event(handle: WorkflowHandle, envelope_id: str, status: str, at: datetime) -> None:
    await handle.signal(OnboardingWorkflow.envelope_event, EnvelopeEvent(envelope_id=envelope_id, status=status,
                                                                         generated_at=at))


async def finish(h: Harness, handle: WorkflowHandle) -> OnboardingStatus:
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    return await handle.result()


async def test_duplicate_and_out_of_order_events_never_move_an_envelope_back(harness: Harness, unique_key):
    handle = await harness.start(unique_key, midlevels=[])
    st = await to_agreements(harness, handle)
    (env,) = stage5(st)
    await event(handle, env.envelope_id, "delivered", T0 + timedelta(seconds=2))
    await event(handle, env.envelope_id, "sent", T0 + timedelta(seconds=1))  # older: ignored
    await event(handle, env.envelope_id, "delivered", T0 + timedelta(seconds=2))  # duplicate: ignored
    st = await until(handle, lambda s: stage5(s)[0].status == "delivered")
    await event(handle, "env-unknown", "completed", T0 + timedelta(seconds=3))  # not ours: ignored
    await event(handle, env.envelope_id, "completed", T0 + timedelta(seconds=5))
    await event(handle, env.envelope_id, "completed", T0 + timedelta(seconds=5))
    final = await handle.result()
    assert final.stage == "launched"
    recorded = [(r.envelope_id, r.status) for r in harness.world.called("record_envelope")
                if r.agreement_kind != "protocol_packet"]
    assert recorded == [(env.envelope_id, "delivered"), (env.envelope_id, "completed")]
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_expiry_voids_and_resends_once_then_asks_ops(harness: Harness, unique_key):
    handle = await harness.start(unique_key, midlevels=[])
    st = await to_agreements(harness, handle)
    first = stage5(st)[0].envelope_id
    await harness.env.sleep(timedelta(days=14, hours=1))
    st = await until(handle, lambda s: len(stage5(s)) == 2)
    old, new = sorted(stage5(st), key=lambda e: e.attempt)
    assert old.envelope_id == first and old.status == "voided" and not old.current
    assert new.attempt == 2 and new.current and new.status == "sent"
    await harness.env.sleep(timedelta(days=14, hours=1))
    st = await until(handle, lambda s: s.waiting_on == "ops")
    assert "agreements need a decision" in st.waiting_reason
    assert len(harness.world.called("void_envelope")) == 2
    assert any(n.key.startswith("agreements-stuck") for n in harness.world.notices)
    await handle.execute_update(OnboardingWorkflow.resend_agreements, ResendRequest(reason="clinic asked again"))
    st = await until(handle, lambda s: len(stage5(s)) == 3 and s.waiting_on == "signers")
    third = next(e for e in stage5(st) if e.current)
    await event(handle, third.envelope_id, "completed", T0)
    assert (await handle.result()).stage == "launched"
    await harness.env.client.get_workflow_handle(f"oversight-{unique_key}").terminate("test done")


async def test_decline_waits_for_ops_resend(harness: Harness, unique_key):
    handle = await harness.start(unique_key, midlevels=[])
    st = await to_agreements(harness, handle)
    await rejected(handle, OnboardingWorkflow.resend_agreements, ResendRequest(reason="x"), "no declined")
    await event(handle, stage5(st)[0].envelope_id, "declined", T0)
    st = await until(handle, lambda s: s.waiting_on == "ops")
    assert "declined" in st.waiting_reason
    await handle.execute_update(OnboardingWorkflow.resend_agreements, ResendRequest(reason="terms fixed"))
    st = await until(handle, lambda s: len(stage5(s)) == 2 and s.waiting_on == "signers")
    assert [d.action for d in harness.world.called("record_decision")][-1] == "agreements_resent"
    await finish(harness, handle)


async def test_silent_connect_is_reconciled_by_one_status_get(harness: Harness, unique_key):
    handle = await harness.start(unique_key, midlevels=[])
    st = await to_agreements(harness, handle)
    env_id = stage5(st)[0].envelope_id
    await harness.env.sleep(timedelta(hours=23))
    await until(handle, lambda s: True)
    assert harness.world.called("check_envelope") == []  # Connect is trusted for 24 h
    harness.world.envelope_status[env_id] = "completed"  # Connect lost the completion
    await harness.env.sleep(timedelta(hours=2))
    final = await handle.result()
    assert final.stage == "launched"
    assert harness.world.called("check_envelope") == [env_id]
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_status_gets_are_spaced_while_connect_stays_silent(harness: Harness, unique_key):
    handle = await harness.start(unique_key, midlevels=[])
    await to_agreements(harness, handle)
    await harness.env.sleep(timedelta(hours=24 * 5 + 1))
    await until(handle, lambda s: True)
    # one GET per 24 h of silence, never a polling loop
    assert len(harness.world.called("check_envelope")) == 5
    await finish(harness, handle)


async def test_ops_assign_physician_rechecks_eligibility(harness: Harness, unique_key):
    harness.world.roster = []
    harness.world.ineligible["1000000007"] = ["no licence in OK"]
    handle = await harness.start(unique_key)
    await until(handle, lambda s: s.waiting_on == "roster")
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(OnboardingWorkflow.assign_physician,
                                    AssignRequest(npi="1000000007", reason="knows the clinic"))
    assert "not eligible: no licence in OK" in str(info.value.cause)
    answer = await handle.execute_update(OnboardingWorkflow.assign_physician,
                                         AssignRequest(npi="1000000008", reason="knows the clinic"))
    assert answer.status == "assigned"
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    assert st.physician_npi == "1000000008" and st.sla_status == "met"
    await rejected(handle, OnboardingWorkflow.assign_physician, AssignRequest(npi="1000000009", reason="x"),
                   "no physician can be assigned")
    await finish(harness, handle)
