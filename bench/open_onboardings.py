"""Worker memory with many onboardings open and waiting on humans (issue 12: ≤ 300 MiB at 2,000 open).

On a fresh embedded stack (free ports, SQLite): the worker's RSS idle (after the stack is up and has
settled), then after ``POST /onboardings`` of each step's onboardings (8 concurrent clients; the shipped
demo intakes cycled with fresh keys) once every open one is waiting on a human (visibility:
``WaitingOn IN ('physician', 'ops')``). Nobody answers. The worker knobs come from the command line
(``MDCO_WORKER_*``, ``config.Settings``).

    .venv/bin/python -m bench.open_onboardings --open 200,2000 --max-cached-workflows 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.esign_calls import bench_settings
from bench.throughput import BENCH_ENV, BENCH_SETTINGS, load_average

WAITING = ("WorkflowType = 'OnboardingWorkflow' AND ExecutionStatus = 'Running' "
           "AND WaitingOn IN ('physician', 'ops')")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int, seconds: float = 6.0) -> float:
    """The worker's RSS once it stops moving: the last of samples 1 s apart over ``seconds``."""
    samples = []
    for _ in range(int(seconds)):
        samples.append(rss_mib(pid))
        time.sleep(1)
    return samples[-1]


def sticky_cache_size(settings) -> float | None:
    """``temporal_sticky_cache_size`` from the worker's /metrics (the SDK's count of cached workflows)."""
    try:
        text = httpx.get(f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics",
                         timeout=5).text
    except httpx.HTTPError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("temporal_sticky_cache_size") or line.startswith("mdco_temporal_sticky_cache_size")]
    return sum(values) if values else None


async def count_waiting(settings) -> int:
    from temporalio.client import Client

    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    return (await client.count_workflows(WAITING)).count


def measure(steps: list[int], worker: dict[str, int], timeout: float) -> dict:
    from api.auth import auth_headers
    from starter.humans import Driver, demo_intakes, seed_demo_data
    from starter.stack import Stack, pid_file

    run_id = time.strftime("%H%M%S")
    with tempfile.TemporaryDirectory(prefix="mdco-bench-open-") as tmp:
        settings = bench_settings(Path(tmp)).model_copy(update={**BENCH_SETTINGS, **worker})
        stack = Stack(settings, env=BENCH_ENV)
        stack.start(detach=False)
        try:
            settings = stack.settings
            pid = int(pid_file(settings, "worker").read_text().split()[0])
            seed_demo_data(settings)
            time.sleep(3)
            out = {"worker": worker, "idle_mib": round(settled_rss(pid), 1), "steps": [],
                   "load_start": load_average()}
            print(json.dumps(out), file=sys.stderr, flush=True)
            opened = 0
            for target in steps:
                intakes = demo_intakes(target - opened, f"{run_id}s{target}")
                started = time.monotonic()

                async def start() -> None:
                    headers = auth_headers(settings, "ops", "bench")
                    async with httpx.AsyncClient(base_url=settings.api_base_url, timeout=60, headers=headers) as api:
                        await Driver(settings, start_concurrency=8).start(api, intakes)

                asyncio.run(start())
                start_s = time.monotonic() - started
                deadline = time.monotonic() + timeout
                while (waiting := asyncio.run(count_waiting(settings))) < target:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{waiting} of {target} waiting after {timeout:.0f} s")
                    time.sleep(2)
                settle_s = time.monotonic() - started
                rss = settled_rss(pid)
                opened = target
                out["steps"].append({"open": target, "rss_mib": round(rss, 1), "starts_s": round(start_s, 1),
                                     "all_waiting_s": round(settle_s, 1), "cached": sticky_cache_size(settings),
                                     "per_open_kib": round((rss - out["idle_mib"]) * 1024 / target, 1),
                                     "load": load_average()})
                print(json.dumps(out["steps"][-1]), file=sys.stderr, flush=True)
        finally:
            stack.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.open_onboardings", description=__doc__.split("\n")[0])
    parser.add_argument("--open", default="200", help="comma-separated totals of open onboardings, ascending")
    parser.add_argument("--max-cached-workflows", type=int, default=None)
    parser.add_argument("--workflow-task-pollers", type=int, default=None)
    parser.add_argument("--activity-task-pollers", type=int, default=None)
    parser.add_argument("--max-concurrent-workflow-tasks", type=int, default=None)
    parser.add_argument("--sandbox-passthrough-all", action="store_true")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds for each step to be all waiting")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.open.split(",")]
    worker = {f"worker_{k}": v for k, v in (("max_cached_workflows", args.max_cached_workflows),
                                            ("workflow_task_pollers", args.workflow_task_pollers),
                                            ("activity_task_pollers", args.activity_task_pollers),
                                            ("max_concurrent_workflow_tasks", args.max_concurrent_workflow_tasks))
              if v is not None}
    if args.sandbox_passthrough_all:
        worker["worker_sandbox_passthrough_all"] = True
    print(json.dumps(measure(steps, worker, args.timeout), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
