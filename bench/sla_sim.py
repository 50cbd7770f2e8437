"""Placement SLA simulation: the real ``OnboardingWorkflow`` on the time-skipping test server.

Simulated physicians (issues 4 and 13): a global roster of ``--roster`` physicians (default 60);
each clinic gets a deterministic eligible pool of ``--pool`` of them (default 5). A share of the
roster (``--silent-share``, default 0.25, chosen per seed) never answers any offer. The others answer
each offer after U(0.5 h, 8 h) of workflow time and accept it with p = 0.6; the draw is keyed by seed,
clinic, NPI and offer round, so a re-offer gets a fresh one. Offers expire after 4 h
(``Timing.offer_ttl``): answers after that are refused by the workflow's update validator, exactly as
a late click would be (a late answer to an earlier round's offer is dropped too, see
``answer_offer``). Every answered offer starts a tiny ``PhysicianSim`` workflow that
``workflow.sleep``s the delay and then answers through an activity that sends the real
``accept_offer`` / ``decline_offer`` update; the server's clock skips ahead whenever nothing runs.

``find_candidates`` ranks the clinic's pool minus ``exclude_npis``, fresh candidates before the
physicians being re-offered (``reoffer_npis``, as ``domain.matching.fresh_first``), then by response
history, as ``domain.matching.rank`` does: the share of a physician's closed offers (all onboardings so far in
the scenario) that expired unanswered counts against them (no history counts 0.5), ties broken by
a seeded per-clinic order. The history is kept by a replaced ``record_offer``.

Each fan-out runs once per variant on the same clinics and the same draws: *before*
(``Timing(offer_rounds_max=1, offer_burst_max=0)``: once everyone expired, the onboarding waits on the
roster), *no-burst* (``Timing(offer_burst_max=0)``: later offer rounds re-offer the silent, each as soon
as their offer expires and nobody fresh is left, patch ``reoffer-at-expiry-v1``; one more open offer per
expired one), *burst-at-expiry* (``Timing(offer_widen_after=None)``: the same plus, patch
``sla-burst-v1``, up to ``offer_burst_max`` open offers from the first expiry) and *after* (``Timing()``:
the same plus, patch ``sla-widen-early-v1``, that widening already ``offer_widen_after`` after the first
offer when nobody accepted). Default: before and after. Reported per scenario: share placed within 12 h
and 24 h, median and p95 time to match (of the matched), share never matched by the 26 h horizon, offers
sent and withdrawn per onboarding, and the one-sided 95 % Clopper-Pearson upper bound on the share not
placed within 12 h. Goals for fan-out 3 (after): ≥ 99.9 % within 12 h, median ≤ 2 h.

A long run stalls on the time-skipping server now and then; for thousands of onboardings run several
processes of ≤ 500 with different ``--seed`` (each scenario on a fresh server), each with ``--json``, and
merge them: ``--merge a.json b.json ...`` pools the per-onboarding figures the files hold (``hours``,
``offers``, ``withdrawn``) per fan-out and variant and prints the same table.

Capacity is unlimited (the race for slots is ``tests/test_matching_concurrency.py``); the other
stage activities are the fakes of ``tests/fake_activities.py``.

    .venv/bin/python -m bench.sla_sim                 # 500 onboardings, fan-out 1 and 3, seed 7
    .venv/bin/python -m bench.sla_sim --onboardings 300 --fanout 3 --json out.json
    .venv/bin/python -m bench.sla_sim --merge s7.json s8.json s9.json   # pooled figures of several runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.testservice.v1 import UnlockTimeSkippingRequest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from domain.intake import Intake
    from domain.messages import MatchRequest, OfferRequest, OfferStatusUpdate, PhysicianAnswer
    from domain.onboarding import Candidate, MatchResult, OnboardingInput, OnboardingStatus, ReservationResult, Timing
    from starter.binaries import temporal_test_server
    from mdco_temporal.client import ensure_search_attributes
    from tests.fake_activities import FakeWorld, sample_intake
    from workflows.onboarding import OnboardingWorkflow
    from workflows.oversight import OversightWorkflow

MIN_ANSWER_H, MAX_ANSWER_H, P_ACCEPT = 0.5, 8.0, 0.6
HORIZON = timedelta(hours=26)  # past the 24 h breach mark
#: Workflow task timeout: on a loaded machine the default 10 s expires, and an expired task can leave the
#: time-skipping server's clock locked (it then sleeps in real time: the run stalls).
TASK_TIMEOUT = timedelta(minutes=2)
ROSTER, POOL, SILENT_SHARE = 60, 5, 0.25
GOAL_12H_FANOUT3 = 0.999
GOAL_MEDIAN_H_FANOUT3 = 2.0
#: before: one round of offers (the old behaviour); no-burst: re-offer at expiry without the SLA burst
#: (the "after" of commit 73fb703); after: the default Timing (later rounds and the burst).
VARIANTS = {"before": Timing(offer_rounds_max=1, offer_burst_max=0), "no-burst": Timing(offer_burst_max=0),
            "burst-at-expiry": Timing(offer_widen_after=None), "after": Timing()}
DEFAULT_VARIANTS = ["before", "after"]
#: pydantic's e-mail validation imports these lazily; inside the sandbox hundreds of workflows
#: starting at once then contend for the import lock (deadlock detector). Pass them through.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna"))


def npi_of(i: int) -> str:
    return f"{1_000_000_000 + i}"


class Roster:
    """The finite roster: who is silent, each clinic's eligible pool and ranking order, and the
    response history (per scenario) that the ranking holds against a physician."""

    def __init__(self, seed: int, size: int = ROSTER, pool: int = POOL, silent_share: float = SILENT_SHARE):
        if not 0 < pool <= size:
            raise ValueError(f"--pool must be in 1..{size} (the roster)")
        self.seed, self.size, self.pool = seed, size, pool
        quiet = random.Random(f"{seed}:silent").sample(range(size), round(size * silent_share))
        self.silent = {npi_of(i) for i in quiet}
        self._lock = threading.Lock()
        self.expired: dict[str, int] = defaultdict(int)
        self.closed: dict[str, int] = defaultdict(int)  # expired + declined + accepted

    def reset_history(self) -> None:
        with self._lock:
            self.expired.clear()
            self.closed.clear()

    def clinic_pool(self, clinic: str) -> list[str]:
        """The clinic's eligible physicians, in the clinic's own seeded order."""
        return [npi_of(i) for i in random.Random(f"{self.seed}:pool:{clinic}").sample(range(self.size), self.pool)]

    def silence(self, npi: str) -> float:
        """Share of the physician's closed offers that expired unanswered (0.5 without history)."""
        with self._lock:
            return self.expired[npi] / self.closed[npi] if self.closed[npi] else 0.5

    def record(self, npi: str, status: str) -> None:
        if status not in ("expired", "declined", "accepted"):
            return  # withdrawn / lost say nothing about the physician
        with self._lock:
            self.closed[npi] += 1
            self.expired[npi] += status == "expired"

    def rank(self, clinic: str, exclude: set[str], top: int, again: frozenset[str] = frozenset()) -> list[str]:
        """As the real activity: fresh candidates before those re-offered (``again``), then by silence."""
        order = [n for n in self.clinic_pool(clinic) if n not in exclude]
        return sorted(order, key=lambda n: (n in again, self.silence(n)))[:top]  # stable: ties keep the clinic's order

    def answer(self, clinic: str, npi: str, rnd: int) -> tuple[float, bool] | None:
        """(delay in hours, accepts?) for one offer, or None: this physician never answers."""
        if npi in self.silent:
            return None
        rng = random.Random(f"{self.seed}:{clinic}:{npi}:{rnd}")
        return rng.uniform(MIN_ANSWER_H, MAX_ANSWER_H), rng.random() < P_ACCEPT


