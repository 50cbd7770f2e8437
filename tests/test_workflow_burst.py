"""SLA-pressure widening (patch sla-burst-v1): at the first offer that expired unanswered, every eligible
physician not yet offered is offered too, up to ``Timing.offer_burst_max`` open offers; the first accept
withdraws the rest; a decliner is never re-asked; ops are told once (time-skipping server). The early
widening (patch sla-widen-early-v1): the same already ``Timing.offer_widen_after`` after the first offer
when nobody accepted by then, without any expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.messages import CancelRequest, PhysicianAnswer
from domain.onboarding import Timing
from tests.test_workflow_onboarding import Harness, harness, until  # noqa: F401  (harness: the fixture)
from workflows import patches
from workflows.onboarding import OnboardingWorkflow

pytestmark = pytest.mark.timeout(120)


def npi(i: int) -> str:
    return f"{1_000_000_000 + i}"


async def burst_marked(handle, patch: str = patches.SLA_BURST) -> bool:
    """The run's history holds the patch marker (default sla-burst-v1)."""
    history = await handle.fetch_history()
    return any(patch.encode() in p.data for e in history.events
               if e.HasField("marker_recorded_event_attributes")
               for payloads in e.marker_recorded_event_attributes.details.values() for p in payloads.payloads)


def open_npis(st) -> set[str]:
    return {o.npi for o in st.offers if o.status == "open"}


async def test_first_expiry_widens_to_the_cap_then_one_accept_withdraws_the_rest(harness: Harness, unique_key):
    harness.world.roster = [npi(i) for i in range(1, 21)]  # 20 eligible, ranked in this order
    handle = await harness.start(unique_key, fanout=3, timing=Timing(offer_burst_max=8, offer_widen_after=None))
    st = await until(handle, lambda s: len(s.offers) == 3)
    assert open_npis(st) == {npi(1), npi(2), npi(3)}
    await harness.env.sleep(timedelta(hours=1))
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=npi(2)))
    st = await until(handle, lambda s: npi(4) in open_npis(s))  # the fan-out stays 3 before any expiry
    assert len(open_npis(st)) == 3
    assert not any(n.key == "offers-widened" for n in harness.world.notices)

    await harness.env.sleep(timedelta(hours=3, minutes=5))  # 1's and 3's offers expire unanswered at 4 h
    st = await until(handle, lambda s: len(open_npis(s)) == 8)
    assert open_npis(st) == {npi(i) for i in range(4, 12)}  # the cap: 4 still open + 7 fresh
    assert {o.npi for o in st.offers if o.status == "expired"} == {npi(1), npi(3)}  # fresh before re-offers
    assert [o.status for o in st.offers if o.npi == npi(2)] == ["declined"]
    asks = harness.world.called("find_candidates")
    assert [a.top for a in asks[:2]] == [3, 1]  # the fan-out, then one fresh offer for the decline
    assert sum(a.top for a in asks[2:]) == 7  # up to the cap (3's offer may expire a moment after 1's)
    assert all(npi(2) in a.exclude_npis for a in asks[1:])  # the decliner is never re-asked
    widened = [n for n in harness.world.notices if n.key == "offers-widened"]
    assert len(widened) == 1 and widened[0].to_role == "ops" and "8 open at once (cap 8)" in widened[0].body
    audit = [d for d in harness.world.called("record_decision") if d.action == "offers_widened"]
    assert len(audit) == 1 and audit[0].actor == "workflow"
    assert audit[0].detail["open_offers"] == 8 and audit[0].detail["cap"] == 8 and audit[0].detail["expired"] in (1, 2)

    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=npi(5)))
    st = await until(handle, lambda s: npi(12) in open_npis(s))  # one slot freed: one more fresh offer
    assert len(open_npis(st)) == 8 and npi(5) not in open_npis(st)
    sent = [r.npi for r in harness.world.called("send_offer")]
    assert len(sent) == len(set(sent)) == 12  # nobody offered twice while fresh candidates were left
    assert len([n for n in harness.world.notices if n.key == "offers-widened"]) == 1  # told once

    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi(6)))
    assert answer.accepted
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    others = {npi(i) for i in (4, 7, 8, 9, 10, 11, 12)}
    assert {o.npi for o in st.offers if o.status == "withdrawn"} == others
    withdrawn = {n.to_id for n in harness.world.notices if n.key.startswith("offer-withdrawn-")}
    assert withdrawn == others  # each gets the existing "offer withdrawn" notice
    assert st.sla_status == "met" and st.physician_npi == npi(6)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
    assert await burst_marked(handle)


async def test_without_a_cap_an_expiry_widens_by_one_and_the_patch_is_not_asked(harness: Harness, unique_key):
    harness.world.roster = [npi(i) for i in range(1, 21)]
    handle = await harness.start(unique_key, fanout=3, timing=Timing(offer_burst_max=None))
    await until(handle, lambda s: len(s.offers) == 3)
    await harness.env.sleep(timedelta(hours=4, minutes=5))
    st = await until(handle, lambda s: len(open_npis(s)) == 6)  # 3 + 3 expired, no burst
    assert not any(n.key == "offers-widened" for n in harness.world.notices)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
    assert not await burst_marked(handle)  # no cap: the patch is never asked


# ---------------------------------------------------------------- early widening (sla-widen-early-v1)
def widened_notices(harness: Harness) -> list:
    return [n for n in harness.world.notices if n.key == "offers-widened"]


