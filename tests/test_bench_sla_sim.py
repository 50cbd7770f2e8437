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
