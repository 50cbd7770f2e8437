"""The committed demo data works end to end through the domain: valid, matchable, fillable, unblocked."""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from domain.assessment import assess
from domain.codes import Service
from domain.identifiers import valid_dea, valid_npi
from domain.intake import parse_intake
from domain.matching import rank
from domain.pharmacy import select_pharmacies
from domain.roster import parse_pharmacies, parse_physicians

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
KEYS = ["glow-austin", "sunrise-miami", "peak-denver"]
#: peak-denver orders compounded GLP-1 after the FDA discretion ended: the demo's plan ops must approve.
BLOCKED = {"peak-denver": ["fda.compounding_discretion.semaglutide", "fda.compounding_discretion.tirzepatide"]}


@pytest.fixture(scope="module")
def roster():
    docs, errors = parse_physicians((DEMO / "physicians.csv").read_text(), "csv")
    pharmacies, ph_errors = parse_pharmacies((DEMO / "pharmacies.csv").read_text(), "csv")
    assert errors == [] and ph_errors == []
    return docs, pharmacies


def test_roster_shape(roster):
    docs, pharmacies = roster
    assert len(docs) >= 60 and len(pharmacies) >= 8
    homes = {d.home_state for d in docs}
    assert {"TX", "OK", "FL", "CA", "NY", "AZ", "CO", "GA", "WA", "IL", "NC", "NV"} <= homes
    for d in docs:
        assert valid_npi(d.npi) and d.email.endswith("@md.example") and 3 <= d.max_clinics <= 8
        assert 0 <= d.active_clinics <= 2 or d.active_clinics == d.max_clinics
        assert all(valid_dea(r.number, d.last_name) and r.number[1] == d.last_name[0] for r in d.dea)
        assert all(2027 <= lic.expires.year <= 2029 for lic in d.licenses)
    assert sum(d.telehealth for d in docs) > len(docs) * 0.7
    assert {p.kind.value for p in pharmacies} == {"503A", "503B"}


@pytest.mark.parametrize("key", KEYS)
def test_demo_intake_matches_fills_and_only_the_expected_one_is_blocked(key, roster):
    docs, pharmacies = roster
    raw = json.loads((DEMO / "intakes" / f"{key}.json").read_text())
    intake, problems = parse_intake(raw)
    assert problems == [] and intake is not None
    assert intake.contact.email.endswith("@clinic.example") and intake.requested_start == date(2026, 12, 15)
    plan = assess(intake, date(2026, 12, 1))
    assert sorted(f.rule_id for f in plan.blocking) == BLOCKED.get(key, [])
    assert intake.product_choices[Service.glp1_weight_loss] == ("compounded_503a" if key in BLOCKED else "fda_approved")
    assert len(rank(docs, intake, plan).candidates) >= 3
    assignments, unfilled = select_pharmacies(intake, plan, pharmacies)
    assert unfilled == []
    compounded = {s for s, model in plan.pharmacy_model.items() if model != "none"}
    assert compounded and {s.value for a in assignments for s in a.services} == compounded


def test_intakes_differ():
    intakes = [json.loads((DEMO / "intakes" / f"{k}.json").read_text()) for k in KEYS]
    assert len({tuple(i["states"]) for i in intakes}) == 3 and len({tuple(i["services"]) for i in intakes}) == 3


def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), str(tmp_path)], check=True,
                   capture_output=True)
    committed = {p.relative_to(DEMO): p.read_bytes() for p in DEMO.rglob("*") if p.is_file()}
    generated = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert committed == generated and len(committed) == 5
