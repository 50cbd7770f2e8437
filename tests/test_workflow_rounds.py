"""Later rounds: offers that expired unanswered are re-offered before the onboarding waits on the
roster; a decline is never re-asked; the rounds are capped and ops are told (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from temporalio.api.sdk.v1 import WorkflowMetadata

from domain.messages import CancelRequest, PhysicianAnswer
from domain.matching import fresh_first
from domain.onboarding import Candidate, MatchResult, Timing
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
    await harness.env.sleep(timedelta(hours=4))  # 12 h 10: the SLA is at risk, ops asked to assign by hand
    await until(handle, lambda s: s.sla_status == "at_risk")
    at_risk = next(n for n in harness.world.notices if n.key == "sla-at_risk")
    assert "Offer round 2; 2 offer(s) expired unanswered" in at_risk.body
    assert f"mdco assign {handle.id} --npi" in at_risk.body and f"mdco match {handle.id} --explain" in at_risk.body
    harness.world.roster.append("1000000002")
    await handle.signal(OnboardingWorkflow.roster_updated)
    st = await until(handle, lambda s: any(o.npi == "1000000002" and o.status == "open" for o in s.offers))
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    final = await handle.result()
    assert final.stage == "cancelled"


async def test_an_expired_offer_is_reoffered_at_expiry_when_nobody_fresh_is_left(harness: Harness, unique_key):
    """Patch reoffer-at-expiry-v1: physician 1's offer expires while physician 3's is still open and
    nobody fresh is left: 1 is re-offered at once (round 2), not when 3's offer has closed too."""
    one, two, three = "1000000001", "1000000002", "1000000003"
    harness.world.roster = [one, two, three]
    handle = await harness.start(unique_key, fanout=2)
    await until(handle, lambda s: len(s.offers) == 2)
    await harness.env.sleep(timedelta(hours=2))
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=two))
    await until(handle, lambda s: any(o.npi == three and o.status == "open" for o in s.offers))  # fresh first
    await harness.env.sleep(timedelta(hours=2, minutes=5))  # 1's offer expires at 4 h, 3's would at 6 h
    st = await until(handle, lambda s: s.offer_round == 2 and sum(o.status == "open" for o in s.offers) == 2)
    assert {(o.npi, o.round) for o in st.offers if o.status == "open"} == {(one, 2), (three, 1)}
    assert [o.status for o in st.offers if o.npi == two] == ["declined"]  # a decline is never re-asked
    asked = harness.world.called("find_candidates")[-1]
    assert asked.reoffer_npis == [one] and {two, three} <= set(asked.exclude_npis)
    assert any(n.key == "offer-round-2" and n.to_role == "ops" for n in harness.world.notices)
    assert "offer round 2 of 3" in await current_details(handle)
    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=one))
    assert answer.accepted
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    assert next(o.status for o in st.offers if o.npi == three) == "withdrawn"
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


def test_fresh_candidates_rank_before_physicians_offered_again():
    result = MatchResult(candidates=[Candidate(npi=n, display_name=n, score=s)
                                     for n, s in (("1000000001", 90), ("1000000002", 80), ("1000000003", 70))])
    ranked = fresh_first(result, ["1000000001"], top=2)
    assert [c.npi for c in ranked.candidates] == ["1000000002", "1000000003"]
