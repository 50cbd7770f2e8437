"""A rough event model of the matching loop, for estimates the real simulation is too slow to sweep.

Not the workflow: a few lines that copy its rules (``OnboardingWorkflow._match`` with patch
``reoffer-at-expiry-v1``): ``fanout`` offers at first, one more open slot per offer that expired
unanswered (at most ``max_parallel``, or the whole pool at the first expiry with ``--burst``), fresh
candidates before re-offers, a physician re-offered as soon as the offer expired, at most ``cap`` offers
each, a decliner never re-asked. Answers as in ``bench/sla_sim.py``: a silent share never answers, the
others after U(0.5 h, 8 h), accepting with p = 0.6; an answer after the TTL is lost. The history is taken
as known: answering physicians are ranked first (``--random-order``: no history at all). Use it to pick
sweep points and bound figures; measure with ``bench.sla_sim``.

    .venv/bin/python -m bench.sla_model --pool 5 10 15 20 30 --fanout 3 6
"""

from __future__ import annotations

import argparse
import random
import statistics

from bench.sla_sim import MAX_ANSWER_H, MIN_ANSWER_H, P_ACCEPT, SILENT_SHARE


def hours_to_match(rng: random.Random, pool: int, fanout: int, *, ttl: float = 4.0, cap: int = 3,
                   max_parallel: int = 10, burst: bool = False, answering_first: bool = True,
                   horizon: float = 26.0) -> float | None:
    """One onboarding: hours to the first accept, or None by ``horizon``."""
    silent = [rng.random() < SILENT_SHARE for _ in range(pool)]
    order = sorted(range(pool), key=lambda i: silent[i]) if answering_first else list(range(pool))
    fresh, offers, closed, open_ = list(order), dict.fromkeys(order, 0), {}, {}
    expired = 0

    def send(i: int, now: float) -> None:
        offers[i] += 1
        delay, accepts = rng.uniform(MIN_ANSWER_H, MAX_ANSWER_H), rng.random() < P_ACCEPT
        answered = not silent[i] and delay <= ttl
        open_[i] = (now + delay, accepts) if answered else (now + ttl, None)

    def fill(now: float) -> None:
        slots = (pool if burst and expired else min(max_parallel, fanout + expired)) - len(open_)
        again = [i for i in order if closed.get(i) == "expired" and offers[i] < cap and i not in open_]
        for i in (fresh[:slots] + again)[:max(slots, 0)]:
            if i in fresh:
                fresh.remove(i)
            send(i, now)

    fill(0.0)
    while open_:
        i, (at, accepts) = min(open_.items(), key=lambda kv: kv[1][0])
        if at > horizon:
            return None
        del open_[i]
        if accepts:
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
    ap.add_argument("--burst", action="store_true", help="the whole pool at the first expired offer")
    ap.add_argument("--random-order", action="store_true", help="no response history: silent not ranked last")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    for fanout in args.fanout:
        for pool in args.pool:
            rng = random.Random(args.seed)
            hours = [hours_to_match(rng, pool, fanout, burst=args.burst, answering_first=not args.random_order)
                     for _ in range(args.draws)]
            placed = sorted(h for h in hours if h is not None)
            print(f"fan-out {fanout} pool {pool:3}: placed <= 12 h {sum(h <= 12 for h in placed) / len(hours):.4f}, "
                  f"median {statistics.median(placed):.2f} h")


if __name__ == "__main__":
    main()
