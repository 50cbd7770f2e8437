"""Start rate (issue 12): ``POST /onboardings`` with C concurrent clients over N starts, against bare
``client.start_workflow`` calls on the same Temporal dev server in the same command (the floor the API
can reach). Goal: ≥ 50 starts/s with 8 clients over 2,000.

A fresh stack of just the Temporal dev server and the API (no worker: the starts are measured, not the
onboardings they begin; ``--with-worker`` adds it and the e-sign server and SMTP sink, as in production
where the worker runs what was started). The demo intakes cycled with fresh clinic keys. ``--profile``:
the API's own CPU per start, from an in-process copy of the app (ASGI, same middleware) under cProfile.

    .venv/bin/python -m bench.start_rate --starts 2000 --clients 8 --json
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time

import httpx

from bench.throughput import bench_stack, load_average, progress

GOAL_PER_S = 50.0


async def api_starts(base_url: str, headers: dict, intakes: list[dict], clients: int,
                     transport: httpx.AsyncBaseTransport | None = None) -> float:
    """Seconds for ``POST /onboardings`` of every intake, ``clients`` at a time."""
    gate = asyncio.Semaphore(clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits,
                                 transport=transport) as api:
        async def one(intake: dict) -> None:
            async with gate:
                r = await api.post("/onboardings", json=intake)
                if r.status_code != 202:
                    raise RuntimeError(f"start {intake['clinic_key']}: {r.status_code} {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in intakes))
        return time.perf_counter() - started


async def raw_starts(settings, n: int, clients: int, tag: str) -> float:
    """Seconds for ``n`` bare starts (one small payload, nobody polls the queue), ``clients`` at a time,
    with the project's client (payload codec included)."""
    from mdco_temporal.client import connect

    client = await connect(settings)
    gate = asyncio.Semaphore(clients)

    async def one(i: int) -> None:
        async with gate:
            await client.start_workflow("RawStart", {"i": i}, id=f"raw-{tag}-{i}", task_queue="bench-raw-start")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


def profile_api(settings, headers: dict, intakes: list[dict], clients: int) -> dict:
    """The app in this process (ASGI, same middleware, same server): CPU ms per start and the top costs."""
    from api.app import create_app

    app = create_app(settings=settings)
    transport = httpx.ASGITransport(app=app)
    prof = cProfile.Profile()

    async def both() -> tuple[float, float]:  # one loop: the app's rate limiter binds its locks to it
        await api_starts("http://api", headers, intakes[:10], clients, transport)  # connect, warm up
        cpu = time.process_time()
        prof.enable()
        wall = await api_starts("http://api", headers, intakes[10:], clients, transport)
        prof.disable()
        return wall, time.process_time() - cpu

    wall, cpu = asyncio.run(both())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    n = len(intakes) - 10
    return {"starts": n, "per_s": round(n / wall, 1), "cpu_ms_per_start": round(cpu / n * 1000, 2),
            "top_by_own_time": out.getvalue().strip().splitlines()[-16:]}


def measure(n: int, clients: int, with_worker: bool, profile: bool) -> dict:
    from api.auth import auth_headers
    from starter.humans import demo_intakes, seed_demo_data

    run_id = time.strftime("s%H%M%S")
    services = ["temporal", "esign", "smtp", "api", "worker"] if with_worker else ["temporal", "api"]
    with bench_stack("mdco-bench-starts-", services) as settings:
        if with_worker:
            seed_demo_data(settings)
        headers = auth_headers(settings, "ops", "bench-starts")
        loads = {"before": load_average()}
        api_s = asyncio.run(api_starts(settings.api_base_url, headers, demo_intakes(n, run_id), clients))
        progress(f"API: {n} starts in {api_s:.1f} s")
        loads["after_api"] = load_average()
        raw_s = asyncio.run(raw_starts(settings, n, clients, run_id))
        progress(f"bare client: {n} starts in {raw_s:.1f} s")
        loads["after_raw"] = load_average()
        prof = profile_api(settings, headers, demo_intakes(min(n, 300) + 10, f"p{run_id}"), clients) \
            if profile else None
    out = {"starts": n, "clients": clients, "worker_running": with_worker,
           "api_starts_per_s": round(n / api_s, 1), "bare_client_starts_per_s": round(n / raw_s, 1),
           "api_vs_bare": round(raw_s / api_s, 3), "goal_per_s": GOAL_PER_S, "load_average": loads}
    if prof:
        out["profile"] = prof
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.start_rate", description=__doc__.split("\n")[0])
    parser.add_argument("--starts", "-n", type=int, default=2000)
    parser.add_argument("--clients", "-c", type=int, default=8)
    parser.add_argument("--with-worker", action="store_true", help="the worker runs what is started meanwhile")
    parser.add_argument("--profile", action="store_true", help="also the API's CPU per start, under cProfile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.starts < 1 or args.clients < 1:
        parser.error("--starts/--clients: must be at least 1")
    out = measure(args.starts, args.clients, args.with_worker, args.profile)
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
