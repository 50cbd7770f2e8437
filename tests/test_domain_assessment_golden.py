"""Golden oversight plans: the whole plan for representative intakes, compared structurally.

Regenerate after an intended rule-data or engine change with
``MDCO_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_domain_assessment_golden.py`` and review the diff.
"""

import json
import os
from datetime import date
from pathlib import Path

import pytest

from domain.assessment import assess
from domain.intake import Intake

GOLDEN = Path(__file__).parent / "golden"
CONTACT = {"name": "Test Owner", "email": "owner@clinic.example", "phone": "+15125550100"}


def _intake(key: str, **fields) -> Intake:
    return Intake.model_validate({"clinic_key": key, "clinic_name": key.title(), "contact": CONTACT,
                                  "locations": [], "midlevels": [], **fields})


def _mid(state: str, role: str, n: int = 1) -> list[dict]:
    return [{"name": f"{role} {i}", "role": role, "state": state, "license_number": f"{role}{i:05d}"} for i in range(n)]


CASES = {
    # Texas med spa: IV therapy after HB 3749, NPs under a prescriptive authority agreement, FDA-approved GLP-1.
    "tx_med_spa": (_intake(
        "tx-med-spa", states=["TX"], care_model="on_site", monthly_patients=240,
        services=["neurotoxins", "iv_nutrients", "glp1_weight_loss"], product_choices={"glp1_weight_loss": "fda_approved"},
        locations=[{"state": "TX", "city": "Austin", "zip": "78701"}], midlevels=_mid("TX", "NP", 3),
        requested_start="2026-02-01"), date(2026, 1, 10)),
    # Florida skin-care office with a PA: §458.348(4) puts the physician on site.
    "fl_skin_care": (_intake(
        "fl-skin-care", states=["FL"], care_model="on_site", monthly_patients=90,
        services=["neurotoxins", "dermal_fillers", "female_hrt"],
        locations=[{"state": "FL", "city": "Miami", "zip": "33131"}], midlevels=_mid("FL", "PA", 2) + _mid("FL", "RN"),
        requested_start="2026-03-01"), date(2026, 2, 1)),
    # California with five PAs: over 1:4 in 2025, within 1:8 from 2026-01-01.
    "ca_five_pas_2025": (_intake(
        "ca-five-pas", states=["CA"], care_model="hybrid", monthly_patients=400, services=["neurotoxins", "laser"],
        locations=[{"state": "CA", "city": "San Diego", "zip": "92101"}], midlevels=_mid("CA", "PA", 5),
        requested_start="2025-11-01"), date(2025, 10, 1)),
    "ca_five_pas_2026": (_intake(
        "ca-five-pas", states=["CA"], care_model="hybrid", monthly_patients=400, services=["neurotoxins", "laser"],
        locations=[{"state": "CA", "city": "San Diego", "zip": "92101"}], midlevels=_mid("CA", "PA", 5),
        requested_start="2026-01-05"), date(2025, 10, 1)),
    # Multi-state telehealth: controlled substance (Ryan Haight), GLP-1 without a product choice (blocking),
    # unverified states planned conservatively.
    "multistate_telehealth": (_intake(
        "tele-multi", states=["TX", "CA", "NY", "WA", "MO"], care_model="telehealth", monthly_patients=1500,
        services=["testosterone_hrt", "glp1_weight_loss", "ketamine"], midlevels=_mid("MO", "NP", 2),
        requested_start="2026-12-15"), date(2026, 12, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_plan(name):
    intake, as_of = CASES[name]
    plan = assess(intake, as_of).model_dump(mode="json")
    path = GOLDEN / f"{name}.json"
    if os.environ.get("MDCO_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    for key in sorted(set(expected) | set(plan)):
        assert plan.get(key) == expected.get(key), f"{name}: plan.{key} differs from {path.name}"


def test_golden_plans_show_the_dated_and_headline_rules():
    load = {name: json.loads((GOLDEN / f"{name}.json").read_text()) for name in CASES}
    tx = load["tx_med_spa"]
    assert any("3749" in n for n in tx["states"]["TX"]["notes"]) and tx["states"]["TX"]["supervision_ratio_cap"] == 7
    assert tx["pharmacy_model"] == {"neurotoxins": "none", "iv_nutrients": "503B", "glp1_weight_loss": "none"}
    assert not [f for f in tx["findings"] if f["severity"] == "blocking"]
    fl = load["fl_skin_care"]
    assert fl["oversight_mode"] == "on_site" and "458.348(4)" in fl["oversight_reason"]
    assert load["ca_five_pas_2025"]["states"]["CA"]["ratio_caps"] == {"NP": 4, "PA": 4}
    assert fl["states"]["FL"]["director_board_certifications"] == ["dermatology", "plastic_surgery"]
    assert [f["rule_id"] for f in load["ca_five_pas_2025"]["findings"] if f["severity"] == "blocking"] == ["ratio_cap.CA"]
    assert load["ca_five_pas_2026"]["states"]["CA"]["ratio_caps"] == {"NP": 4, "PA": 8}  # B&P §2836.1 beside §3516
    assert not [f for f in load["ca_five_pas_2026"]["findings"] if f["severity"] == "blocking"]
    multi = load["multistate_telehealth"]
    assert multi["dea_required_states"] == ["TX", "CA", "NY", "WA", "MO"]
    review = multi["chart_review"]
    assert (review["percent"], review["cadence_days"], review["basis"]) == (10, 14, "law")  # Missouri
    assert {st: sp["chart_review"]["basis"] for st, sp in multi["states"].items()} == {
        "TX": "policy", "CA": "policy", "NY": "policy", "WA": "policy", "MO": "law"}
    ids = {f["rule_id"]: f["severity"] for f in multi["findings"]}
    assert ids["dea.ryan_haight"] == "warning" and ids["product_choice.missing.glp1_weight_loss"] == "blocking"
    assert multi["pharmacy_model"]["ketamine"] == "503A"
