"""Chaos as a benchmark (issue 12): N onboardings driven to ``launched`` while the worker and the
Temporal dev server are SIGKILLed and restarted with ``mdco up --detach``, and a share of the e-sign
server's REST calls fail; then every invariant is checked and the result printed as JSON.

    .venv/bin/python -m bench.chaos --onboardings 200 --worker-kills 10 --server-kills 2 --error-rate 0.2

The stack is the real one, started by ``mdco up --detach`` on free ports in a temp dir (SQLite, or
``--database-url``). The roster is the demo one with each physician's ``max_clinics`` raised by N so
capacity never runs out (and is never re-imported: the capacity counters are checked). The humans are
``starter.humans.Driver``. Kills are spread over the run by progress: kill *i* of *k* comes once the
onboardings' mean stage has gone ``i/(k+1)`` of the way to ``launched`` (server kills placed evenly
among the worker kills), at least ``--min-gap`` seconds after the last restart. Connect retries like
DocuSign does (for long after an outage; here ``MDCO_ESIGN_CONNECT_MAX_TRIES`` tries, doubling from
0.1 s) so a delivery made while Temporal is down is not lost.

Invariants (``violations``): every onboarding launched; exactly one accepted offer each; per agreement
exactly one completed envelope on the e-sign server and it is the agreement's; no stray envelope
(every other envelope of the onboarding voided); each physician's ``active_clinics`` equal to the
seeded count plus the clinics placed with them (and their unreleased reservations); no lost audit
entry (each completed audit-writing activity in the run's history has its entry, and the trail has the
core entries of a launched onboarding).

Ops are on call: ``mdco repair --apply`` runs every ``--repair-every`` seconds, as an operator would when a
run's workflow task keeps failing after a restart (mdco_temporal/repair.py); ``repairs`` counts the runs
it reset and the invariants are checked after them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from bench.esign_calls import bench_settings, set_faults
from bench.throughput import BENCH_SETTINGS, load_average, progress

#: Connect keeps retrying through a server restart (DocuSign retries for days; here ~100 s)
CHAOS_ENV = {"MDCO_ESIGN_CONNECT_BACKOFF_S": "0.1", "MDCO_ESIGN_CONNECT_MAX_TRIES": "10"}
STAGES = ("needs_assessment", "matching", "protocol_setup", "pharmacy_coordination", "agreements", "launched")
#: audit-writing activity -> the action its entry carries (from its input)
AUDIT_ACTIVITIES = {
    "record_start": lambda req: "onboarding_started",
    "record_stage": lambda req: f"stage_{req['stage']}",
    "record_decision": lambda req: req["action"],
    "assess_needs": lambda req: "plan_assessed",
    "record_offer": lambda req: f"offer_{req['status']}",
    "send_agreement": lambda req: "envelope_sent",
    "void_envelope": lambda req: "envelope_voided",
    "record_envelope": lambda req: f"envelope_{req['status']}",
    "launch_clinic": lambda req: "clinic_launched" if not req.get("replaces") else "director_replaced",
}
#: expected_audit's key for the decisions recorded by local activities (answer-writes-local-v1): a local
#: activity's marker carries no input, so they are counted against every decision entry together
LOCAL_DECISIONS = "decisions recorded by local activities"
NOT_DECISIONS = ("onboarding_started", "plan_assessed", "clinic_launched", "director_replaced")


def is_decision(action: str) -> bool:
    """Whether an audit action comes from ``record_decision`` (everything the other writers don't name)."""
    return not (action in NOT_DECISIONS or action.startswith(("stage_", "offer_", "envelope_")))


CORE_AUDIT = ("onboarding_started", "plan_assessed", "offer_accepted", "protocols_approved", "pharmacy_confirmed",
              "envelope_sent", "envelope_completed", "clinic_launched", "stage_launched")


# ---------------------------------------------------------------- the invariants (pure)
def violations(snap: dict) -> list[str]:
    """Every broken invariant in a snapshot (see ``snapshot``); empty when all hold."""
    out: list[str] = []
    for wf, ob in snap["onboardings"].items():
        if ob["stage"] != "launched":
            out.append(f"{wf}: stage {ob['stage']}, not launched")
        accepted = [o["npi"] for o in ob["offers"] if o["status"] == "accepted"]
        if len(accepted) != 1:
            out.append(f"{wf}: {len(accepted)} accepted offers {accepted}")
        envs = ob["envelopes"]
        for ag in ob["agreements"]:
            done = [e["id"] for e in envs if e["kind"] == ag["kind"] and e["status"] == "completed"]
            if len(done) != 1:
                out.append(f"{wf}: agreement {ag['kind']}: {len(done)} completed envelopes {done}")
            elif ag["envelope_id"] != done[0] or ag["status"] != "completed":
                out.append(f"{wf}: agreement {ag['kind']} records {ag['envelope_id']} ({ag['status']}), "
                           f"the e-sign server completed {done[0]}")
        kinds = {ag["kind"] for ag in ob["agreements"]}
        current = {ag["envelope_id"] for ag in ob["agreements"]}
        for e in envs:
            if e["kind"] not in kinds or (e["id"] not in current and e["status"] != "voided"):
                out.append(f"{wf}: stray envelope {e['id']} ({e['kind']}, {e['status']})")
        have = Counter(a["action"] for a in ob["audit"])
        for action, n in ob["expected_audit"].items():
            if action == LOCAL_DECISIONS:
                remote = sum(k for a, k in ob["expected_audit"].items() if a != LOCAL_DECISIONS and is_decision(a))
                decided = sum(k for a, k in have.items() if is_decision(a))
                if decided < n + remote:
                    out.append(f"{wf}: audit has {decided} decision entries, its history completed {n + remote}")
            elif have[action] < n:
                out.append(f"{wf}: audit has {have[action]} {action} entries, its history completed {n}")
        for action in CORE_AUDIT:
            if not have[action]:
                out.append(f"{wf}: audit has no {action} entry")
    for npi, ph in snap["physicians"].items():
        if ph["active_clinics"] != ph["seeded"] + ph["placements"]:
            out.append(f"physician {npi}: active_clinics {ph['active_clinics']} != seeded {ph['seeded']} + "
                       f"placements {ph['placements']}")
        if ph["reserved"] != ph["placements"]:
            out.append(f"physician {npi}: {ph['reserved']} unreleased reservations, {ph['placements']} placements")
    return out


# ---------------------------------------------------------------- the snapshot (store, e-sign server, histories)
def expected_audit(history, inputs: dict[int, dict]) -> Counter:
    """Actions of the audit entries the run's completed audit-writing activities wrote; ``inputs``: each
    scheduled audit-writing activity's decoded input by event id. Stage, offer and envelope entries have
    one idem key per (action, envelope, physician, round), so a repeat counts once; every decision counts."""
    from temporalio.api.enums.v1 import EventType

    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    keyed, decisions = set(), Counter()
    for e in history.events:
        if e.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            continue
        event_id = e.activity_task_completed_event_attributes.scheduled_event_id
        name = scheduled[event_id]
        if name not in AUDIT_ACTIVITIES:
            continue
        req = inputs[event_id]
        action = AUDIT_ACTIVITIES[name](req)
        if name == "record_decision":
            decisions[action] += 1
        else:
            keyed.add((action, req.get("envelope_id", ""), req.get("npi", ""), req.get("round", 1)))
    local = Counter()
    for e in history.events:  # local activities (answer-writes-local-v1): a marker, its data plain JSON
        m = e.marker_recorded_event_attributes
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and m.marker_name == "core_local_activity" \
                and not m.HasField("failure"):
            local.update(json.loads(p.data).get("activity_type") for p in m.details["data"].payloads)
    if local["record_decision"]:
        decisions[LOCAL_DECISIONS] = local["record_decision"]
    return decisions + Counter(a for a, *_ in keyed)


async def until_closed(settings, wfs: list[str], timeout: float = 120.0) -> None:
    """Wait (at most ``timeout``) until the runs have closed: a status says ``launched`` as the stage is
    entered, before its last activities (the stage's own audit entry among them) have run."""
    from temporalio.client import Client, WorkflowExecutionStatus

    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    deadline = time.monotonic() + timeout
    for wf in wfs:
        while time.monotonic() < deadline:
            if (await client.get_workflow_handle(wf).describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.5)


async def audit_inputs(settings, wfs: list[str]) -> dict[str, tuple[object, dict[int, dict]]]:
    """Each run's history and its audit-writing activities' inputs, decrypted and parsed."""
    from temporalio.api.enums.v1 import EventType

    from bench.throughput import fetch_histories
    from mdco_temporal.client import data_converter

    codec = data_converter(settings).payload_codec
    await until_closed(settings, wfs)
    out = {}
    for wf, history in (await fetch_histories(settings, wfs)).items():
        inputs = {}
        for e in history.events:
            a = e.activity_task_scheduled_event_attributes
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and a.activity_type.name in AUDIT_ACTIVITIES:
                plain = await codec.decode(list(a.input.payloads)) if codec else list(a.input.payloads)
                inputs[e.event_id] = json.loads(plain[0].data)
        out[wf] = (history, inputs)
    return out


def snapshot(settings, wfs: list[str], seeded: dict[str, int]) -> dict:
    """What the store, the e-sign server and the Temporal histories say about the run."""
    from sqlmodel import Session, select

    from esign.sandbox import list_envelopes
    from store import tables as t
    from store.db import engine_from_settings

    runs = asyncio.run(audit_inputs(settings, wfs))
    engine = engine_from_settings(settings)
    try:
        with Session(engine) as s:
            onboardings = {o.workflow_id: o.stage for o in s.exec(select(t.Onboarding)).all()}
            offers, agreements, audit = {}, {}, {}
            for o in s.exec(select(t.Offer)).all():
                offers.setdefault(o.workflow_id, []).append({"npi": o.npi, "status": o.status})
            for a in s.exec(select(t.Agreement)).all():
                agreements.setdefault(a.workflow_id, []).append(
                    {"kind": a.kind, "envelope_id": a.envelope_id, "status": a.status})
            for a in s.exec(select(t.AuditEntry)).all():
                audit.setdefault(a.workflow_id, []).append({"action": a.action})
            physicians = {p.npi: p.active_clinics for p in s.exec(select(t.Physician)).all()}
            placed = Counter(c.physician_npi for c in s.exec(select(t.Clinic).where(t.Clinic.status == "active")))
            reserved = Counter(r.npi for r in s.exec(select(t.CapacityReservation)
                                                     .where(t.CapacityReservation.released_at.is_(None))))
    finally:
        engine.dispose()
    envelopes: dict[str, list[dict]] = {}
    for e in list_envelopes(settings, "onboarding-"):
        wf, _, rest = e["external_id"].partition(":")
        envelopes.setdefault(wf, []).append({"id": e["envelopeId"], "status": e["status"], "kind": rest.split(":")[0]})
    snap: dict = {"onboardings": {}, "physicians": {}}
    for wf in wfs:
        history, inputs = runs[wf]
        snap["onboardings"][wf] = {
            "stage": onboardings.get(wf, "(no row)"), "offers": offers.get(wf, []),
            "agreements": agreements.get(wf, []), "envelopes": envelopes.get(wf, []), "audit": audit.get(wf, []),
            "expected_audit": dict(expected_audit(history, inputs))}
    for npi, active in physicians.items():
        snap["physicians"][npi] = {"active_clinics": active, "seeded": seeded.get(npi, 0),
                                   "placements": placed.get(npi, 0), "reserved": reserved.get(npi, 0)}
    return snap


# ---------------------------------------------------------------- the run
def mdco(env: dict[str, str], *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    """The ``mdco`` CLI as a user runs it (``up --detach``, ``down``), on this run's settings."""
    from starter.stack import PROJECT_ROOT

    proc = subprocess.run([sys.executable, "-m", "starter", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"mdco {' '.join(args)} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    return proc


def seed_roster(settings, capacity: int) -> dict[str, int]:
    """The demo roster with every ``max_clinics`` raised by ``capacity``, and the demo pharmacies; each
    physician's seeded ``active_clinics``."""
    from domain.roster import parse_pharmacies, parse_physicians
    from starter.humans import DEMO_DIR
    from store import roster
    from store.db import engine_from_settings

    rows = list(csv.DictReader(io.StringIO((DEMO_DIR / "physicians.csv").read_text())))
    for row in rows:
        row["max_clinics"] = str(int(row["max_clinics"]) + capacity)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    physicians, errors = parse_physicians(text.getvalue(), "csv")
    pharmacies, errors2 = parse_pharmacies((DEMO_DIR / "pharmacies.csv").read_text(), "csv")
    if errors or errors2:
        raise RuntimeError(f"demo roster invalid: {(errors + errors2)[:3]}")
    engine = engine_from_settings(settings)
    try:
        roster.upsert_physicians(engine, physicians)
        roster.upsert_pharmacies(engine, pharmacies)
    finally:
        engine.dispose()
    return {p.npi: p.active_clinics for p in physicians}


def kill_plan(worker_kills: int, server_kills: int) -> list[str]:
    """The order of the kills: server kills spread evenly among the worker kills."""
    total = worker_kills + server_kills
    if not worker_kills:
        return ["temporal"] * server_kills
    server_at = {round((j + 1) * total / (server_kills + 1)) - 1 for j in range(server_kills)}  # distinct here
    return ["temporal" if i in server_at else "worker" for i in range(total)]


def progress_of(statuses: dict[str, dict]) -> float:
    """Mean distance to ``launched`` over the onboardings, 0..1."""
    if not statuses:
        return 0.0
    last = len(STAGES) - 1
    return sum(STAGES.index(s["stage"]) / last if s.get("stage") in STAGES else 0.0
               for s in statuses.values()) / len(statuses)


def sigkill(settings, name: str) -> int:
    """SIGKILL the service's process group (a crash); its pid."""
    from starter.stack import recorded_pid

    pid = recorded_pid(settings, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while recorded_pid(settings, name) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


async def chaos(settings, env: dict[str, str], driver, n: int, plan: list[str], min_gap: float,
                done: asyncio.Event) -> list[dict]:
    """Carry out ``plan`` as the onboardings progress; what was killed when and how long the restart took."""
    kills: list[dict] = []
    last = told = time.monotonic()
    for i, name in enumerate(plan):
        threshold = (i + 1) / (len(plan) + 1)
        while not done.is_set():
            started = sum(1 for s in driver.statuses.values() if s)
            if started == n and progress_of(driver.statuses) >= threshold and time.monotonic() - last >= min_gap:
                break
            if time.monotonic() - told >= 60:
                told = time.monotonic()
                stages = Counter(s.get("stage", "(unread)") for s in driver.statuses.values())
                progress(f"progress {progress_of(driver.statuses):.3f} (next kill at {threshold:.3f}): {dict(stages)}")
            await asyncio.sleep(0.5)
        if done.is_set():
            break
        at_progress = round(progress_of(driver.statuses), 3)
        t0 = time.monotonic()
        pid = await asyncio.to_thread(sigkill, settings, name)
        await asyncio.to_thread(mdco, env, "up", "--detach")
        last = time.monotonic()
        kills.append({"service": name, "pid": pid, "progress": at_progress, "restart_s": round(last - t0, 1),
                      "launched": sum(1 for s in driver.statuses.values() if s.get("stage") == "launched")})
        progress(f"kill {i + 1}/{len(plan)}: {name} (pid {pid}) at progress {at_progress}, back in "
                 f"{last - t0:.1f} s")
    return kills


async def repairer(env: dict[str, str], every: float, done: asyncio.Event) -> dict[str, list[dict]]:
    """Ops on call: ``mdco repair --apply --json`` every ``every`` seconds while the onboardings are driven,
    and once more at the end; the runs it reset, and the stuck ones it would not (``refused``; a run reported
    stuck that replays cleanly is neither). A round that cannot reach Temporal (a server kill) is skipped."""
    found: dict[str, list[dict]] = {"repaired": [], "refused": []}
    while True:
        try:
            await asyncio.wait_for(done.wait(), every)
        except TimeoutError:
            pass
        try:
            rows = json.loads((await asyncio.to_thread(mdco, env, "repair", "--apply", "--json", timeout=120)).stdout)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            progress(f"repair round skipped: {str(exc)[:200]}")
            rows = []
        for row in rows:  # a run reported stuck that replays cleanly had another, passing problem
            if row["new_run_id"] or row["plan"].startswith("not repaired"):
                found["repaired" if row["new_run_id"] else "refused"].append({k: row[k] for k in ("workflow_id", "plan")})
            progress(f"repair: {row['workflow_id']}: {row['plan']}")
        if done.is_set():
            return found


def run(n: int, worker_kills: int, server_kills: int, error_rate: float, timeout: float, min_gap: float,
        database_url: str = "", seed: int = 12, keep: str = "", poll_max_s: float = 2.0,
        repair_every: float = 20.0) -> dict:
    from starter.humans import Driver, Humans, demo_intakes
    from starter.stack import stack_env

    run_id = time.strftime("c%H%M%S")
    with (tempfile.TemporaryDirectory(prefix="mdco-bench-chaos-") if not keep else nullcontext(keep)) as tmp:
        settings = bench_settings(Path(tmp)).model_copy(update=BENCH_SETTINGS)
        if database_url:
            settings = settings.model_copy(update={"database_url": database_url})
        env = {**os.environ, **CHAOS_ENV, **stack_env(settings)}
        from starter.stack import resolve

        settings = resolve(settings)
        mdco(env, "up", "--detach")
        try:
            seeded = seed_roster(settings, n)
            set_faults(settings, error_rate=error_rate, fault_seed=seed)
            intakes = demo_intakes(n, run_id)
            wfs = [f"onboarding-{i['clinic_key']}" for i in intakes]
            driver = Driver(settings, Humans(), subject="chaos", poll_max_s=poll_max_s)
            plan = kill_plan(worker_kills, server_kills)
            load_before = load_average()

            box: dict = {"kills": [], "elapsed": 0.0, "error": "", "repairs": {"repaired": [], "refused": []}}

            async def play() -> None:
                done = asyncio.Event()
                killer = asyncio.create_task(chaos(settings, env, driver, n, plan, min_gap, done))
                ops = asyncio.create_task(repairer(env, repair_every, done)) if repair_every > 0 else None
                started = time.monotonic()
                try:
                    await driver.run(intakes, timeout=timeout)
                except TimeoutError as exc:  # reported with the invariants (the stuck ones fail them)
                    box["error"] = str(exc)[:2000]
                finally:
                    box["elapsed"] = time.monotonic() - started
                    done.set()
                    box["kills"] = await killer
                    if ops is not None:
                        box["repairs"] = await ops

            asyncio.run(play())
            kills, elapsed, error = box["kills"], box["elapsed"], box["error"]
            progress(f"{n} driven in {elapsed:.1f} s; checking invariants")
            load_after = load_average()
            set_faults(settings, error_rate=0.0)
            from bench.esign_calls import esign_admin

            with esign_admin(settings) as admin:
                stats = admin.get("/admin/stats").json()
            snap = snapshot(settings, wfs, seeded)
            found = violations(snap)
        finally:
            mdco(env, "down")
    return {
        "onboardings": n, "worker_kills": sum(k["service"] == "worker" for k in kills),
        "server_kills": sum(k["service"] == "temporal" for k in kills), "error_rate": error_rate,
        "planned_kills": plan, "kills": kills, "elapsed_s": round(elapsed, 1),
        "onboardings_per_s": round(n / elapsed, 3) if elapsed else None,
        "launched": sum(o["stage"] == "launched" for o in snap["onboardings"].values()),
        "envelopes": sum(len(o["envelopes"]) for o in snap["onboardings"].values()),
        "voided_envelopes": sum(e["status"] == "voided" for o in snap["onboardings"].values() for e in o["envelopes"]),
        "audit_entries": sum(len(o["audit"]) for o in snap["onboardings"].values()),
        "esign_injected_faults": stats.get("injected_faults"),
        "esign_rest_calls": sum(a["total"] for a in stats.get("accounts", {}).values()),
        "driver": {"polls": driver.tally.polls, "actions": driver.tally.actions,
                   "transport_errors": driver.tally.transport_errors, "rate_limited": driver.tally.rate_limited,
                   "status_unavailable": driver.tally.status_unavailable},
        "repairs": len(box["repairs"]["repaired"]), "repaired": box["repairs"]["repaired"],
        "stuck_not_repaired": box["repairs"]["refused"],
        "violations": len(found), "violation_list": found[:50], "timeout_error": error,
        "invariants_hold": not found and not error,
        "load": {"before": load_before, "after": load_after},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--onboardings", "-n", type=int, default=200)
    parser.add_argument("--worker-kills", type=int, default=10)
    parser.add_argument("--server-kills", type=int, default=2)
    parser.add_argument("--error-rate", type=float, default=0.2, help="share of e-sign REST calls failing (0..1)")
    parser.add_argument("--min-gap", type=float, default=10.0, help="seconds between a restart and the next kill")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--database-url", default="", help="default: SQLite in the run's temp dir")
    parser.add_argument("--poll-max", type=float, default=2.0, help="seconds between status reads while "
                        "nobody is asked (the driver's queries load the worker: 200 onboardings at 0.5 s are 400/s)")
    parser.add_argument("--keep", default="", help="run in this directory and keep it (logs, state) afterwards")
    parser.add_argument("--repair-every", type=float, default=20.0, help="seconds between `mdco repair --apply` "
                        "rounds while the onboardings are driven (ops on call; 0: never)")
    args = parser.parse_args(argv)
    if args.onboardings < 1:
        parser.error("--onboardings: must be at least 1")
    if args.worker_kills < 0 or args.server_kills < 0:
        parser.error("--worker-kills/--server-kills: must be 0 or more")
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate: must be between 0 and 1")
    if args.repair_every < 0:
        parser.error("--repair-every: must be 0 or more")
    out = run(args.onboardings, args.worker_kills, args.server_kills, args.error_rate, args.timeout, args.min_gap,
              args.database_url, keep=args.keep, poll_max_s=args.poll_max, repair_every=args.repair_every)
    print(json.dumps(out, indent=2))
    return 0 if out["invariants_hold"] else 1


if __name__ == "__main__":
    sys.exit(main())
