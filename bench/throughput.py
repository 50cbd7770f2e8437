"""Onboardings per second against the bare-Temporal floor, in one command (issue 12).

On a fresh embedded stack (``starter.stack.Stack`` on free ports, SQLite, payloads encrypted as always):

1. *real*: N demo onboardings (the 3 shipped intakes cycled, fresh clinic keys) started through
   ``POST /onboardings`` (8 concurrent clients) and played to ``launched`` by the simulated humans
   (``starter.humans.Driver``: HTTP API with a token, signers on the local e-sign server whose HMAC-signed
   Connect webhook reaches the API), all N at once. Rate = N / (first start .. last seen launched).
2. From the N launched runs' histories: activities (``ActivityTaskScheduled``, in batches = scheduled by
   the same workflow task), signals, updates, timers, workflow tasks, events and payload bytes per run.
3. *floor*: ``bench.floor.FloorWorkflow`` — run i does exactly real run i's activity batches (no-op
   activities, in parallel within a batch) and receives its signals and updates (sent back to back by
   the client) and nothing else — N at once on the same dev server, worker process with the same knobs.
   Measured before and after the real phase; the floor figure is their mean.

    .venv/bin/python -m bench.throughput --onboardings 40 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from bench.esign_calls import bench_settings
from bench.floor import FLOOR_QUEUE, FloorInput

GOAL_RATIO = 0.6
#: what only the benchmark changes on its stack: the API's rate limits out of the way (one token plays
#: every human; as Settings, since the stack exports every Settings field over the environment), Connect
#: retries in tenths of a second
BENCH_SETTINGS = {"rate_limit_subject": "1000000/minute", "rate_limit_client": "1000000/minute",
                  "rate_limit_link": "1000000/minute"}
BENCH_ENV = {"MDCO_ESIGN_CONNECT_BACKOFF_S": "0.1"}


# ---------------------------------------------------------------- histories
def history_figures(history) -> dict:
    """Counts and sizes of one run's history (a ``temporalio.client.WorkflowHistory``)."""
    from temporalio.api.enums.v1 import EventType

    kinds = Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events)
    batches: Counter[int] = Counter()
    local = 0
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            batches[e.activity_task_scheduled_event_attributes.workflow_task_completed_event_id] += 1
        # a local activity (answer-writes-local-v1) is still an activity of the run: the floor does it too
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and \
                e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            batches[e.marker_recorded_event_attributes.workflow_task_completed_event_id] += 1
            local += 1
    order = sorted(batches)
    return {
        "events": len(history.events),
        "history_bytes": sum(e.ByteSize() for e in history.events),
        "payload_bytes": sum(_payload_bytes(e) for e in history.events),
        "activities": kinds["ACTIVITY_TASK_SCHEDULED"] + local,
        "local_activities": local,
        "activity_batches": [batches[k] for k in order],
        "signals": kinds["WORKFLOW_EXECUTION_SIGNALED"],
        "updates": kinds["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"],
        "timers": kinds["TIMER_STARTED"],
        "workflow_tasks": kinds["WORKFLOW_TASK_COMPLETED"],
        "kinds": dict(kinds),
    }


def payloads(msg) -> list:
    """Every ``Payload`` under a history event (or any proto message)."""
    from google.protobuf.message import Message
    from temporalio.api.common.v1 import Payload

    found = []
    for desc, value in msg.ListFields():
        if desc.message_type is None:
            continue
        if isinstance(value, Message):
            items = [value]
        elif callable(getattr(value, "values", None)):  # a map field
            items = list(value.values())
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif isinstance(item, Message):
                found.extend(payloads(item))
    return found


def _payload_bytes(msg) -> int:
    """Bytes of every ``Payload`` (metadata + data) under a history event."""
    return sum(p.ByteSize() for p in payloads(msg))


