"""Stage 3 on the time-skipping server (fake activities under the real names): an approval binds the
director to the SHA-256s of the protocol documents read; a changed text needs a new approval."""

from __future__ import annotations

import pytest

from domain.messages import CancelRequest, PhysicianAnswer
from tests.fake_activities import FakeWorld
from tests.test_workflow_onboarding import Harness, harness, rejected, until  # noqa: F401  (harness: the fixture)
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)


async def _at_protocols(h: Harness, key: str):
    handle = await h.start(key)
    st = await until(handle, lambda s: len(s.offers) == 1)
    npi = st.offers[0].npi
    await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi))
    st = await until(handle, lambda s: s.stage == "protocol_setup" and s.protocols)
    return handle, npi, st


def _approvals(world: FakeWorld) -> list:
    return [d for d in world.called("record_decision") if d.action == "protocols_approved"]


async def test_approval_binds_to_the_sha256s_read(harness: Harness, unique_key):
    handle, npi, st = await _at_protocols(harness, unique_key)
    shown = [p.sha256 for p in st.protocols]
    assert len(set(shown)) == len(shown) == 4  # one document per service, each its own SHA-256

    stale = [*shown[:-1], "e" * 64]  # one text changed since the approver read it
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi, sha256s=stale),
                   "the protocols changed since you read them")
    await rejected(handle, OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi, sha256s=shown[:1]),
                   "the protocols changed since you read them")  # approving a part is not approving them all
    assert not _approvals(harness.world)  # refused: nothing recorded, nothing changed

    assert await handle.execute_update(OnboardingWorkflow.approve_protocols,
                                       PhysicianAnswer(npi=npi, sha256s=list(reversed(shown)))) == "approved"
    (decision,) = _approvals(harness.world)
    assert decision.detail["sha256s"] == sorted(shown)  # the audit names the exact documents approved
    st = await until(handle, lambda s: s.stage == "pharmacy_coordination")
    assert {p.status for p in st.protocols} == {"approved"}
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="done"))
    await handle.result()


async def test_approval_without_sha256s_binds_to_the_current_ones(harness: Harness, unique_key):
    """An older client that sends no SHA-256s approves what is current, and the audit says which."""
    handle, npi, st = await _at_protocols(harness, unique_key)
    await handle.execute_update(OnboardingWorkflow.approve_protocols, PhysicianAnswer(npi=npi))
    (decision,) = _approvals(harness.world)
    assert decision.detail["sha256s"] == sorted(p.sha256 for p in st.protocols)
    await until(handle, lambda s: s.stage == "pharmacy_coordination")  # the packet signed: stage 3 is over
    await rejected(handle, OnboardingWorkflow.approve_protocols,
                   PhysicianAnswer(npi=npi, sha256s=[p.sha256 for p in st.protocols]), "no protocols await approval")
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="done"))
    await handle.result()
