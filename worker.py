"""The Temporal worker: all workflows and activities of mdco-onboarding on one task queue.

Run as ``python worker.py``; it writes ``var/run/worker.ready`` once it polls, for ``mdco up``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from config import Settings, get_settings
from mdco_temporal.client import connect
from store.db import engine_from_settings
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

WORKFLOWS = [OnboardingWorkflow, OversightWorkflow]


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    onboarding = OnboardingActivities(settings, engine_from_settings(settings))
    oversight = OversightActivities(onboarding)
    return Worker(client, task_queue=settings.task_queue, workflows=WORKFLOWS,
                  activities=onboarding.all() + oversight.all(), activity_executor=executor,
                  max_concurrent_activities=16)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    client = await connect(settings)
    ready = settings.run_dir / "worker.ready"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, executor)
        async with worker:
            ready.parent.mkdir(parents=True, exist_ok=True)
            ready.write_text("ready\n")
            logging.info("worker polling task queue %s", settings.task_queue)
            await stop.wait()
    ready.unlink(missing_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
