"""Matching latency on a 10,000-physician roster: the path of the ``find_candidates`` activity.

One repetition = ``roster.list_physicians(licensed_in=intake.states)`` + ``onboardings.offer_history(...)`` +
``matching.rank(..., explain=True)`` for a 5-state intake, exactly what the activity runs per call.
Target (issue 4): median ≤ 20 ms, p99 ≤ 100 ms.

    .venv/bin/python -m bench.matching                       # SQLite file in a temp dir
    .venv/bin/python -m bench.matching --db postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine

from domain import matching
from domain.assessment import assess
from domain.codes import JURISDICTIONS, Service
from domain.identifiers import dea_with_check_digit, npi_with_check_digit
from domain.intake import Intake
from domain.records import DeaRegistration, License, PhysicianRecord
from store import onboardings, roster
from store import tables as t
from store.db import init_db, make_engine, run

TARGET_MEDIAN_MS, TARGET_P99_MS = 20.0, 100.0
INTAKE_STATES = ["TX", "OK", "FL", "GA", "NC"]
STATES = sorted(JURISDICTIONS)
SERVICES = list(Service)


def synthetic_roster(n: int, seed: int) -> list[PhysicianRecord]:
    """``n`` physicians over all 51 jurisdictions: most hold 1-4 licences, a quarter are multi-state
    telehealth physicians with 8-30 (the ones that can serve multi-state clinics)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        multi = rng.random() < 0.25
        home = STATES[i % len(STATES)]
        states = [home] + rng.sample([s for s in STATES if s != home], rng.randint(7, 29) if multi else rng.randint(0, 3))
        dea = [s for s in states if rng.random() < 0.85]
        max_clinics = rng.randint(1, 10)
        out.append(PhysicianRecord.model_construct(
            npi=npi_with_check_digit(f"{200_000_000 + i:09d}"), first_name=f"F{i}", last_name=f"L{i}",
            degree="MD" if i % 3 else "DO", email=f"md{i}@bench.example", phone="+15555550000", home_state=home,
            licenses=[License.model_construct(state=s, number=f"{s}{i}", expires=date(2027 + rng.randint(0, 4), 6, 30))
                      for s in states],
            dea=[DeaRegistration.model_construct(state=s, number=dea_with_check_digit("BL", f"{i % 1_000_000:06d}"),
                                                 expires=date(2028 + rng.randint(0, 3), 3, 31)) for s in dea],
            therapies=rng.sample(SERVICES, rng.randint(2, len(SERVICES))), max_clinics=max_clinics,
            active_clinics=rng.randint(0, max_clinics), malpractice_expires=date(2028 + rng.randint(0, 3), 1, 1),
            board_certifications=["internal_medicine"], telehealth=rng.random() < 0.8,
            supervised_midlevels={home: rng.randint(0, 4)}, excluded=rng.random() < 0.005, exclusion_review=False))
    return out


def seed_offers(engine: Engine, npis: list[str], count: int, seed: int) -> None:
    """Answered past offers, so ``offer_history`` has something to aggregate."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for k in range(count):
        sent = base + timedelta(hours=k)
        rows.append({"workflow_id": f"onboarding-past-{k}", "npi": rng.choice(npis),
                     "status": "accepted" if rng.random() < 0.6 else "declined", "sent_at": sent,
                     "expires_at": sent + timedelta(hours=4), "answered_at": sent + timedelta(hours=rng.uniform(0.5, 8)),
                     "reason": ""})
    table = t.Offer.__table__  # type: ignore[attr-defined]

    def work(s):
        for i in range(0, len(rows), 500):
            s.exec(table.insert(), params=rows[i:i + 500])

    run(engine, work)


def bench_intake() -> Intake:
    return Intake.model_validate({
        "clinic_key": "bench-5-states", "clinic_name": "Bench Wellness Group",
        "contact": {"name": "Bench Ops", "email": "ops@bench.example", "phone": "+15125550100"},
        "states": INTAKE_STATES, "care_model": "hybrid",
        "services": ["neurotoxins", "glp1_weight_loss", "testosterone_hrt"], "monthly_patients": 900,
        "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}, {"state": "FL", "city": "Tampa", "zip": "33602"}],
        "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"}],
        "requested_start": "2026-12-15",
    })


def find_candidates_path(engine: Engine, intake: Intake, plan, top: int | None) -> tuple[int, int]:
    """What the ``find_candidates`` activity runs; returns (candidates, excluded)."""
    physicians = roster.list_physicians(engine, licensed_in=list(intake.states), trim_to_states=True)
    history = onboardings.offer_history(engine, [p.npi for p in physicians])
    result = matching.rank(physicians, intake, plan, top=top, history=history, explain=True)
    return len(result.candidates), len(result.excluded)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[k]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="database URL (default: SQLite file in a temp dir); its tables are filled")
    ap.add_argument("--physicians", type=int, default=10_000)
    ap.add_argument("--offers", type=int, default=20_000, help="past answered offers for the history")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--top", type=int, default=3, help="candidates asked for (the offer fan-out)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--json", dest="json_path", type=Path, help="also write the result JSON here")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="mdco-bench-")
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = make_engine(url)
    init_db(engine)
    if roster.list_physicians(engine, licensed_in=["TX"]):
        raise SystemExit(f"{engine.url.render_as_string(hide_password=True)}: not empty; use a fresh database")
    t0 = time.perf_counter()
    physicians = synthetic_roster(args.physicians, args.seed)
    roster.upsert_physicians(engine, physicians)
    seed_offers(engine, [p.npi for p in physicians], args.offers, args.seed)
    load_s = time.perf_counter() - t0
    del physicians  # the worker never holds the roster in memory; a 10,000-record list would only feed the GC
    gc.collect()
    if engine.dialect.name == "postgresql":  # a live database has planner statistics; a fresh bulk load not yet
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")

    intake = bench_intake()
    plan = assess(intake, date(2026, 12, 1))
    for _ in range(5):  # warm caches, connection pool and compiled statements
        find_candidates_path(engine, intake, plan, args.top)
    shape = find_candidates_path(engine, intake, plan, None)
    licensed_all = len(roster.list_physicians(engine, licensed_in=INTAKE_STATES))
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        find_candidates_path(engine, intake, plan, args.top)
        times.append((time.perf_counter() - start) * 1000)

    med, p99 = statistics.median(times), percentile(times, 99)
    result = {
        "backend": engine.dialect.name, "physicians": args.physicians, "jurisdictions": len(STATES),
        "intake_states": INTAKE_STATES, "licensed_in_all_5": licensed_all, "eligible": shape[0],
        "explained_ineligible": shape[1], "past_offers": args.offers, "reps": args.reps,
        "median_ms": round(med, 2), "p99_ms": round(p99, 2), "max_ms": round(max(times), 2),
        "median_vs_target": round(med / TARGET_MEDIAN_MS, 3), "p99_vs_target": round(p99 / TARGET_P99_MS, 3),
        "load_s": round(load_s, 1),
    }
    print(f"{result['backend']}: {args.physicians} physicians / {len(STATES)} jurisdictions, "
          f"{licensed_all} licensed in all of {','.join(INTAKE_STATES)}")
    print(f"find_candidates path x{args.reps}: median {med:.2f} ms ({med / TARGET_MEDIAN_MS:.0%} of {TARGET_MEDIAN_MS:g} ms), "
          f"p99 {p99:.2f} ms ({p99 / TARGET_P99_MS:.0%} of {TARGET_P99_MS:g} ms)")
    print(json.dumps(result))
    if args.json_path:
        args.json_path.write_text(json.dumps(result, indent=2) + "\n")
    engine.dispose()
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
