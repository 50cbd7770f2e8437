"""``mdco assess FILE [--as-of] [--json]`` as sales run it: a real subprocess, no stack needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "intakes"


def mdco_assess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "starter", "assess", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def intake_file(tmp_path: Path, **changes) -> Path:
    raw = json.loads((DEMO / "glow-austin.json").read_text())
    raw.update(changes)
    path = tmp_path / "intake.json"
    path.write_text(json.dumps(raw))
    return path


def test_json_plan_has_the_documented_keys():
    proc = mdco_assess(str(DEMO / "glow-austin.json"), "--as-of", "2026-12-01", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert {"as_of", "states", "dea_required_states", "chart_review", "findings", "quote"} <= set(plan)
    assert plan["as_of"] == "2026-12-01"
    tx = plan["states"]["TX"]
    assert (tx["np_practice"], tx["supervision_ratio_cap"], tx["dea_required"]) == ("restricted", 7, True)
    assert plan["dea_required_states"] == ["TX", "OK"]
    assert set(plan["chart_review"]) == {"percent", "cadence_days", "basis"}
    assert all({"rule_id", "severity", "message", "source"} <= set(f) for f in plan["findings"])
    assert isinstance(plan["quote"]["monthly_usd"], int)
    assert [line["factor"] for line in plan["quote"]["lines"]] == [
        "base", "state_strictness", "therapy_risk", "patient_volume", "scope_of_involvement"]
    assert plan["pharmacy_model"]["glp1_weight_loss"] == "none" and plan["oversight_mode"] == "remote"


def test_as_of_moves_the_plan_across_a_dated_rule(tmp_path):
    """Compounded GLP-1 without a product choice: fine before 2025-02-18, blocking from that day."""
    path = intake_file(tmp_path, product_choices={}, requested_start="2025-01-01")
    before = json.loads(mdco_assess(str(path), "--as-of", "2025-02-17", "--json").stdout)
    after = json.loads(mdco_assess(str(path), "--as-of", "2025-02-18", "--json").stdout)
    blocking = [[f["rule_id"] for f in p["findings"] if f["severity"] == "blocking"] for p in (before, after)]
    assert blocking == [[], ["product_choice.missing.glp1_weight_loss"]]


def test_human_output_shows_findings_and_quote_lines():
    proc = mdco_assess(str(DEMO / "peak-denver.json"), "--as-of", "2026-12-01")
    assert proc.returncode == 0, proc.stderr
    assert "blocking fda.compounding_discretion.semaglutide" in proc.stdout
    assert "therapy_risk" in proc.stdout and "quote: $" in proc.stdout


def test_human_output_shows_each_states_caps_and_chart_review(tmp_path):
    """MO 10 %/14 d + TN 20 %/30 d -> 20 % every 14 days; CA's NP furnishing cap beside its PA cap."""
    path = intake_file(tmp_path, states=["MO", "TN", "CA"], locations=[], midlevels=[],
                       services=["neurotoxins"], product_choices={})
    proc = mdco_assess(str(path), "--as-of", "2026-12-01")
    assert proc.returncode == 0, proc.stderr
    assert "chart review: 20% every 14 days (law; the strictest over the states)" in proc.stdout
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 5}
    assert "10%/14 d (law)" in rows["MO"] and "20%/30 d (law)" in rows["TN"] and "10%/30 d (policy)" in rows["CA"]
    assert "NP 4, PA 8" in rows["CA"]


@pytest.mark.parametrize("changes, args, expected", [
    ({"states": ["TX", "ZZ"], "care_model": "remote"}, [], ["states", "care_model"]),
    ({"product_choices": {"ketamine": "fda_approved"}}, [], ["product_choices.ketamine is not one of the requested"]),
    ({}, ["--as-of", "2026-13-40"], ["--as-of", "not a date"]),
])
def test_bad_input_exits_2_naming_the_field(tmp_path, changes, args, expected):
    proc = mdco_assess(str(intake_file(tmp_path, **changes)), *args, "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    for text in expected:
        assert text in proc.stderr
