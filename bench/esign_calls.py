"""DocuSign REST calls per onboarding, counted by the local e-sign server (issue 5 benchmark).

Starts its own embedded stack (Temporal dev server, e-sign server, SMTP sink, API, worker) on free
ports in a temp dir, seeds the demo roster and pharmacies, runs N demo onboardings (fresh clinic
keys) to ``launched`` with Connect working, and reads ``GET /admin/stats`` of the e-sign server
(reset just before the onboardings start). Humans act through the HTTP API; signers sign through
the e-sign server's admin endpoint, whose Connect webhook reaches the API.
Target: ≤ 8 REST calls per onboarding with Connect working, 0 status polls.

    .venv/bin/python -m bench.esign_calls                     # 5 onboardings
    .venv/bin/python -m bench.esign_calls -n 5 --error-rate 0.2
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import httpx

from api.auth import auth_headers
from config import Settings

TARGET_PER_ONBOARDING = 8
DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
PLAN_REASON = "benchmark: blocking findings reviewed by ops"

#: ``METHOD /route`` as the server counts it -> what the adapter uses it for
OPERATIONS = {
    "GET /envelopes": "lookup by external_id",
    "POST /envelopes": "create",
    "GET /envelopes/{id}": "status GET (poll)",
    "PUT /envelopes/{id}": "void",
    "GET /envelopes/{id}/documents/{id}": "combined PDF download",
    "GET /envelopes/{id}/recipients": "recipients",
}
STATUS_POLL = "GET /envelopes/{id}"


# ---------------------------------------------------------------- stack and inputs
def _free_ports(count: int) -> list[int]:
    with ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def bench_settings(var_dir: Path) -> Settings:
    """Default timing (no 24 h silence check fires in a run), every port free, data under ``var_dir``."""
    temporal, ui, api, esign, smtp = _free_ports(5)
    return Settings(var_dir=var_dir, temporal_address=f"127.0.0.1:{temporal}", temporal_ui_port=ui,
                    api_port=api, esign_port=esign, smtp_port=smtp,
                    database_url=f"sqlite:///{(var_dir / 'mdco.db').resolve()}")


def demo_intakes(n: int, run_id: str) -> list[dict]:
    """``n`` demo intakes cycling through the shipped ones, each with a fresh clinic key."""
    shipped = [json.loads(p.read_text()) for p in sorted((DEMO_DIR / "intakes").glob("*.json"))]
    out = []
    for i in range(n):
        intake = dict(shipped[i % len(shipped)])
        intake["clinic_key"] = f"{intake['clinic_key']}-{run_id}-{i}"[:64]
        out.append(intake)
    return out


def seed_demo_data(settings: Settings) -> None:
    """The shipped roster and pharmacies (upserts: safe to repeat)."""
    from starter.demo import load_demo_data
    from store.db import engine_from_settings

    engine = engine_from_settings(settings)
    try:
        load_demo_data(engine)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- e-sign admin
def esign_admin(settings: Settings) -> httpx.Client:
    """A client on the local e-sign server's admin API (HTTPS with the server's own CA)."""
    from esign.sandbox import admin_client

    return admin_client(settings, timeout=15)


def set_faults(settings: Settings, **knobs) -> dict:
    with esign_admin(settings) as admin:
        r = admin.post("/admin/faults", json=knobs)
        r.raise_for_status()
        return r.json()


NO_FAULTS = {"error_rate": 0.0, "latency_ms": 0, "duplicate_deliveries": False, "out_of_order": False,
             "wrong_signature": False, "burst_limit": 0}


def sign_open_envelopes(settings: Settings, workflow_id: str, tries: int = 5) -> list[str]:
    """``esign.sandbox.sign_all`` with retries (admin calls are not fault-injected, but be robust)."""
    from esign.sandbox import sign_all

    for attempt in range(tries):
        try:
            return sign_all(settings, workflow_id)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (429, 500, 502, 503) or attempt == tries - 1:
                raise
        except httpx.TransportError:
            if attempt == tries - 1:
                raise
        time.sleep(0.5 * (attempt + 1))
    return []


# ---------------------------------------------------------------- the humans
def act(api: httpx.Client, settings: Settings, st: dict, done: set[str]) -> None:
    """What each human does when the onboarding waits on them (every call safe to repeat)."""
    wf = st["workflow_id"]
    stage, waiting = st["stage"], st.get("waiting_on")
    if stage == "needs_assessment" and waiting == "ops" and "plan" not in done:
        if api.post(f"/onboardings/{wf}/plan/approve", json={"reason": PLAN_REASON}).status_code == 200:
            done.add("plan")
    elif stage == "matching" and not st.get("physician_npi"):
        open_offers = [o["npi"] for o in st["offers"] if o["status"] == "open"]
        if open_offers:
            api.post(f"/onboardings/{wf}/offers/{open_offers[0]}/accept")
    elif stage == "protocol_setup" and st["protocols"] and "protocols" not in done:
        if api.post(f"/onboardings/{wf}/protocols/approve", json={"npi": st["physician_npi"]}).status_code == 200:
            done.add("protocols")
    elif stage == "pharmacy_coordination":
        for p in st["pharmacies"]:
            if p["status"] != "confirmed" and p["pharmacy_id"] not in done:
                if api.post(f"/onboardings/{wf}/pharmacies/{p['pharmacy_id']}/confirm").status_code == 200:
                    done.add(p["pharmacy_id"])
    elif stage == "agreements" and waiting == "signers":
        sign_open_envelopes(settings, wf)  # skips closed envelopes, so repeating it is harmless


def launched(status: dict) -> bool:
    return status.get("stage") == "launched"


def drive_to_launch(settings: Settings, intakes: list[dict], timeout: float = 240.0, *,
                    until: Callable[[dict], bool] = launched, sign: bool = True) -> dict[str, dict]:
    """Start the onboardings and play every human until ``until`` holds for all (default: all
    ``launched``); their last statuses. ``sign=False``: nobody signs envelopes. Raises
    ``TimeoutError`` (with the stuck ones' stages) if they do not all get there in time."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, dict] = {}
    done: dict[str, set[str]] = {}
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings)) as api:
        for intake in intakes:
            r = api.post("/onboardings", json=intake)
            if r.status_code not in (200, 202):
                raise RuntimeError(f"starting {intake['clinic_key']} failed: {r.status_code} {r.text[:500]}")
            wf = r.json()["workflow_id"]
            statuses[wf], done[wf] = {}, set()
        while time.monotonic() < deadline:
            for wf in statuses:
                if statuses[wf] and until(statuses[wf]):
                    continue
                r = api.get(f"/onboardings/{wf}")
                if r.status_code == 200:
                    statuses[wf] = r.json()
                    if not until(statuses[wf]) and (sign or statuses[wf]["stage"] != "agreements"):
                        act(api, settings, statuses[wf], done[wf])
            if all(s and until(s) for s in statuses.values()):
                return statuses
            time.sleep(0.3)
    stuck = {wf: (s.get("stage"), s.get("waiting_on"), s.get("waiting_reason")) for wf, s in statuses.items()
             if not (s and until(s))}
    raise TimeoutError(f"not there after {timeout:.0f} s: {stuck}")


