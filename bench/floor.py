"""The bare-Temporal floor: a workflow that does nothing but the same number of activities (in the same
batches) and receives the same number of signals and updates as a real onboarding run did.

``bench.throughput`` runs its worker as a subprocess (``python -m bench.floor --address ... --task-queue
...``), like the real worker is one, with the same worker knobs (``config.Settings`` ``worker_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow

FLOOR_QUEUE = "mdco-bench-floor"


@dataclass
class FloorInput:
    batches: list[int] = field(default_factory=list)  # activity batches in order (each run in parallel)
    messages: int = 0  # signals + updates the run waits for


@activity.defn(name="floor_noop")
def floor_noop(i: int) -> int:
    return i


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    def __init__(self) -> None:
        self.received = 0

    @workflow.run
    async def run(self, inp: FloorInput) -> int:
        for size in inp.batches:
            await asyncio.gather(*(workflow.execute_activity(floor_noop, i, start_to_close_timeout=timedelta(seconds=60))
                                   for i in range(size)))
        await workflow.wait_condition(lambda: self.received >= inp.messages)
        return self.received

    @workflow.signal
    def poke(self) -> None:
        self.received += 1

    @workflow.update
    def answer(self) -> int:
        self.received += 1
        return self.received


async def serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from config import Settings
    from worker import worker_tuning

    client = await Client.connect(address)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    tuning = worker_tuning(Settings())
    with ThreadPoolExecutor(max_workers=tuning["max_concurrent_activities"]) as executor:
        worker = Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[floor_noop],
                        activity_executor=executor, **tuning)
        async with worker:
            print("floor worker polling", flush=True)
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description="the floor workflow's worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default=FLOOR_QUEUE)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.task_queue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
