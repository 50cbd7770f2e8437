"""The worker's knobs come from MDCO_WORKER_* (config.Settings) — figures in BENCHMARKS.md."""

from __future__ import annotations

from temporalio.worker import PollerBehaviorSimpleMaximum

from config import Settings
from worker import worker_tuning


def test_defaults_bound_the_workflow_cache():
    tuning = worker_tuning(Settings())
    assert tuning["max_cached_workflows"] == 150  # 2,000 open: 283 MiB (250: 327, 1000: ~520; BENCHMARKS.md)
    assert tuning["max_concurrent_activities"] == 16
    assert tuning["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(5)
    assert "workflow_runner" not in tuning  # the SDK's default sandbox


def test_environment_sets_every_knob(monkeypatch):
    for name, value in (("MAX_CACHED_WORKFLOWS", "40"), ("MAX_CONCURRENT_WORKFLOW_TASKS", "7"),
                        ("MAX_CONCURRENT_ACTIVITIES", "3"), ("WORKFLOW_TASK_POLLERS", "2"),
                        ("ACTIVITY_TASK_POLLERS", "1"), ("SANDBOX_PASSTHROUGH_ALL", "1")):
        monkeypatch.setenv(f"MDCO_WORKER_{name}", value)
    tuning = worker_tuning(Settings())
    assert (tuning["max_cached_workflows"], tuning["max_concurrent_workflow_tasks"],
            tuning["max_concurrent_activities"]) == (40, 7, 3)
    assert tuning["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(2)
    assert tuning["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(1)
    assert tuning["workflow_runner"].restrictions.passthrough_all_modules