async def plaintext_payload_bytes(settings, history) -> int:
    """The same payloads decrypted with the stack's key (what they would weigh without encryption)."""
    from mdco_temporal.client import data_converter

    codec = data_converter(settings).payload_codec
    every = [p for e in history.events for p in payloads(e)]
    if codec is None:
        return sum(p.ByteSize() for p in every)
    return sum(p.ByteSize() for p in await codec.decode(every))


async def fetch_histories(settings, workflow_ids: list[str]) -> dict[str, object]:
    from temporalio.client import Client

    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    return {wf: await client.get_workflow_handle(wf).fetch_history() for wf in workflow_ids}


# ---------------------------------------------------------------- the floor
def start_floor_worker(settings, log: Path) -> subprocess.Popen:
    from starter.stack import PROJECT_ROOT, stack_env

    env = {**os.environ, **stack_env(settings)}
    proc = subprocess.Popen([sys.executable, "-m", "bench.floor", "--address", settings.temporal_address,
                             "--task-queue", FLOOR_QUEUE], cwd=PROJECT_ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # a loaded machine takes a while to import the SDK
    while "polling" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"floor worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


async def run_floor(settings, shapes: list[dict], tag: str) -> float:
    """All floor runs at once (run i shaped like real run i); their wall time in seconds."""
    from temporalio.client import Client

    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)

    async def one(i: int, shape: dict) -> None:
        inp = FloorInput(batches=shape["activity_batches"], messages=shape["signals"] + shape["updates"])
        handle = await client.start_workflow("FloorWorkflow", inp, id=f"floor-{tag}-{i}", task_queue=FLOOR_QUEUE)
        for _ in range(shape["updates"]):
            await handle.execute_update("answer")
        for _ in range(shape["signals"]):
            await handle.signal("poke")
        await handle.result()

    started = time.monotonic()
    await asyncio.gather(*(one(i, s) for i, s in enumerate(shapes)))
    return time.monotonic() - started


# ---------------------------------------------------------------- the measurement
@contextmanager
def bench_stack(prefix: str, services: list[str] | None = None, env: dict[str, str] | None = None):
    """A fresh embedded stack (free ports, SQLite, a temp dir, the API's rate limits out of the way) for
    the block; its resolved settings."""
    from starter.stack import Stack

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        stack = Stack(bench_settings(Path(tmp)).model_copy(update=BENCH_SETTINGS), services=services,
                      env=BENCH_ENV if env is None else env)
        stack.start(detach=False)
        try:
            yield stack.settings
        finally:
            stack.stop()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text} (load {load_average()})", file=sys.stderr, flush=True)


