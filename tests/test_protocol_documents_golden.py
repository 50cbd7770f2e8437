"""Golden protocol documents: each service's standing order rendered from ``domain.protocols.build_protocol``
for a fixed clinic (TX + OK, hybrid, an NP), compared to the text under ``tests/golden/protocols/``.

The text is what a director approves (its SHA-256 is stored and bound to the approval), so any change shows
up here. Regenerate after an intended template or protocol-data change with
``MDCO_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_protocol_documents_golden.py`` and review the diff.
"""

import hashlib
import os
from datetime import date
from pathlib import Path

import pytest

from domain.assessment import assess
from domain.codes import Service
from domain.documents import latest_template, protocol_document
from domain.intake import Intake
from domain.records import PhysicianRecord

GOLDEN = Path(__file__).parent / "golden" / "protocols"
AS_OF = date(2026, 11, 1)
INTAKE = Intake.model_validate({
    "clinic_key": "golden-clinic", "clinic_name": "Golden Aesthetics", "contact": {
        "name": "Dana Reyes", "email": "dana@clinic.example", "phone": "+15125550100"},
    "states": ["TX", "OK"], "care_model": "hybrid", "services": [s.value for s in Service], "monthly_patients": 200,
    "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}],
    "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"}],
    "requested_start": "2026-12-15"})
PLAN = assess(INTAKE, AS_OF)
DOC = PhysicianRecord.model_validate({
    "npi": "1234567893", "first_name": "Ana", "last_name": "Cruz", "degree": "MD", "email": "ana@md.example",
    "phone": "+15125550111", "home_state": "TX", "licenses": [{"state": "TX", "number": "Q1", "expires": "2028-01-01"},
                                                              {"state": "OK", "number": "K2", "expires": "2028-01-01"}],
    "max_clinics": 5, "active_clinics": 1, "malpractice_expires": "2028-01-01"})


@pytest.mark.parametrize("service", list(Service), ids=lambda s: s.value)
def test_protocol_document_matches_its_golden_text(service):
    version, body, content = protocol_document(service, INTAKE, PLAN, DOC)
    assert version == latest_template("protocols", service.value)[1] == content.version
    path = GOLDEN / f"{service.value}.md"
    if os.environ.get("MDCO_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    assert body == path.read_text(encoding="utf-8"), f"{path.name} changed: review, then MDCO_UPDATE_GOLDEN=1"


def test_same_inputs_same_sha256_and_a_changed_fact_changes_it():
    sha = lambda body: hashlib.sha256(body.encode()).hexdigest()  # noqa: E731
    _, first, _ = protocol_document("glp1_weight_loss", INTAKE, PLAN, DOC)
    _, again, _ = protocol_document("glp1_weight_loss", INTAKE, PLAN, DOC)
    assert sha(first) == sha(again)
    compounded = INTAKE.model_copy(update={"product_choices": {Service.glp1_weight_loss: "compounded_503a"}})
    _, other, content = protocol_document("glp1_weight_loss", compounded, assess(compounded, AS_OF), DOC)
    assert sha(other) != sha(first) and content.product == "compounded_503a"
    assert "only with a documented patient-specific clinical difference" in other


def test_the_document_states_the_sourced_facts():
    _, glp1, _ = protocol_document("glp1_weight_loss", INTAKE, PLAN, DOC)
    for needle in ("## 2. Delegation by role and state", "### TX", "### OK", "**NP** may:", "**RN** may:",
                   "- Start: 0.25 mg weekly for 4 weeks", "- Maximum: 2.4 mg once weekly",
                   "- Maximum: 15 mg once weekly", "MEN 2", "WEGOVY Prescribing Information, section 2",
                   "the director acknowledges within 1 h", "## 7. Informed consent", "## 9. Documentation",
                   "## 11. Sources", "`glp1_weight_loss.v2`"):
        assert needle in glp1, needle
    _, trt, _ = protocol_document("testosterone_hrt", INTAKE, PLAN, DOC)
    assert "- hematocrit: baseline, 3 to 6 months after starting, then yearly." in trt
    assert "DEA schedule III" in trt and "Product source: the FDA-approved product" in trt


def test_every_service_document_states_its_sourced_dosing_and_each_states_chart_review():
    for service, needles in {
        "neurotoxins": ("### onabotulinumtoxinA (intramuscular)", "cumulative 400 Units in a 3-month interval",
                        "BOTOX Cosmetic Prescribing Information, section 2"),
        "dermal_fillers": ("Unintentional Injection of Soft Tissue Filler into Blood Vessels", "gram-positive"),
        "laser": ("the device's labelled maximum settings", "ANSI Z136.3"),
        "female_hrt": ("- Start: 200 mg at bedtime for 12 sequential days", "Peanut allergy"),
        "iv_nutrients": ("0.9% Sodium Chloride Injection, USP", "fluid and solute overload"),
        "ketamine": ("- Start: 0.5 mg/kg over 40 minutes", "emergency airway equipment immediately available"),
    }.items():
        _, body, _ = protocol_document(service, INTAKE, PLAN, DOC)
        assert "no sourced dosing" not in body and "no sourced protocol data" not in body, service
        for needle in needles:
            assert needle in body, (service, needle)
        assert "- TX: 10% every 30 days (company policy" in body and "- OK: 10% every 30 days" in body


def test_unknown_facts_read_needs_review_with_what_to_check():
    _, trt, _ = protocol_document("testosterone_hrt", INTAKE, PLAN, DOC)
    assert "- estradiol: needs review: not a routine guideline lab; confirm indication and cadence" in trt
    assert "threshold: needs review: the guideline's hematocrit threshold for withholding therapy" in trt
    _, peptides, _ = protocol_document("peptides", INTAKE, PLAN, DOC)
    assert "- Start: needs review: 503A bulk-substance eligibility and dosing source for sermorelin" in peptides
    assert "### BPC-157 (none)\n- NOT AUTHORIZED: FDA 503A Category 2 bulk substance since 2023-09-29" in peptides
    _, fillers, _ = protocol_document("dermal_fillers", INTAKE, PLAN, DOC)
    assert "- Maximum: needs review: each product's maximum volume per area and per year" in fillers
    _, iv, _ = protocol_document("iv_nutrients", INTAKE, PLAN, DOC)
    assert "- Start: needs review: elective IV ascorbic acid is off-label" in iv
    for text in (trt, peptides, fillers, iv):
        assert ": unknown" not in text and "unknown." not in text  # never a bare unknown