# ---------------------------------------------------------------- the measurement
def measure(n: int, error_rate: float, timeout: float) -> dict:
    """Run the benchmark on a fresh stack; the raw figures."""
    from esign.sandbox import list_envelopes
    from starter.stack import Stack

    run_id = time.strftime("%H%M%S")
    with tempfile.TemporaryDirectory(prefix="mdco-bench-") as tmp:
        settings = bench_settings(Path(tmp))
        stack = Stack(settings, env={"MDCO_ESIGN_CONNECT_BACKOFF_S": "0.1"})
        stack.start(detach=False)
        try:
            settings = stack.settings
            seed_demo_data(settings)
            intakes = demo_intakes(n, run_id)
            with esign_admin(settings) as admin:
                admin.post("/admin/stats/reset").raise_for_status()
            set_faults(settings, **{**NO_FAULTS, "error_rate": error_rate})
            started = time.monotonic()
            try:
                statuses = drive_to_launch(settings, intakes, timeout)
            finally:
                set_faults(settings, **NO_FAULTS)
            took = time.monotonic() - started
            with esign_admin(settings) as admin:
                stats = admin.get("/admin/stats").json()
            per_wf = {}
            for wf, st in statuses.items():
                envs = list_envelopes(settings, f"{wf}:")
                per_wf[wf] = {"agreements": len(st["envelopes"]), "envelopes": len(envs),
                              "completed": sum(e["status"] == "completed" for e in envs)}
        finally:
            stack.stop()
    account = settings.docusign_account_id
    ops = stats["accounts"].get(account, {}).get("by_operation", {})
    return {"n": n, "error_rate": error_rate, "seconds": round(took, 1), "by_operation": ops,
            "rest_total": sum(ops.values()), "oauth": stats["oauth"], "onboardings": per_wf}


