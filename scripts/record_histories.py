"""Record workflow histories for the replay tests (run when a workflow change is intended to be
compatible; commit the JSON it writes under tests/histories/).

    .venv/bin/python scripts/record_histories.py
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from domain.messages import CancelRequest, PhysicianAnswer  # noqa: E402
from starter.binaries import temporal_test_server  # noqa: E402
from mdco_temporal.client import ensure_search_attributes  # noqa: E402
from tests.fake_activities import FakeWorld  # noqa: E402
from tests.test_workflow_onboarding import Harness, play_to_launch, until  # noqa: E402
from workflows.onboarding import OnboardingWorkflow  # noqa: E402
from workflows.oversight import OversightWorkflow  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "histories"


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(data_converter=pydantic_data_converter,
                                                        test_server_existing_path=temporal_test_server())
    await ensure_search_attributes(env.client)
    world = FakeWorld()
    async with Worker(env.client, task_queue="record", workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        h = Harness(env, "record", world)
        # 1. happy path with one decline
        handle = await h.start("history-happy")
        st = await until(handle, lambda s: len(s.offers) == 1)
        await handle.execute_update(OnboardingWorkflow.decline_offer, PhysicianAnswer(npi=st.offers[0].npi))
        st = await until(handle, lambda s: len(s.offers) == 2)
        final = await play_to_launch(h, handle, st.offers[1].npi)
        await env.client.get_workflow_handle(final.oversight_workflow_id).terminate("recorded")
        (OUT / "onboarding_happy_v1.json").write_text((await handle.fetch_history()).to_json())
        # 2. cancelled while waiting on the roster
        world.roster = []
        handle = await h.start("history-cancel")
        await until(handle, lambda s: s.waiting_on == "roster")
        await handle.execute_update(OnboardingWorkflow.cancel, CancelRequest(reason="recorded"))
        await handle.result()
        (OUT / "onboarding_cancelled_v1.json").write_text((await handle.fetch_history()).to_json())
    await env.shutdown()
    print(f"wrote histories to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
