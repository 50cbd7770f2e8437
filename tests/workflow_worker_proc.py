"""A workflow-only worker in a process of its own, for tests that SIGKILL it (the server then still
routes the run's tasks and queries to its sticky queue until that queue's schedule-to-start timeout).

    python -m tests.workflow_worker_proc ADDRESS TASK_QUEUE STICKY_TIMEOUT_S
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow


async def main(address: str, queue: str, sticky_s: float) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    async with Worker(client, task_queue=queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      sticky_queue_schedule_to_start_timeout=timedelta(seconds=sticky_s)):
        print("polling", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