def measure(n: int, timeout: float, warmup: int, save_history: str = "") -> dict:
    from starter.humans import Driver, Humans, demo_intakes, seed_demo_data
    from starter.stack import Stack

    run_id = time.strftime("%H%M%S")
    with tempfile.TemporaryDirectory(prefix="mdco-bench-tp-") as tmp:
        settings = bench_settings(Path(tmp)).model_copy(update=BENCH_SETTINGS)
        stack = Stack(settings, env=BENCH_ENV)
        stack.start(detach=False)
        floor_proc = None
        try:
            settings = stack.settings
            seed_demo_data(settings)
            floor_proc = start_floor_worker(settings, Path(tmp) / "floor-worker.log")
            if warmup:  # first runs pay imports, OAuth, connection set-up
                asyncio.run(Driver(settings, Humans(), subject="bench").run(demo_intakes(warmup, f"w{run_id}"),
                                                                            timeout=timeout))
            load_before = load_average()
            intakes = demo_intakes(n, run_id)
            wfs = [f"onboarding-{i['clinic_key']}" for i in intakes]
            driver = Driver(settings, Humans(), subject="bench")
            seed_demo_data(settings)  # re-import resets the roster's capacity counters: every phase can place
            started = time.monotonic()
            asyncio.run(driver.run(intakes, timeout=timeout))
            real_s = time.monotonic() - started
            progress(f"real phase 1: {n} launched in {real_s:.1f} s")
            load_real = load_average()
            histories = asyncio.run(fetch_histories(settings, wfs))
            shapes = [history_figures(histories[wf]) for wf in wfs]
            for wf, shape in zip(wfs, shapes):
                shape["workflow_id"] = wf
                shape["plaintext_payload_bytes"] = asyncio.run(plaintext_payload_bytes(settings, histories[wf]))
            if save_history:
                Path(save_history).write_text(histories[wfs[0]].to_json())
            floor_a = asyncio.run(run_floor(settings, shapes, f"a{run_id}"))
            progress(f"floor phase 1: {n} done in {floor_a:.1f} s")
            load_floor = load_average()
            rerun_intakes = demo_intakes(n, f"r{run_id}")
            seed_demo_data(settings)
            started = time.monotonic()
            asyncio.run(Driver(settings, Humans(), subject="bench").run(rerun_intakes, timeout=timeout))
            real2_s = time.monotonic() - started
            progress(f"real phase 2: {n} launched in {real2_s:.1f} s")
            floor_b = asyncio.run(run_floor(settings, shapes, f"b{run_id}"))
            progress(f"floor phase 2: {n} done in {floor_b:.1f} s")
            load_after = load_average()
        finally:
            if floor_proc is not None:
                floor_proc.terminate()
                floor_proc.wait(10)
            stack.stop()
    return {"n": n, "real_s": [real_s, real2_s], "floor_s": [floor_a, floor_b], "shapes": shapes,
            "driver": {"polls": driver.tally.polls, "actions": driver.tally.actions,
                       "rate_limited": driver.tally.rate_limited},
            "load": {"before": load_before, "after_real": load_real, "after_floor": load_floor, "end": load_after},
            "worker": {k: getattr(settings, k) for k in type(settings).model_fields if k.startswith("worker_max")
                       or k.endswith("_pollers")}}


def summarize(fig: dict) -> dict:
    n, shapes = fig["n"], fig["shapes"]
    real_rate = statistics.mean(n / s for s in fig["real_s"])
    floor_rate = statistics.mean(n / s for s in fig["floor_s"])

    def per(key: str) -> float:
        return round(statistics.mean(s[key] for s in shapes), 2)

    return {
        "onboardings": n,
        "onboardings_per_s": round(real_rate, 3),
        "onboardings_per_s_each_phase": [round(n / s, 3) for s in fig["real_s"]],
        "floor_onboardings_per_s": round(floor_rate, 3),
        "floor_each_phase": [round(n / s, 3) for s in fig["floor_s"]],
        "ratio": round(real_rate / floor_rate, 3),
        "goal_ratio": GOAL_RATIO,
        "activities_per_onboarding": per("activities"),
        "activity_batches_per_onboarding": round(statistics.mean(len(s["activity_batches"]) for s in shapes), 2),
        "signals_per_onboarding": per("signals"),
        "updates_per_onboarding": per("updates"),
        "messages_per_onboarding": round(per("signals") + per("updates"), 2),
        "timers_per_onboarding": per("timers"),
        "workflow_tasks_per_onboarding": per("workflow_tasks"),
        "events_per_onboarding": per("events"),
        "payload_bytes_per_onboarding": per("payload_bytes"),
        "plaintext_payload_bytes_per_onboarding": per("plaintext_payload_bytes"),
        "history_bytes_per_onboarding": per("history_bytes"),
        "status_polls": fig["driver"]["polls"],
        "human_actions": fig["driver"]["actions"],
        "rate_limited_answers": fig["driver"]["rate_limited"],
        "load_average": fig["load"],
        "worker": fig["worker"],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--onboardings", "-n", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3, help="onboardings run (unmeasured) first")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--shapes", action="store_true", help="with --json: every run's history figures too")
    parser.add_argument("--save-history", default="", help="write the first measured run's history (JSON) here")
    args = parser.parse_args(argv)
    if args.onboardings < 1:
        parser.error("--onboardings: must be at least 1")
    fig = measure(args.onboardings, args.timeout, args.warmup, args.save_history)
    out = summarize(fig)
    if args.shapes:
        out["shapes"] = fig["shapes"]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
