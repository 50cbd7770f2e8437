"""DocuSign REST calls per onboarding, counted by the local e-sign server (issue 5 benchmark).

Starts its own embedded stack (Temporal dev server, e-sign server, SMTP sink, API, worker) on free
ports in a temp dir, seeds the demo roster and pharmacies, runs N demo onboardings (fresh clinic
keys) to ``launched`` with Connect working, and reads ``GET /admin/stats`` of the e-sign server
(reset just before the onboardings start). The humans are ``starter.humans`` (HTTP API; signers sign
through the e-sign server's admin endpoint, whose Connect webhook reaches the API).
Target: ≤ 8 REST calls per onboarding with Connect working, 0 status polls.

    .venv/bin/python -m bench.esign_calls                     # 5 onboardings
    .venv/bin/python -m bench.esign_calls -n 5 --error-rate 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from config import Settings
from starter.humans import act, demo_intakes, drive_to_launch, seed_demo_data  # noqa: F401 (one driver)

TARGET_PER_ONBOARDING = 8

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
    """Default timing (no 24 h silence check fires in a run), every port free, data under ``var_dir``;
    the database is SQLite there unless ``MDCO_DATABASE_URL`` names one (a fresh Postgres database)."""
    temporal, ui, api, esign, smtp, metrics, codec = _free_ports(7)
    return Settings(var_dir=var_dir, temporal_address=f"127.0.0.1:{temporal}", temporal_ui_port=ui,
                    api_port=api, esign_port=esign, smtp_port=smtp, worker_metrics_port=metrics, codec_port=codec,
                    database_url=os.environ.get("MDCO_DATABASE_URL") or f"sqlite:///{(var_dir / 'mdco.db').resolve()}")


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
        f"({', '.join(f'{c}× {k} envelopes' for k, c in sorted(mix.items()))}; {agreements} envelopes: each "
        f"clinic's agreements and its stage-3 protocol packet) "
        f"to `launched` with Connect working, counted by the local e-sign server (`/admin/stats`), "
        f"{fig['seconds']} s.",
        "",
        "| operation | calls | per onboarding | per envelope |",
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
            lines.append(f"Clinics with {k} envelopes: ≈ {est:.1f} calls (over target).")
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