@workflow.defn
class PhysicianSim:
    """One offer's physician: think for ``hours`` of workflow time, then answer."""

    @workflow.run
    async def run(self, onboarding_id: str, npi: str, hours: float, accept: bool, rnd: int = 1) -> str:
        await workflow.sleep(timedelta(hours=hours))
        return await workflow.execute_activity(
            "answer_offer", args=[onboarding_id, npi, accept, rnd], start_to_close_timeout=timedelta(minutes=5),
            result_type=str)


def sim_activities(client: Client, roster: Roster, sim_queue: str, sims: set[str]) -> tuple[list, list]:
    """(onboarding activities, physician activities). The fakes of the stage activities, with
    ranking, offers, offer records and capacity replaced; the physicians' ``answer_offer`` runs on
    its own task queue, because it waits for an update that needs onboarding activity slots: sharing
    one pool, 100 waiting answers could take every slot and starve the updates they wait for."""
    replaced = {"find_candidates", "send_offer", "record_offer", "reserve_physician"}
    fakes = [a for a in FakeWorld().activities() if a.__name__ not in replaced]
    current_round: dict[tuple[str, str], int] = {}  # (onboarding, npi) -> round of the latest offer

    @activity.defn(name="find_candidates")
    def find_candidates(req: MatchRequest) -> MatchResult:
        npis = roster.rank(req.intake.clinic_key, set(req.exclude_npis), req.top, frozenset(req.reoffer_npis))
        return MatchResult(candidates=[Candidate(npi=n, display_name=f"Dr {n}", score=90.0) for n in npis])

    @activity.defn(name="send_offer")
    async def send_offer(req: OfferRequest) -> None:
        current_round[(req.workflow_id, req.npi)] = req.round
        answer = roster.answer(req.clinic_key, req.npi, req.round)
        if answer is None:
            return  # a silent physician: the offer expires
        hours, accept = answer
        sim_id = f"sim-{req.workflow_id}-{req.npi}-r{req.round}"
        try:
            sims.add(sim_id)
            await client.start_workflow(PhysicianSim.run, args=[req.workflow_id, req.npi, hours, accept, req.round],
                                        id=sim_id, task_queue=sim_queue, task_timeout=TASK_TIMEOUT)
        except WorkflowAlreadyStartedError:
            pass  # a retried send: the physician already has the offer

    @activity.defn(name="record_offer")
    def record_offer(req: OfferStatusUpdate) -> None:
        roster.record(req.npi, req.status)

    @activity.defn(name="reserve_physician")
    def reserve_physician(workflow_id: str, npi: str) -> ReservationResult:
        return ReservationResult(ok=True)

    @activity.defn(name="answer_offer")
    async def answer_offer(onboarding_id: str, npi: str, accept: bool, rnd: int = 1) -> str:
        # The answer belongs to its round's offer: once that offer expired and a later round re-offered
        # the physician, the late answer is the expired offer's (refused), not a draw for the new one.
        if current_round.get((onboarding_id, npi), rnd) != rnd:
            return "refused: answered an earlier round's expired offer"
        handle = client.get_workflow_handle(onboarding_id)
        update = OnboardingWorkflow.accept_offer if accept else OnboardingWorkflow.decline_offer
        try:
            answer = await asyncio.wait_for(handle.execute_update(update, PhysicianAnswer(npi=npi)), 60)
            return answer.status
        except asyncio.TimeoutError:
            return "refused: no answer from the onboarding"
        except WorkflowUpdateFailedError as exc:  # expired, or someone else accepted first
            return f"refused: {exc.cause}"
        except RPCError:
            return "refused: onboarding closed"

    return [*fakes, find_candidates, send_offer, record_offer, reserve_physician], [answer_offer]


