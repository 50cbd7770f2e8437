"""bench.chaos's invariant checker finds each kind of broken invariant (a cheap check of the checker; the
chaos run itself is a benchmark, never part of the suite)."""

from __future__ import annotations

import copy

import json
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from bench.chaos import AUDIT_ACTIVITIES, LOCAL_DECISIONS, expected_audit, kill_plan, violations
from mdco_temporal.client import converter_for_keys
from tests.test_replay import RECORDED_KEYS

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
        "audit has 2 decision entries, its history completed 3":
            lambda s: ob(s)["expected_audit"].update({LOCAL_DECISIONS: 3}),
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


async def test_decisions_written_by_local_activities_are_expected():
    """A run whose answers' writes were local activities (answer-writes-local-v1): their markers carry no
    input, so the decisions they recorded are expected as a count (plan, decline, protocols, pharmacies)."""
    path = Path(__file__).parent / "histories" / "onboarding_answer_writes_local_v4.json"
    history = WorkflowHistory.from_json("wf", json.loads(path.read_text()))
    codec = converter_for_keys(RECORDED_KEYS).payload_codec  # recorded encrypted, with the test-only key
    inputs = {}
    for e in history.events:
        a = e.activity_task_scheduled_event_attributes
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and a.activity_type.name in AUDIT_ACTIVITIES:
            inputs[e.event_id] = json.loads((await codec.decode(list(a.input.payloads)))[0].data)
    expected = expected_audit(history, inputs)
    assert expected[LOCAL_DECISIONS] >= 3  # plan approved, protocols approved, a pharmacy confirmed at least
    assert "protocols_approved" not in expected  # its input is not in the history any more
