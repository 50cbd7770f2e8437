"""Answer latency (issue 12): how long a human answer takes to show in ``GET /onboardings/{id}`` with N
onboardings in flight. Goal: p99 ≤ 250 ms with 100 in flight.

A fresh embedded stack (as ``bench.throughput``: SQLite, payloads encrypted, the API's rate limits out of
the way, the demo roster with capacity raised by N); N demo onboardings started at once and played to
``launched`` by ``starter.humans.Driver``. Each answer is timed from just before it is sent until the
first status read that shows it, read every ``--poll-ms`` (10 ms) after the answer call returns:

- ``plan``, ``accept``, ``protocols`` (Temporal updates behind ``POST .../approve|accept``): the plan
  approved (stage past ``needs_assessment``), the offer ``accepted``, the protocols ``approved``;
- ``pharmacy`` (a signal behind ``POST .../confirm``): the pharmacy ``confirmed``;
- ``sign`` (a Connect event: the signer signs on the e-sign server, whose HMAC-signed webhook reaches the
  API, which signals the workflow): the envelope ``completed``.

Each figure carries how many onboardings were in flight (not yet launched) when the answer was sent.

    .venv/bin/python -m bench.answer_latency --onboardings 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx

from bench.chaos import seed_roster
from bench.throughput import bench_stack, load_average, progress
from starter.humans import Action, Driver, launched

GOAL_P99_MS = 250.0


def reflected(action: Action, st: dict) -> bool:
    """Whether the status ``st`` shows the answer ``action``."""
    if action.kind == "plan":
        return st.get("stage") != "needs_assessment"
    if action.kind == "accept":
        return any(o["npi"] == action.target and o["status"] == "accepted" for o in st.get("offers", []))
    if action.kind == "protocols":
        return bool(st.get("protocols")) and all(p["status"] == "approved" for p in st["protocols"])
    if action.kind == "pharmacy":
        return any(p["pharmacy_id"] == action.target and p["status"] == "confirmed" for p in st.get("pharmacies", []))
    if action.kind == "sign":
        return launched(st) or any(e["envelope_id"] == action.target and e["status"] == "completed"
                                   for e in st.get("envelopes", []))
    return True


class TimedDriver(Driver):
    """The shared driver, with each answer timed until the status shows it."""

    def __init__(self, *args, poll_s: float = 0.01, give_up_s: float = 60.0, **kw):
        super().__init__(*args, **kw)
        self.poll_s, self.give_up_s = poll_s, give_up_s
        self.samples: list[dict] = []
        self.unseen: list[dict] = []

    def in_flight(self) -> int:
        return sum(1 for s in self.statuses.values() if not (s and launched(s)))

    async def _do(self, api, esign, wf: str, action: Action):
        flying = self.in_flight()
        sent = time.perf_counter()
        ok = await super()._do(api, esign, wf, action)
        if ok is not True:
            return ok
        answered = time.perf_counter()
        while time.perf_counter() - sent < self.give_up_s:
            try:
                r = await api.get(f"/onboardings/{wf}")
            except httpx.TransportError:  # no answer in time: counted as unseen if it never shows
                continue
            if r.status_code == 200 and reflected(action, r.json()):
                seen = time.perf_counter()
                self.samples.append({"kind": action.kind, "ms": (seen - sent) * 1000,
                                     "call_ms": (answered - sent) * 1000, "in_flight": flying})
                return ok
            await asyncio.sleep(self.poll_s)
        self.unseen.append({"kind": action.kind, "workflow_id": wf, "target": action.target})
        return ok


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def figures(samples: list[dict]) -> dict:
    ms = [s["ms"] for s in samples]
    if not ms:
        return {"answers": 0}
    return {"answers": len(ms), "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms), 1),
            "answer_call_p50_ms": round(statistics.median(s["call_ms"] for s in samples), 1)}


#: the worker's SDK metrics that say where an answer waits: task pick-up and the server's replies
TASK_METRICS = {"workflow_task_schedule_to_start": "temporal_workflow_task_schedule_to_start_latency",
                "activity_schedule_to_start": "temporal_activity_schedule_to_start_latency",
                "respond_workflow_task_completed": 'operation="RespondWorkflowTaskCompleted"',
                "respond_activity_task_completed": 'operation="RespondActivityTaskCompleted"',
                "respond_query_task_completed": 'operation="RespondQueryTaskCompleted"'}


def worker_task_latency(settings) -> dict:
    """Mean milliseconds (and counts) of ``TASK_METRICS`` from the worker's /metrics, over the whole run."""
    text = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=10).text
    out = {}
    for name, needle in TASK_METRICS.items():
        sums = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if needle in line and not line.startswith("#") and ("_sum{" in line or "_sum " in line)]
        counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if needle in line and not line.startswith("#") and ("_count{" in line or "_count " in line)]
        if counts and sum(counts):
            out[name] = {"mean_ms": round(sum(sums) / sum(counts), 1), "count": int(sum(counts))}
    return out


def measure(n: int, timeout: float, poll_s: float, busy: int) -> dict:
    from starter.humans import Humans, demo_intakes

    run_id = time.strftime("l%H%M%S")
    with bench_stack("mdco-bench-latency-") as settings:
        seed_roster(settings, n + 3)
        asyncio.run(Driver(settings, Humans(), subject="bench").run(demo_intakes(3, f"w{run_id}"),
                                                                    timeout=timeout))  # warm-up
        driver = TimedDriver(settings, Humans(), subject="bench", poll_s=poll_s)
        load_before = load_average()
        started = time.monotonic()
        stuck = ""
        try:
            asyncio.run(driver.run(demo_intakes(n, run_id), timeout=timeout))
        except TimeoutError as exc:  # the answers timed so far still count; say which did not get there
            stuck = str(exc)[:1000]
        elapsed = time.monotonic() - started
        progress(f"{n} launched in {elapsed:.1f} s, {len(driver.samples)} answers timed")
        load_after = load_average()
        tasks = worker_task_latency(settings)
    busy_samples = [s for s in driver.samples if s["in_flight"] >= busy]
    kinds = sorted({s["kind"] for s in driver.samples})
    return {
        "onboardings": n, "elapsed_s": round(elapsed, 1), "poll_ms": poll_s * 1000, "goal_p99_ms": GOAL_P99_MS,
        "all": figures(driver.samples),
        f"with_at_least_{busy}_in_flight": figures(busy_samples),
        "by_kind": {k: figures([s for s in driver.samples if s["kind"] == k]) for k in kinds},
        f"by_kind_with_at_least_{busy}_in_flight": {k: figures([s for s in busy_samples if s["kind"] == k])
                                                    for k in kinds},
        "worker_task_latency": tasks,
        "not_seen_in_time": driver.unseen[:20], "not_launched_in_time": stuck,
        "load_average": {"before": load_before, "after": load_after},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answer_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--onboardings", "-n", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=10.0, help="status read interval while an answer is unseen")
    parser.add_argument("--busy", type=int, default=0, help="also report answers sent with at least this many "
                        "onboardings in flight (default: 90 %% of --onboardings)")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.onboardings < 1:
        parser.error("--onboardings: must be at least 1")
    if args.poll_ms <= 0:
        parser.error("--poll-ms: must be positive")
    out = measure(args.onboardings, args.timeout, args.poll_ms / 1000, args.busy or int(args.onboardings * 0.9))
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