#: Real seconds one hour-step of ``advance`` may take before the clock counts as stuck (a step takes a few
#: seconds while the clock skips; stuck, it runs in real time: an hour).
STUCK_AFTER_S = 60.0
#: How many times a scenario may release a stuck clock before it gives up.
MAX_UNSTICKS = 100


async def advance(env: WorkflowEnvironment, span: timedelta, step: timedelta = timedelta(hours=1),
                  stats: dict | None = None) -> None:
    """Let the server's clock run ``span`` ahead, an hour at a time: one long unlock-and-sleep call
    over hundreds of busy workflows can drop its HTTP/2 stream; a dropped step is simply re-asked.

    Now and then the test server's clock stops skipping and runs in real time while this waits in
    ``env.sleep``: a time-skipping lock was taken and never released (BENCHMARKS.md: the stalled runs
    of 5d8f4f4; again at pool 20 after ≈ 8 of 10 batches, nothing logged, and one UnlockTimeSkipping from
    another client let it finish). A step that takes longer than
    ``STUCK_AFTER_S`` releases one lock (``UnlockTimeSkipping``) and is re-asked; ``stats["clock_unstuck"]``
    counts them (reported per scenario). A run that needs more than ``MAX_UNSTICKS`` fails."""
    target = await env.get_current_time() + span
    while (now := await env.get_current_time()) < target:
        try:
            await asyncio.wait_for(env.sleep(min(step, target - now)), STUCK_AFTER_S)
        except RPCError:
            await asyncio.sleep(0.5)
        except asyncio.TimeoutError:
            if stats is not None:
                stats["clock_unstuck"] = stats.get("clock_unstuck", 0) + 1
                if stats["clock_unstuck"] > MAX_UNSTICKS:
                    raise RuntimeError(f"the time-skipping clock stuck {MAX_UNSTICKS} times") from None
            print(f"clock stuck at {now.isoformat()} for {STUCK_AFTER_S:g} s: releasing a time-skipping lock",
                  flush=True)
            try:
                await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
            except RPCError as exc:  # no lock was held: the step was just slow
                print(f"  nothing to release ({exc})", flush=True)