def report(fig: dict, argv: list[str]) -> str:
    """The Markdown snippet for BENCHMARKS.md."""
    n = fig["n"]
    agreements = sum(w["agreements"] for w in fig["onboardings"].values())
    tokens = fig["oauth"].get("token_issued", 0) + fig["oauth"].get("userinfo", 0)
    total = fig["rest_total"] + tokens
    per_onb = total / n
    polls = fig["by_operation"].get(STATUS_POLL, 0)
    mix: dict[int, int] = {}
    for w in fig["onboardings"].values():
        mix[w["agreements"]] = mix.get(w["agreements"], 0) + 1
    lines = [
        f"### DocuSign API calls per onboarding (error rate {fig['error_rate']:.0%})",
        "",
        f"`{' '.join(['.venv/bin/python -m bench.esign_calls', *map(shlex.quote, argv)])}` — {n} demo onboardings "
        f"({', '.join(f'{c}× {k} agreements' for k, c in sorted(mix.items()))}; {agreements} agreements) "
        f"to `launched` with Connect working, counted by the local e-sign server (`/admin/stats`), "
        f"{fig['seconds']} s.",
        "",
        "| operation | calls | per onboarding | per agreement |",
        "|---|---:|---:|---:|",
        f"| OAuth token + userinfo (per worker, cached) | {tokens} | {tokens / n:.2f} | {tokens / agreements:.2f} |",
    ]
    for op, count in sorted(fig["by_operation"].items(), key=lambda kv: -kv[1]):
        label = OPERATIONS.get(op, op)
        lines.append(f"| {label} (`{op}`) | {count} | {count / n:.2f} | {count / agreements:.2f} |")
    verdict = "meets" if per_onb <= TARGET_PER_ONBOARDING and polls == 0 else "MISSES"
    lines += [
        f"| **total** | **{total}** | **{per_onb:.2f}** | **{total / agreements:.2f}** |",
        "",
        f"Target ≤ {TARGET_PER_ONBOARDING} calls per onboarding, 0 status polls: {per_onb:.2f} "
        f"({per_onb / TARGET_PER_ONBOARDING:.0%} of target), {polls} status polls — {verdict} the target.",
    ]
    for k in sorted(mix):
        est = k * (fig["rest_total"] / agreements) + tokens / n
        if est > TARGET_PER_ONBOARDING:
            lines.append(f"Clinics with {k} agreements: ≈ {est:.1f} calls (over target).")
    for wf, w in fig["onboardings"].items():
        if w["envelopes"] != w["agreements"] or w["completed"] != w["agreements"]:
            lines.append(f"WARNING {wf}: {w['envelopes']} envelopes, {w['completed']} completed, "
                         f"{w['agreements']} agreements")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.esign_calls", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--onboardings", type=int, default=5, help="onboardings to run (default 5)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of REST calls answered 429/500")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for all to launch")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    if args.onboardings < 1:
        parser.error("--onboardings: must be at least 1")
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate: must be between 0 and 1")
    fig = measure(args.onboardings, args.error_rate, args.timeout)
    if args.json:
        print(json.dumps(fig, indent=2))
    print(report(fig, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
