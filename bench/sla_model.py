"""A rough event model of the matching loop, for estimates the real simulation is too slow to sweep.

Not the workflow: a few lines that copy its rules (``OnboardingWorkflow._match`` with patch
``reoffer-at-expiry-v1``): ``fanout`` offers at first, one more open slot per offer that expired
unanswered (at most ``max_parallel``; with ``--burst CAP``, as ``Timing.offer_burst_max``: from the first
expiry up to CAP open offers, ``--burst`` alone the whole pool; with ``--widen-after MIN``, as
``Timing.offer_widen_after`` (patch ``sla-widen-early-v1``): the same widening already MIN minutes after the
first offers went out when nobody accepted by then), fresh
candidates before re-offers, a physician re-offered as soon as the offer expired, at most ``cap`` offers
each, a decliner never re-asked. Answers as in ``bench/sla_sim.py``: a silent share never answers, the
others after U(0.5 h, 8 h), accepting with p = 0.6; an answer after the TTL is lost. The history is taken
as known: answering physicians are ranked first (``--random-order``: no history at all). Use it to pick
sweep points and bound figures; measure with ``bench.sla_sim``.

    .venv/bin/python -m bench.sla_model --pool 5 10 15 20 30 --fanout 3 6
    .venv/bin/python -m bench.sla_model --pool 10 15 20 --fanout 3 --burst 10 15 20
    .venv/bin/python -m bench.sla_model --pool 5 20 --fanout 3 --burst 15 --widen-after 0 15 30 45 60
"""

from __future__ import annotations

import argparse
import random
import statistics

from bench.sla_sim import MAX_ANSWER_H, MIN_ANSWER_H, P_ACCEPT, SILENT_SHARE


def hours_to_match(rng: random.Random, pool: int, fanout: int, *, ttl: float = 4.0, cap: int = 3,
                   max_parallel: int = 10, burst: int = 0, widen_after: float | None = None,
                   answering_first: bool = True, horizon: float = 26.0, counts: dict | None = None) -> float | None:
    """One onboarding: hours to the first accept, or None by ``horizon``. ``burst``: from the first
    expired offer, up to that many open offers (at least ``fanout``); 0: no burst. ``widen_after``
    (hours, with a burst cap): the burst starts then already when nobody accepted; None: at the expiry."""
    silent = [rng.random() < SILENT_SHARE for _ in range(pool)]
    order = sorted(range(pool), key=lambda i: silent[i]) if answering_first else list(range(pool))
    fresh, offers, closed, open_ = list(order), dict.fromkeys(order, 0), {}, {}
    expired, widened = 0, False

    def send(i: int, now: float) -> None:
        offers[i] += 1
        counts["sent"] = counts.get("sent", 0) + 1
        delay, accepts = rng.uniform(MIN_ANSWER_H, MAX_ANSWER_H), rng.random() < P_ACCEPT
        answered = not silent[i] and delay <= ttl
        open_[i] = (now + delay, accepts) if answered else (now + ttl, None)

    def fill(now: float) -> None:
        slots = (max(fanout, burst) if burst and (expired or widened)
                 else min(max_parallel, fanout + expired)) - len(open_)
        again = [i for i in order if closed.get(i) == "expired" and offers[i] < cap and i not in open_]
        for i in (fresh[:slots] + again)[:max(slots, 0)]:
            if i in fresh:
                fresh.remove(i)
            send(i, now)

    fill(0.0)
    early = widen_after if burst and widen_after is not None else None
    while open_:
        i, (at, accepts) = min(open_.items(), key=lambda kv: kv[1][0])
        if early is not None and early <= at:  # the early widening's timer fires before the next answer
            widened, early = True, None
            fill(max(widen_after, 0.0))
            continue
        if at > horizon:
            return None
        del open_[i]
        if accepts:
            counts["withdrawn"] = counts.get("withdrawn", 0) + len(open_)
            return at
        closed[i] = "declined" if accepts is False else "expired"
        expired += accepts is None
        fill(at)
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, nargs="+", default=[5, 10, 15, 20, 30])
    ap.add_argument("--fanout", type=int, nargs="+", default=[3])
    ap.add_argument("--draws", type=int, default=20_000)
    ap.add_argument("--burst", type=int, nargs="*", metavar="CAP",
                    help="from the first expired offer up to CAP open offers (each CAP a row; alone: the whole pool)")
    ap.add_argument("--widen-after", type=float, nargs="*", metavar="MIN",
                    help="with --burst: widen MIN minutes after the first offers when nobody accepted (each MIN a "
                         "row; as Timing.offer_widen_after); without: at the first expiry only")
    ap.add_argument("--random-order", action="store_true", help="no response history: silent not ranked last")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    caps = [0] if args.burst is None else (args.burst or [None])  # None: the whole pool
    widens = [None] + list(args.widen_after or [])  # None: the burst at the first expiry only
    for fanout in args.fanout:
        for cap in caps:
            for widen in widens if cap != 0 else [None]:
                for pool in args.pool:
                    rng, counts = random.Random(args.seed), {"sent": 0, "withdrawn": 0}
                    hours = [hours_to_match(rng, pool, fanout, burst=pool if cap is None else cap,
                                            widen_after=None if widen is None else widen / 60,
                                            answering_first=not args.random_order, counts=counts)
                             for _ in range(args.draws)]
                    placed = sorted(h for h in hours if h is not None)
                    burst = "" if cap == 0 else f" burst {'pool' if cap is None else cap:>4}"
                    early = "" if widen is None else f" widen {widen:g} min"
                    print(f"fan-out {fanout}{burst}{early} pool {pool:3}: placed <= 12 h "
                          f"{sum(h <= 12 for h in placed) / len(hours):.4f}, "
                          f"median {statistics.median(placed):.2f} h, "
                          f"offers {counts['sent'] / len(hours):.1f} per onboarding "
                          f"({counts['withdrawn'] / len(hours):.1f} withdrawn)")


if __name__ == "__main__":
    main()
