"""Recorded histories replay against today's workflow code: a change that would break running
onboardings (non-determinism) fails here before it reaches production."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(f"onboarding-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[OnboardingWorkflow, OversightWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_histories_are_present():
    assert len(HISTORIES) >= 2
