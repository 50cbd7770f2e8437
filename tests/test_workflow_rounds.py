"""Later rounds: offers that expired unanswered are re-offered before the onboarding waits on the
roster; a decline is never re-asked; the rounds are capped and ops are told (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from temporalio.api.sdk.v1 import WorkflowMetadata

from domain.messages import CancelRequest, PhysicianAnswer
from domain.onboarding import Timing
from tests.test_workflow_onboarding import Harness, harness, until  # noqa: F401  (harness: the fixture)
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)


async def current_details(handle) -> str:
    """The run's current details, as the Temporal UI reads them (the built-in metadata query)."""
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return meta.current_details


async def test_silent_physicians_are_reoffered_in_a_second_round(harness: Harness, unique_key):
    harness.world.roster = ["1000000001", "1000000002", "1000000003"]
    handle = await harness.start(unique_key, fanout=3)
    st = await until(handle, lambda s: len(s.offers) == 3)
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi="1000000003"))
    await harness.env.sleep(timedelta(hours=4, minutes=5))  # the other two expire unanswered
    st = await until(handle, lambda s: s.offer_round == 2 and sum(o.status == "open" for o in s.offers) == 2)
    assert st.waiting_on == "physician" and st.stage == "matching"
    reoffered = {o.npi for o in st.offers if o.status == "open"}
    assert reoffered == {"1000000001", "1000000002"}  # the decline is never re-asked
    assert [o.round for o in st.offers if o.npi == "1000000001"] == [1, 2]  # both offers stay visible
    assert any(n.key == "offer-round-2" and n.to_role == "ops" for n in harness.world.notices)
    sent = [r for r in harness.world.called("send_offer") if r.npi == "1000000001"]
    assert [r.round for r in sent] == [1, 2]
    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi="1000000002"))
    assert answer.accepted
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    assert st.sla_status == "met" and st.physician_npi == "1000000002"
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_rounds_are_capped_then_the_roster_is_waited_on(harness: Harness, unique_key):
    harness.world.roster = ["1000000001"]
    handle = await harness.start(unique_key, fanout=1, timing=Timing(offer_rounds_max=2))
    await until(handle, lambda s: len(s.offers) == 1)
    await harness.env.sleep(timedelta(hours=4, minutes=5))
    st = await until(handle, lambda s: s.offer_round == 2 and any(o.status == "open" for o in s.offers))
    await harness.env.sleep(timedelta(hours=4, minutes=5))
    st = await until(handle, lambda s: s.waiting_on == "roster")
    assert st.offer_round == 2 and [o.status for o in st.offers] == ["expired", "expired"]
    assert "offer round 2 of 2" in await current_details(handle)  # what the Temporal UI shows
    harness.world.roster.append("1000000002")
    await handle.signal(OnboardingWorkflow.roster_updated)
    st = await until(handle, lambda s: any(o.npi == "1000000002" and o.status == "open" for o in s.offers))
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    final = await handle.result()
    assert final.stage == "cancelled"