async def run_batch(env: WorkflowEnvironment, task_queue: str, fanout: int, timing: Timing, label: str,
                    keys: list[str], sims: set[str], stats: dict | None = None) -> list[tuple[float | None, int, int]]:
    """Start the batch, let the clock run to ``HORIZON``, return per onboarding (hours to match or None,
    offers sent, offers withdrawn)."""
    client = env.client
    handles = []
    for key in keys:
        intake = Intake.model_validate(sample_intake(key))
        handles.append(await client.start_workflow(
            OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=timing, offer_fanout=fanout),
            id=f"onboarding-{key}-{label}", task_queue=task_queue, task_timeout=TASK_TIMEOUT))
    await advance(env, HORIZON, stats=stats)
    out: list[tuple[float | None, int, int]] = []
    for h in handles:
        st = await h.query(OnboardingWorkflow.status, result_type=OnboardingStatus)
        hours = (st.matched_at - st.started_at).total_seconds() / 3600 if st.matched_at and st.started_at else None
        out.append((hours, len(st.offers), sum(o.status == "withdrawn" for o in st.offers)))
    # Physicians still thinking would answer onboardings that no longer exist: end them first.
    for sim_id in sorted(sims):
        try:
            await client.get_workflow_handle(sim_id).terminate("simulation over")
        except RPCError:
            pass  # already answered
    sims.clear()
    for h in handles:
        await h.terminate("simulation over")
    return out


