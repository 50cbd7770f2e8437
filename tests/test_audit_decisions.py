"""The audit trail never drops a decision: the same person deciding twice is two entries, a retried
activity is one."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
from temporalio.testing import ActivityEnvironment

from activities.onboarding import OnboardingActivities
from config import Settings
from domain.messages import DecisionRecord
from store import audit

pytestmark = pytest.mark.timeout(60)


def run_as(activity_id: str, run_id: str, attempt: int, fn, *args):
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_id=activity_id, workflow_run_id=run_id, attempt=attempt)
    return env.run(fn, *args)


def test_a_second_resend_by_the_same_person_is_a_second_entry(engine, tmp_path):
    acts = OnboardingActivities(Settings(var_dir=tmp_path), engine)
    wf = "onboarding-audit-twice"
    first = DecisionRecord(workflow_id=wf, actor="ops:olga", action="agreements_resent", reason="declined",
                           at=datetime(2026, 12, 1, 15, tzinfo=timezone.utc))
    second = first.model_copy(update={"reason": "expired again", "at": datetime(2026, 12, 3, tzinfo=timezone.utc)})
    run_as("7", "run-1", 1, acts.record_decision, first)
    run_as("7", "run-1", 2, acts.record_decision, first)  # Temporal retried the same activity
    run_as("12", "run-1", 1, acts.record_decision, second)
    run_as("3", "run-2", 1, acts.record_decision, second)  # after continue-as-new ids start again
    entries = [e for e in audit.list_audit(engine, wf) if e["action"] == "agreements_resent"]
    assert [(e["actor"], e["reason"]) for e in entries] == [
        ("ops:olga", "declined"), ("ops:olga", "expired again"), ("ops:olga", "expired again")]
