"""bench.chaos's invariant checker finds each kind of broken invariant (a cheap check of the checker; the
chaos run itself is a benchmark, never part of the suite)."""

from __future__ import annotations

import copy

from bench.chaos import kill_plan, violations

CORE = ["onboarding_started", "plan_assessed", "offer_accepted", "protocols_approved", "pharmacy_confirmed",
        "envelope_sent", "envelope_completed", "clinic_launched", "stage_launched"]


def healthy() -> dict:
    return {
        "onboardings": {"onboarding-a": {
            "stage": "launched",
            "offers": [{"npi": "1", "status": "accepted"}, {"npi": "2", "status": "withdrawn"}],
            "agreements": [{"kind": "cpa", "envelope_id": "e2", "status": "completed"}],
            "envelopes": [{"id": "e1", "kind": "cpa", "status": "voided"},
                          {"id": "e2", "kind": "cpa", "status": "completed"}],
            "audit": [{"action": a} for a in CORE],
            "expected_audit": {"envelope_completed": 1, "stage_launched": 1},
        }},
        "physicians": {"1": {"active_clinics": 3, "seeded": 2, "placements": 1, "reserved": 1},
                       "2": {"active_clinics": 0, "seeded": 0, "placements": 0, "reserved": 0}},
    }


def broken(change) -> list[str]:
    snap = copy.deepcopy(healthy())
    change(snap)
    return violations(snap)


def test_a_healthy_run_has_no_violation():
    assert violations(healthy()) == []


def test_each_broken_invariant_is_named():
    ob = lambda s: s["onboardings"]["onboarding-a"]  # noqa: E731
    cases = {
        "not launched": lambda s: ob(s).update(stage="agreements"),
        "2 accepted offers": lambda s: ob(s)["offers"].append({"npi": "3", "status": "accepted"}),
        "2 completed envelopes": lambda s: ob(s)["envelopes"].append({"id": "e3", "kind": "cpa", "status": "completed"}),
        "the e-sign server completed e2": lambda s: ob(s)["agreements"][0].update(envelope_id="e1"),
        "stray envelope e1": lambda s: ob(s)["envelopes"][0].update(status="sent"),
        "its history completed 2": lambda s: ob(s)["expected_audit"].update(envelope_completed=2),
        "no clinic_launched entry": lambda s: ob(s)["audit"].remove({"action": "clinic_launched"}),
        "active_clinics 3 != seeded 2 + placements 0": lambda s: s["physicians"]["1"].update(placements=0),
        "1 unreleased reservations, 0 placements": lambda s: s["physicians"]["2"].update(
            reserved=1, active_clinics=0),
    }
    for needle, change in cases.items():
        found = broken(change)
        assert any(needle in v for v in found), (needle, found)


def test_server_kills_are_spread_among_worker_kills():
    assert kill_plan(10, 2) == ["worker"] * 3 + ["temporal"] + ["worker"] * 3 + ["temporal"] + ["worker"] * 4
    assert sorted(kill_plan(0, 2)) == ["temporal", "temporal"]
    assert kill_plan(3, 0) == ["worker"] * 3
