"""Recorded histories replay against today's workflow code: a change that would break running
onboardings (non-determinism) fails here before it reaches production.

Every file in ``tests/histories/`` replays with the project's converter both without and with the
payload codec (a deployment may switch encryption on while those workflows run); histories recorded
with encryption on replay with the recording's test key. Files are never re-recorded or deleted.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from domain.onboarding import OnboardingInput, OnboardingStatus
from mdco_temporal.client import converter_for_keys
from mdco_temporal.codec import ENCODING, new_key_spec
from workflows.onboarding import OnboardingWorkflow
from workflows.compliance import AdverseEventWorkflow, ComplianceSweepWorkflow
from workflows.oversight import OversightWorkflow
from workflows.reconcile import ReservationReconciliationWorkflow

HERE = Path(__file__).parent / "histories"
HISTORIES = sorted(HERE.glob("*.json"))
KEY_FILE = HERE / "TEST_PAYLOAD_KEYS.txt"
#: The key the encrypted histories were recorded with (a test-only key), or a fresh one.
RECORDED_KEYS = next((line.strip() for line in KEY_FILE.read_text().splitlines()
                      if line.strip() and not line.startswith("#")), "") if KEY_FILE.exists() else ""
ENCRYPTED_MARK = __import__("base64").b64encode(ENCODING).decode()
#: Every workflow type a history here may be of (besides the onboarding, which one test swaps).
OTHER_WORKFLOWS = [OversightWorkflow, ComplianceSweepWorkflow, AdverseEventWorkflow, ReservationReconciliationWorkflow]


def _encrypted(path: Path) -> bool:
    return ENCRYPTED_MARK in path.read_text()


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())


CASES = [(p, codec) for p in HISTORIES for codec in (("on",) if _encrypted(p) else ("off", "on"))]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path,codec", CASES, ids=[f"{p.stem}-codec-{c}" for p, c in CASES])
async def test_history_replays(path: Path, codec: str):
    keys = (RECORDED_KEYS or new_key_spec()) if codec == "on" else ""
    replayer = Replayer(workflows=[OnboardingWorkflow, *OTHER_WORKFLOWS], data_converter=converter_for_keys(keys))
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def test_histories_are_present():
    assert len(HISTORIES) >= 2


@workflow.defn(name="OnboardingWorkflow", sandboxed=False)
class IncompatibleOnboarding(OnboardingWorkflow):
    """A deliberately unguarded change: a timer before anything else, without ``workflow.patched``."""

    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingStatus:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


@pytest.mark.timeout(60)
async def test_an_unguarded_change_fails_the_replay():
    path = next(p for p in HISTORIES if p.stem.startswith("onboarding_") and not _encrypted(p))
    replayer = Replayer(workflows=[IncompatibleOnboarding, *OTHER_WORKFLOWS], data_converter=converter_for_keys(""))
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(_history(path))
