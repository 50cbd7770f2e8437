"""bench/sla_sim.py runs end to end on a handful of onboardings (figures are measured by the bench,
never asserted here) and its finite-roster model is deterministic."""

from bench.sla_sim import Roster, main


def test_roster_model_is_deterministic_and_ranks_silence_last():
    a, b = Roster(7), Roster(7)
    assert a.silent == b.silent and len(a.silent) == 15
    pool = a.clinic_pool("clinic-1")
    assert pool == b.clinic_pool("clinic-1") and len(set(pool)) == 5
    a.record(pool[0], "expired")  # their offer expired unanswered: ranked last
    a.record(pool[4], "declined")  # answered: ranked first
    assert a.rank("clinic-1", exclude={pool[1]}, top=5) == [pool[4], pool[2], pool[3], pool[0]]
    npi = next(n for n in pool if n not in a.silent)
    assert a.answer("clinic-1", npi, 1) == b.answer("clinic-1", npi, 1)
    assert a.answer("clinic-1", npi, 1) != a.answer("clinic-1", npi, 2)  # a re-offer gets a fresh draw
    assert all(a.answer("clinic-1", n, 1) is None for n in a.silent)


def test_sla_sim_runs_before_and_after(tmp_path):
    out = tmp_path / "sla.json"
    results = main(["--onboardings", "6", "--batch", "6", "--fanout", "3", "--json", str(out)])
    assert out.exists()
    per_variant = results["fanouts"]["3"]
    assert set(per_variant) == {"before", "after"}
    for r in per_variant.values():
        assert r["onboardings"] == 6
        assert 0 <= r["matched_12h"] <= r["matched_24h"] <= 1 - r["never_matched"] + 1e-9
    assert results["offer_rounds_max"] == {"before": 1, "after": 3}
    assert set(results["goals_fanout3_after"]) >= {"ratio_matched_12h", "ratio_median"}


def test_upper_bound_on_the_unplaced_share():
    from bench.sla_sim import upper_95
    assert abs(upper_95(0, 3000) - (1 - 0.05 ** (1 / 3000))) < 1e-6  # 0 of 3,000: just under 0.1 %
    assert upper_95(0, 3000) < 0.001 < upper_95(1, 3000)  # one unplaced of 3,000 no longer shows 99.9 %
    assert abs(upper_95(2, 500) - 0.01252) < 5e-5  # 2 of 500 (BENCHMARKS: <= 1.3 %)


def test_merge_pools_runs_of_other_seeds(tmp_path):
    import json

    def run(seed: int, hours: list, offers: list, withdrawn: list) -> str:
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({
            "seed": seed, "answer_hours": [0.5, 8.0], "p_accept": 0.6, "offer_ttl_hours": 4.0, "roster": 60,
            "pool": 20, "silent_share": 0.25, "offer_rounds_max": {"after": 3}, "offer_burst_max": {"after": 15},
            "fanouts": {"3": {"after": {"hours": hours, "offers": offers, "withdrawn": withdrawn, "wall_s": 1.0}}}}))
        return str(path)
    results = main(["--merge", run(7, [1.0, 13.0], [3, 9], [2, 0]), run(8, [None, 2.0], [15, 4], [0, 3])])
    r = results["fanouts"]["3"]["after"]
    assert r["onboardings"] == 4 and r["unplaced_12h"] == 2 and r["matched_12h"] == 0.5
    assert r["offers_per_onboarding"] == 7.75 and r["withdrawn_per_onboarding"] == 1.25
    assert results["seeds"] == [7, 8]


async def test_a_stuck_clock_is_released_and_counted(monkeypatch):
    """A step that does not come back in time releases one time-skipping lock, then the step is re-asked."""
    import asyncio
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    import bench.sla_sim as sim

    class Env:
        def __init__(self):
            self.now, self.locks, self.unlocks = datetime(2026, 1, 1), 1, 0
            self.client = SimpleNamespace(test_service=SimpleNamespace(unlock_time_skipping=self.unlock))

        async def unlock(self, _request):
            self.unlocks += 1
            self.locks -= 1

        async def get_current_time(self):
            return self.now

        async def sleep(self, span):
            while self.locks:  # a leaked lock: the clock does not skip
                await asyncio.sleep(0.01)
            self.now += span

    monkeypatch.setattr(sim, "STUCK_AFTER_S", 0.05)
    env, stats = Env(), {}
    await sim.advance(env, timedelta(hours=3), stats=stats)
    assert env.now == datetime(2026, 1, 1, 3) and env.unlocks == 1 and stats == {"clock_unstuck": 1}