def upper_95(k: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound on a share seen ``k`` times in ``n``: the p at which
    P(X <= k | n, p) = 0.05 (bisection on the binomial CDF; 0 of n gives 1 - 0.05^(1/n) ≈ 3/n)."""
    if k >= n:
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                            + i * math.log(p) + (n - i) * math.log1p(-p)) for i in range(k + 1))
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 0.05 else (lo, mid)
    return hi


def shares(hours: list[float | None], offers: list[int] | None = None, withdrawn: list[int] | None = None) -> dict:
    n = len(hours)
    matched = sorted(h for h in hours if h is not None)
    unplaced_12h = n - sum(h <= 12 for h in matched)
    return {
        "onboardings": n,
        "matched_12h": round(sum(h <= 12 for h in matched) / n, 4),
        "unplaced_12h": unplaced_12h,
        "unplaced_12h_upper95": round(upper_95(unplaced_12h, n), 5),
        "matched_24h": round(sum(h <= 24 for h in matched) / n, 4),
        "never_matched": round((n - len(matched)) / n, 4),  # by the 26 h horizon
        "median_hours": round(matched[len(matched) // 2], 2) if matched else None,  # of the matched
        "p95_hours": round(matched[min(len(matched) - 1, int(0.95 * len(matched)))], 2) if matched else None,
        "offers_per_onboarding": round(sum(offers) / n, 2) if offers else None,
        "withdrawn_per_onboarding": round(sum(withdrawn) / n, 2) if withdrawn else None,
    }


async def run_scenario(roster: Roster, onboardings: int, fanout: int, label: str, batch: int) -> dict:
    """One scenario (fan-out x variant): each batch on a fresh time-skipping server and workers (the
    roster's response history carries over, in this process). In one long-lived server thousands of
    terminated runs slowed later scenarios to near real time, and the clock got stuck more and more often
    in the later batches of a 500-onboarding scenario (``advance``)."""
    roster.reset_history()  # each scenario learns who is silent from scratch
    started = time.perf_counter()
    per: list[tuple[float | None, int, int]] = []
    stats = {"clock_unstuck": 0}
    for b in range(0, onboardings, batch):
        keys = [f"sim-f{fanout}-{i:05d}" for i in range(b, min(onboardings, b + batch))]
        per += await on_fresh_server(roster, fanout, label, keys, stats)
    hours, offers, withdrawn = ([p[i] for p in per] for i in range(3))
    r = shares(hours, offers, withdrawn)
    r["wall_s"] = round(time.perf_counter() - started, 1)
    r["clock_unstuck"] = stats["clock_unstuck"]
    print_scenario(fanout, label, r)
    r.update(hours=[None if h is None else round(h, 4) for h in hours], offers=offers, withdrawn=withdrawn)
    return r


async def on_fresh_server(roster: Roster, fanout: int, label: str, keys: list[str],
                          stats: dict) -> list[tuple[float | None, int, int]]:
    """``run_batch`` on a time-skipping server and workers of its own."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=temporal_test_server())
    try:
        await ensure_search_attributes(env.client)
        task_queue = f"sla-sim-{uuid.uuid4().hex[:8]}"
        sim_queue = f"{task_queue}-physicians"
        sims: set[str] = set()
        onboarding_acts, physician_acts = sim_activities(env.client, roster, sim_queue, sims)
        async with Worker(env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                          activities=onboarding_acts, activity_executor=ThreadPoolExecutor(16),
                          workflow_runner=RUNNER), \
                Worker(env.client, task_queue=sim_queue, workflows=[PhysicianSim], activities=physician_acts,
                       max_concurrent_activities=1000, workflow_runner=RUNNER):
            return await run_batch(env, task_queue, fanout, VARIANTS[label], label, keys, sims, stats)
    finally:
        await env.shutdown()


def print_scenario(fanout: int | str, label: str, r: dict) -> None:
    print(f"fan-out {fanout} {label:6}: {r['onboardings']} onboardings, within 12 h {r['matched_12h']:.1%} "
          f"({r['unplaced_12h']} unplaced, 95 % upper bound {r['unplaced_12h_upper95']:.3%}), "
          f"within 24 h {r['matched_24h']:.1%}, never {r['never_matched']:.1%} (median {r['median_hours']} h, "
          f"p95 {r['p95_hours']} h; offers {r['offers_per_onboarding']}, withdrawn {r['withdrawn_per_onboarding']} "
          f"per onboarding; {r['wall_s']} s; clock released {r.get('clock_unstuck', 0)} time(s))", flush=True)


async def simulate(onboardings: int, fanouts: list[int], seed: int, batch: int, *, roster_size: int = ROSTER,
                   pool: int = POOL, silent_share: float = SILENT_SHARE, variants: list[str] | None = None) -> dict:
    roster = Roster(seed, roster_size, pool, silent_share)
    variants = variants or DEFAULT_VARIANTS
    results: dict = {"seed": seed, "answer_hours": [MIN_ANSWER_H, MAX_ANSWER_H], "p_accept": P_ACCEPT,
                     "offer_ttl_hours": Timing().offer_ttl.total_seconds() / 3600, "roster": roster_size,
                     "pool": pool, "silent_share": silent_share, "silent_physicians": len(roster.silent),
                     "offer_rounds_max": {v: VARIANTS[v].offer_rounds_max for v in variants},
                     "offer_burst_max": {v: VARIANTS[v].offer_burst_max or 0 for v in variants}, "fanouts": {}}
    for fanout in fanouts:
        results["fanouts"][str(fanout)] = {
            label: await run_scenario(roster, onboardings, fanout, label, batch) for label in variants}
    add_goals(results)
    return results


def add_goals(results: dict) -> None:
    top = results["fanouts"].get("3", {}).get("after")
    if top:
        results["goals_fanout3_after"] = {
            "matched_12h": GOAL_12H_FANOUT3, "median_hours": GOAL_MEDIAN_H_FANOUT3,
            # both ratios: >= 1 meets the goal
            "ratio_matched_12h": round(top["matched_12h"] / GOAL_12H_FANOUT3, 4),
            "ratio_median": round(GOAL_MEDIAN_H_FANOUT3 / top["median_hours"], 4) if top["median_hours"] else None,
        }


def merge(paths: list[Path]) -> dict:
    """Pool the per-onboarding figures of several ``--json`` files (same pool and model, other seeds)."""
    runs = [json.loads(p.read_text()) for p in paths]
    for key in ("pool", "roster", "silent_share", "answer_hours", "p_accept"):
        if len({json.dumps(r.get(key)) for r in runs}) > 1:
            raise SystemExit(f"--merge: the files differ in {key}; pool only runs of the same model")
    out: dict = {k: runs[0][k] for k in ("answer_hours", "p_accept", "offer_ttl_hours", "roster", "pool",
                                          "silent_share")}
    out.update(seeds=[r["seed"] for r in runs], files=[str(p) for p in paths], offer_rounds_max={},
               offer_burst_max={}, fanouts={})
    for r in runs:
        out["offer_rounds_max"].update(r["offer_rounds_max"])
        out["offer_burst_max"].update(r["offer_burst_max"])
        for fanout, per_variant in r["fanouts"].items():
            for label, sc in per_variant.items():
                if "hours" not in sc:
                    raise SystemExit(f"--merge: {fanout}/{label} in a file without per-onboarding figures")
                acc = out["fanouts"].setdefault(fanout, {}).setdefault(
                    label, {"hours": [], "offers": [], "withdrawn": [], "wall_s": 0.0, "clock_unstuck": 0})
                for k in ("hours", "offers", "withdrawn"):
                    acc[k] += sc[k]
                acc["wall_s"] += sc["wall_s"]
                acc["clock_unstuck"] += sc.get("clock_unstuck", 0)
    for fanout, per_variant in out["fanouts"].items():
        for label, acc in per_variant.items():
            r = shares(acc["hours"], acc["offers"], acc["withdrawn"])
            r["wall_s"], r["clock_unstuck"] = round(acc["wall_s"], 1), acc["clock_unstuck"]
            per_variant[label] = r
            print_scenario(fanout, label, r)
    add_goals(out)
    return out


def table(results: dict) -> str:
    rows = ["| fan-out | rounds | placed ≤ 12 h | unplaced at 12 h (95 % upper bound) | placed ≤ 24 h | "
            "median / p95 to match | never (26 h) | offers (withdrawn) per onboarding | wall |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for fanout, per_variant in results["fanouts"].items():
        for label, r in per_variant.items():
            burst = results.get("offer_burst_max", {}).get(label, 0)
            rows.append(f"| {fanout} | {label} (max {results['offer_rounds_max'][label]}"
                        f"{f', burst {burst}' if burst else ''}) | {r['matched_12h']:.2%} | "
                        f"{r.get('unplaced_12h', '?')} of {r['onboardings']} (≤ {r.get('unplaced_12h_upper95', 0):.3%}) | "
                        f"{r['matched_24h']:.1%} | {r['median_hours']} h / {r['p95_hours']} h | "
                        f"{r['never_matched']:.1%} | {r.get('offers_per_onboarding')} "
                        f"({r.get('withdrawn_per_onboarding')}) | {r['wall_s']} s |")
    goals = results.get("goals_fanout3_after")
    if goals:
        rows.append(f"\nfan-out 3 after vs goals: ≤ 12 h ratio {goals['ratio_matched_12h']} (goal "
                    f"{goals['matched_12h']:.1%}), median ratio {goals['ratio_median']} (goal ≤ "
                    f"{goals['median_hours']:g} h); ≥ 1 meets the goal")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onboardings", type=int, default=500, help="per fan-out and variant")
    ap.add_argument("--fanout", type=int, action="append", help="repeatable; default 1 and 3")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=100, help="onboardings in flight at once")
    ap.add_argument("--roster", type=int, default=ROSTER, help="physicians in the global roster")
    ap.add_argument("--pool", type=int, default=POOL, help="eligible physicians per clinic")
    ap.add_argument("--silent-share", type=float, default=SILENT_SHARE, help="share of the roster that never answers")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS),
                    help="repeatable; default before (offer_rounds_max=1, no burst) and after (default Timing); "
                         "no-burst: re-offer at expiry without the burst (offer_burst_max=0); burst-at-expiry: "
                         "the burst only at the first expiry (offer_widen_after=None)")
    ap.add_argument("--json", dest="json_path", type=Path)
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="pool the figures of these --json files (runs of other seeds) instead of simulating")
    args = ap.parse_args(argv)
    if args.merge:
        results = merge(args.merge)
        print(table(results))
        if args.json_path:
            args.json_path.write_text(json.dumps(results, indent=2) + "\n")
        return results
    results = asyncio.run(simulate(args.onboardings, args.fanout or [1, 3], args.seed, args.batch,
                                   roster_size=args.roster, pool=args.pool, silent_share=args.silent_share,
                                   variants=args.variant))
    print(table(results))
    print(json.dumps(results))
    if args.json_path:
        args.json_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