async def three_offers_out(harness: Harness, key: str, eligible: int = 20,
                           widen_after: timedelta | None = timedelta(minutes=45)):
    """``eligible`` physicians ranked in NPI order, fan-out 3, burst cap 8: the handle once 3 offers are out."""
    harness.world.roster = [npi(i) for i in range(1, eligible + 1)]
    handle = await harness.start(key, fanout=3, timing=Timing(offer_burst_max=8, offer_widen_after=widen_after))
    await until(handle, lambda s: len(s.offers) == 3)
    return handle


async def test_nobody_accepting_by_widen_after_widens_to_the_cap_without_an_expiry(harness: Harness, unique_key):
    handle = await three_offers_out(harness, unique_key)
    await harness.env.sleep(timedelta(minutes=40))
    st = await until(handle, lambda s: True)
    assert open_npis(st) == {npi(1), npi(2), npi(3)} and not widened_notices(harness)  # not before 45 min

    await harness.env.sleep(timedelta(minutes=10))
    st = await until(handle, lambda s: len(open_npis(s)) == 8)
    assert open_npis(st) == {npi(i) for i in range(1, 9)}  # the 3 still open + 5 fresh, up to the cap
    assert not any(o.status == "expired" for o in st.offers)  # no offer expired: the 4 h TTL is far off
    asks = harness.world.called("find_candidates")
    assert [a.top for a in asks] == [3, 5]
    (told,) = widened_notices(harness)
    assert told.to_role == "ops" and "within 45 min of the first offer" in told.body and "(cap 8)" in told.body
    (audit,) = [d for d in harness.world.called("record_decision") if d.action == "offers_widened"]
    assert audit.reason == "no physician accepted within 45 min of the first offer"
    assert audit.detail == {"open_offers": 8, "cap": 8, "expired": 0}
    assert any("within 45 min of the first offer" in e.event for e in st.timeline)

    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi(7)))
    assert answer.accepted
    st = await until(handle, lambda s: s.stage == "protocol_setup")
    others = {npi(i) for i in range(1, 9)} - {npi(7)}
    assert {o.npi for o in st.offers if o.status == "withdrawn"} == others  # the first accept wins
    assert {n.to_id for n in harness.world.notices if n.key.startswith("offer-withdrawn-")} == others
    assert len(widened_notices(harness)) == 1  # told once
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
    assert await burst_marked(handle, patches.SLA_WIDEN_EARLY)
    assert not await burst_marked(handle, patches.SLA_BURST)  # no expiry: the expiry burst never asked


async def test_an_accept_before_widen_after_widens_nothing(harness: Harness, unique_key):
    handle = await three_offers_out(harness, unique_key)
    await harness.env.sleep(timedelta(minutes=30))
    answer = await handle.execute_update(OnboardingWorkflow.accept_offer, PhysicianAnswer(npi=npi(2)))
    assert answer.accepted
    await until(handle, lambda s: s.stage != "matching")
    await harness.env.sleep(timedelta(hours=1))  # past the 45 min mark
    st = await until(handle, lambda s: True)
    assert len(st.offers) == 3 and {o.npi for o in st.offers if o.status == "withdrawn"} == {npi(1), npi(3)}
    assert len(harness.world.called("send_offer")) == 3 and not widened_notices(harness)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
    assert not await burst_marked(handle, patches.SLA_WIDEN_EARLY)  # the patch is not even asked


async def test_the_early_widening_never_re_asks_a_decliner(harness: Harness, unique_key):
    handle = await three_offers_out(harness, unique_key, eligible=6)  # the widening uses up the fresh ones
    await harness.env.sleep(timedelta(minutes=20))
    await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=npi(2)))
    await until(handle, lambda s: npi(4) in open_npis(s))
    await harness.env.sleep(timedelta(minutes=30))  # the early widening at 45 min: 5 and 6, nobody else fresh
    st = await until(handle, lambda s: open_npis(s) == {npi(i) for i in (1, 3, 4, 5, 6)})
    assert len(widened_notices(harness)) == 1
    await harness.env.sleep(timedelta(hours=3, minutes=20))  # 1's and 3's offers expire: re-offered, 2 never
    st = await until(handle, lambda s: sum(o.npi == npi(1) for o in s.offers) == 2
                     and sum(o.npi == npi(3) for o in s.offers) == 2)
    sent = [r.npi for r in harness.world.called("send_offer")]
    assert sent.count(npi(2)) == 1
    assert all(npi(2) in a.exclude_npis and npi(2) not in a.reoffer_npis for a in harness.world.called("find_candidates")[1:])
    assert [o.status for o in st.offers if o.npi == npi(2)] == ["declined"]
    assert len(widened_notices(harness)) == 1  # the expiries do not tell ops again
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()


async def test_no_early_widening_when_widen_after_is_none(harness: Harness, unique_key):
    handle = await three_offers_out(harness, unique_key, widen_after=None)
    await harness.env.sleep(timedelta(hours=2))
    st = await until(handle, lambda s: True)
    assert len(open_npis(st)) == 3 and len(st.offers) == 3 and not widened_notices(harness)
    await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="test over"))
    await handle.result()
    assert not await burst_marked(handle, patches.SLA_WIDEN_EARLY)


def test_widen_after_is_validated_against_the_offer_ttl():
    with pytest.raises(ValueError, match="offer_widen_after .* must be shorter than offer_ttl"):
        Timing(offer_widen_after=timedelta(hours=4))
    with pytest.raises(ValueError, match="offer_widen_after"):
        Timing(offer_widen_after=timedelta(minutes=-1))
    assert Timing().offer_widen_after == timedelta(minutes=45)
    assert Timing(offer_ttl=timedelta(minutes=10)).offer_widen_after is None  # the default, TTL too short: off
    assert Timing.demo().offer_widen_after == timedelta(seconds=11.25)  # the same share of the demo's 60 s TTL
    assert Timing.demo().offer_widen_after < Timing.demo().offer_ttl
