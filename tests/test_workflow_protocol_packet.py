"""Stage 3's protocol packet on the time-skipping server (fake activities under the real names): once
the protocols are approved the packet goes out as an envelope of its own kind bound to their SHA-256s,
and the onboarding moves on only once it is completed; decline and expiry take stage 5's paths."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowHandle

from domain.messages import CancelRequest, PharmacyConfirmation, PhysicianAnswer, ResendRequest, RetryRequest
from domain.onboarding import EnvelopeEvent, OnboardingStatus
from tests.test_workflow_onboarding import Harness, harness, rejected, until  # noqa: F401  (fixture)
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


async def _packet_out(h: Harness, key: str) -> tuple[WorkflowHandle, str, OnboardingStatus]:
    """Accept, approve; the packet is out and nobody has signed it yet."""
    h.world.packet_signed_at_once = False
    handle = await h.start(key)
    st = await until(handle, lambda s: len(s.offers) == 1)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.waiting_on == "signers")
    return handle, npi, st


def _packets(st: OnboardingStatus) -> list:
    return [e for e in st.envelopes if e.agreement_kind == "protocol_packet"]


async def _event(handle: WorkflowHandle, envelope_id: str, status: str, at: datetime) -> None:
    await handle.signal(OnboardingWorkflow.envelope_event,
                        EnvelopeEvent(envelope_id=envelope_id, status=status, generated_at=at))


async def test_the_packet_bound_to_the_approved_sha256s_gates_the_next_stage(harness: Harness, unique_key):
    handle, npi, st = await _packet_out(harness, unique_key)
    assert st.stage == "protocol_setup" and st.envelopes == _packets(st)
    (packet,) = _packets(st)
    assert packet.status == "sent" and packet.attempt == 1
    (sent,) = harness.world.called("send_agreement")
    assert sent.spec.agreement_kind == "protocol_packet"
    assert sent.spec.sha256s == sorted(p.sha256 for p in st.protocols)  # the texts approved, nothing else
    assert harness.world.called("select_pharmacies") == []  # stage 4 waits for the signed packet

    await _event(handle, packet.envelope_id, "delivered", T0)
    st = await until(handle, lambda s: _packets(s)[0].status == "delivered")
    assert st.stage == "protocol_setup" and st.waiting_on == "signers"
    await _event(handle, packet.envelope_id, "completed", T0 + timedelta(seconds=1))
    st = await until(handle, lambda s: s.stage == "pharmacy_coordination" and s.pharmacies)
    assert any(f"protocol packet signed by NPI {npi}" in t.event for t in st.timeline)
    recorded = [(r.agreement_kind, r.status) for r in harness.world.called("record_envelope")]
    assert recorded == [("protocol_packet", "delivered"), ("protocol_packet", "completed")]

    for p in st.pharmacies:
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=p.pharmacy_id))
    st = await until(handle, lambda s: s.stage == "agreements" and s.waiting_on == "signers")
    for i, env in enumerate(e for e in st.envelopes if e.agreement_kind != "protocol_packet"):
        await _event(handle, env.envelope_id, "completed", T0 + timedelta(seconds=2 + i))
    final = await handle.result()  # stage 5 sent only its own agreements
    assert final.stage == "launched"
    kinds = [r.spec.agreement_kind for r in harness.world.called("send_agreement")]
    assert kinds.count("protocol_packet") == 1 and "medical_director" in kinds
    await harness.env.client.get_workflow_handle(final.oversight_workflow_id).terminate("test done")


async def test_a_declined_packet_waits_for_ops_and_is_resent(harness: Harness, unique_key):
    handle, _, st = await _packet_out(harness, unique_key)
    (packet,) = _packets(st)
    await _event(handle, packet.envelope_id, "declined", T0)
    st = await until(handle, lambda s: s.waiting_on == "ops")
    assert st.stage == "protocol_setup" and "protocol_packet (declined)" in st.waiting_reason
    assert any(n.key.startswith("agreements-stuck") for n in harness.world.notices)
    await handle.execute_update(OnboardingWorkflow.resend_agreements, ResendRequest(reason="director asked again"))
    st = await until(handle, lambda s: len(_packets(s)) == 2 and s.waiting_on == "signers")
    new = next(e for e in _packets(st) if e.current)
    assert new.attempt == 2 and new.envelope_id != packet.envelope_id
    await _event(handle, new.envelope_id, "completed", T0 + timedelta(seconds=1))
    await until(handle, lambda s: s.stage == "pharmacy_coordination")
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_an_unsigned_packet_expires_is_voided_and_resent_once(harness: Harness, unique_key):
    handle, _, st = await _packet_out(harness, unique_key)
    first = _packets(st)[0].envelope_id
    await harness.env.sleep(timedelta(days=14, hours=1))
    st = await until(handle, lambda s: len(_packets(s)) == 2)
    old, new = sorted(_packets(st), key=lambda e: e.attempt)
    assert old.envelope_id == first and old.status == "voided" and not old.current
    assert new.current and new.status == "sent" and st.stage == "protocol_setup"
    (void,) = harness.world.called("void_envelope")
    assert void.agreement_kind == "protocol_packet" and void.reason == "expired unsigned"
    reminders = [n for n in harness.world.notices if n.key.startswith("protocol-packet-reminder-")]
    assert reminders and all(n.to_role == "physician" for n in reminders)
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=st.physician_npi or ""),
                   "already approved")
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    final = await handle.result()
    assert final.stage == "cancelled" and harness.world.called("record_cancellation")


async def test_a_packet_of_texts_since_replaced_is_voided_and_the_new_texts_sent(harness: Harness, unique_key):
    """Stage 3 blocked with the packet out; meanwhile the texts change: after the retry they need a new
    approval, and the old packet is voided and a new one sent, bound to the new SHA-256s."""
    handle, npi, st = await _packet_out(harness, unique_key)
    (old,) = _packets(st)
    old_shas = harness.world.called("send_agreement")[0].spec.sha256s
    harness.world.failures["record_envelope"] = "documents volume is read-only"
    await _event(handle, old.envelope_id, "delivered", T0)
    st = await until(handle, lambda s: s.stage == "blocked")
    assert st.blocked_stage == "protocol_setup"
    harness.world.failures.clear()
    harness.world.protocol_text = "v2"  # a corrected text is prepared by the retried stage
    await handle.execute_update(OnboardingWorkflow.retry, RetryRequest(reason="volume fixed"))
    st = await until(handle, lambda s: s.stage == "protocol_setup" and s.waiting_on == "physician")
    assert any("a new approval is needed" in t.event for t in st.timeline)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: len(_packets(s)) == 2 and s.waiting_on == "signers")
    voided = next(e for e in _packets(st) if e.envelope_id == old.envelope_id)
    new = next(e for e in _packets(st) if e.current)
    assert voided.status == "voided" and not voided.current and new.attempt == 2
    (void,) = harness.world.called("void_envelope")
    assert void.reason == "the protocols changed since this packet was sent"
    resent = harness.world.called("send_agreement")[-1].spec
    assert resent.sha256s == sorted(p.sha256 for p in st.protocols) != old_shas
    await _event(handle, new.envelope_id, "completed", T0 + timedelta(seconds=1))
    await until(handle, lambda s: s.stage == "pharmacy_coordination")
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
