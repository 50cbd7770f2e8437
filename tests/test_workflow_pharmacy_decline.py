"""Stage 4 declines on the time-skipping server (fake activities under the real names): the next
qualifying pharmacy is asked, decliners never again, nobody left waits on ops; the decline is audited."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.api.enums.v1 import EventType

from domain.messages import PharmacyConfirmation, PharmacyDecline, PhysicianAnswer
from domain.onboarding import EnvelopeEvent, OnboardingStatus
from tests.test_workflow_onboarding import Harness, harness, rejected, until  # noqa: F401  (fixture)
from workflows import patches
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)


async def to_pharmacies(h: Harness, key: str):
    handle = await h.start(key)
    st = await until(handle, lambda s: s.stage == "matching" and s.offers)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "pharmacy_coordination" and s.waiting_on == "pharmacy")
    return handle


async def finish(handle) -> OnboardingStatus:
    st = await until(handle, lambda s: s.stage == "agreements" and s.waiting_on == "signers")
    now = datetime.now(timezone.utc)
    for i, env in enumerate(st.envelopes):
        await handle.signal(OnboardingWorkflow.envelope_event, EnvelopeEvent(
            envelope_id=env.envelope_id, status="completed", generated_at=now + timedelta(seconds=i)))
    return await handle.result()


async def patch_markers(handle) -> list[str]:
    """The patch ids recorded in the run's history (each marker's details name its id)."""
    out = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            out.append(str(event.marker_recorded_event_attributes))
    return [p for p in (patches.PHARMACY_DECLINE, patches.RACE_FREE) if any(p in m for m in out)]


async def test_decline_asks_the_next_qualifying_pharmacy(harness: Harness, unique_key):
    handle = await to_pharmacies(harness, unique_key)
    answer = await handle.execute_update(OnboardingWorkflow.decline_pharmacy, PharmacyDecline(
        pharmacy_id="austin-rx", reason="not licensed for office use", on_behalf_of="ops:dana"))
    assert answer.startswith("declined")
    st = await until(handle, lambda s: any(p.pharmacy_id == "dallas-rx" for p in s.pharmacies))
    by_id = {p.pharmacy_id: p for p in st.pharmacies}
    assert (by_id["austin-rx"].status, by_id["austin-rx"].decline_reason) == ("declined", "not licensed for office use")
    assert by_id["austin-rx"].replaced and by_id["dallas-rx"].status == "packet_sent"
    requests = harness.world.called("select_pharmacies")
    assert requests[-1].exclude == ["austin-rx"] and set(requests[-1].only) == set(by_id["austin-rx"].services)
    assert [p.assignment.pharmacy_id for p in harness.world.called("send_prescriber_packet")] == ["austin-rx", "dallas-rx"]
    audit = [d for d in harness.world.called("record_decision") if d.action == "pharmacy_declined"]
    assert len(audit) == 1 and audit[0].actor == "ops:dana for pharmacy:austin-rx"
    assert audit[0].reason == "not licensed for office use"
    # the decliner's late confirmation changes nothing; it cannot decline twice
    await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id="austin-rx"))
    await rejected(handle, OnboardingWorkflow.decline_pharmacy, PharmacyDecline(pharmacy_id="austin-rx", reason="again"),
                   "no open prescriber-account request (declined)")
    await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id="dallas-rx"))
    final = await finish(handle)
    assert final.stage == "launched"
    assert {p.pharmacy_id: p.status for p in final.pharmacies} == {"austin-rx": "declined", "dallas-rx": "confirmed"}
    assert patches.PHARMACY_DECLINE in await patch_markers(handle)


async def test_nobody_left_waits_on_ops_until_the_pharmacy_file_changes(harness: Harness, unique_key):
    handle = await to_pharmacies(harness, unique_key)
    await handle.execute_update(OnboardingWorkflow.decline_pharmacy, PharmacyDecline(pharmacy_id="austin-rx", reason="full"))
    await until(handle, lambda s: any(p.pharmacy_id == "dallas-rx" for p in s.pharmacies))
    await handle.execute_update(OnboardingWorkflow.decline_pharmacy,
                                PharmacyDecline(pharmacy_id="dallas-rx", reason="no sterile room"))
    st = await until(handle, lambda s: s.waiting_on == "ops")
    assert "declined: austin-rx, dallas-rx" in st.waiting_reason
    gap = [n for n in harness.world.notices if n.to_role == "ops" and n.key.startswith("pharmacy-decline-gap-")]
    assert len(gap) == 1 and "after a decline" in gap[0].subject
    harness.world.pharmacies.append("el-paso-rx")
    await handle.signal(OnboardingWorkflow.roster_updated)
    st = await until(handle, lambda s: any(p.pharmacy_id == "el-paso-rx" for p in s.pharmacies))
    assert st.waiting_on == "pharmacy"
    await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id="el-paso-rx"))
    assert (await finish(handle)).stage == "launched"


async def test_decline_refused_when_not_asked(harness: Harness, unique_key):
    handle = await to_pharmacies(harness, unique_key)
    await rejected(handle, OnboardingWorkflow.decline_pharmacy, PharmacyDecline(pharmacy_id="nobody-rx", reason="x"),
                   "pharmacy nobody-rx has no open prescriber-account request")
    await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id="austin-rx"))
    await until(handle, lambda s: s.stage == "agreements")
    await rejected(handle, OnboardingWorkflow.decline_pharmacy, PharmacyDecline(pharmacy_id="austin-rx", reason="late"),
                   "no pharmacy is being asked (stage agreements)")
    assert not [d for d in harness.world.called("record_decision") if d.action == "pharmacy_declined"]
    markers = await patch_markers(handle)
    assert patches.RACE_FREE in markers and patches.PHARMACY_DECLINE not in markers  # no decline: no new commands
    await finish(handle)


async def test_a_confirmation_before_the_packet_is_kept_until_the_packet_goes_out(harness: Harness, unique_key):
    """A pharmacy's confirmation that arrives before its packet was recorded as sent (a signal a workflow reset
    re-applies ahead of the sends it re-runs) is applied when the packet goes out (patch early-confirm-kept-v1);
    a pharmacy never asked keeps its early confirmation unused."""
    handle = await harness.start(unique_key)
    for early in ("austin-rx", "never-asked-rx"):
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=early,
                                                                                      account_number="RX-77"))
    st = await until(handle, lambda s: s.stage == "matching" and s.offers)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "agreements")  # no confirmation was sent after the packet
    assert {p.pharmacy_id: (p.status, p.account_number) for p in st.pharmacies} == {"austin-rx": ("confirmed", "RX-77")}
    confirmed = [d for d in harness.world.called("record_decision") if d.action == "pharmacy_confirmed"]
    assert len(confirmed) == 1 and confirmed[0].actor == "pharmacy:austin-rx"
    markers = [str(e.marker_recorded_event_attributes) async for e in handle.fetch_history_events()
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(patches.EARLY_CONFIRM_KEPT in m for m in markers)
    assert (await finish(handle)).stage == "launched"
