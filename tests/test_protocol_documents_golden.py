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


def test_unknown_facts_read_needs_review_with_what_to_check():
    _, trt, _ = protocol_document("testosterone_hrt", INTAKE, PLAN, DOC)
    assert "- estradiol: needs review: not a routine guideline lab; confirm indication and cadence" in trt
    assert "threshold: needs review: the guideline's hematocrit threshold for withholding therapy" in trt
    _, peptides, _ = protocol_document("peptides", INTAKE, PLAN, DOC)
    assert "- Start: needs review: 503A bulk-substance eligibility and dosing source for sermorelin" in peptides
    assert "### BPC-157 (none)\n- NOT AUTHORIZED: FDA 503A Category 2 bulk substance since 2023-09-29" in peptides
    _, botox, _ = protocol_document("neurotoxins", INTAKE, PLAN, DOC)
    assert "- needs review: no sourced dosing for" in botox
    assert "needs review: no sourced protocol data for neurotoxins yet" in botox
    for text in (trt, peptides, botox):
        assert ": unknown" not in text and "unknown." not in text  # never a bare unknown
