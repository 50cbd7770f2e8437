"""Protocols as standing orders: sourced facts, Category 2 never authorized, FDA-approved testosterone by
default, compounded copies only with a documented clinical difference, unknowns marked for review."""

from datetime import date

from domain.assessment import assess
from domain.codes import Service
from domain.intake import Intake
from domain.protocols import build_protocol, protocol_library

AS_OF = date(2026, 11, 1)


def intake(**changes) -> Intake:
    data = {"clinic_key": "proto-test", "clinic_name": "Proto", "contact": {"name": "Dana", "email": "d@c.example",
                                                                          "phone": "+15125550100"},
            "states": ["TX", "OK"], "care_model": "hybrid",
            "services": ["glp1_weight_loss", "testosterone_hrt", "peptides", "neurotoxins"],
            "monthly_patients": 100, "requested_start": "2026-12-15",
            "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP1"}]}
    data.update(changes)
    return Intake.model_validate(data)


def protocol(service: str, **changes):
    i = intake(**changes)
    return build_protocol(Service(service), i, assess(i, AS_OF))


def test_every_fact_has_a_source_and_unknowns_say_what_to_check():
    lib = protocol_library()
    for data in lib.services.values():
        for fact in [*data.drugs, *data.labs, *data.contraindications, *data.adverse_events]:
            assert len(fact.source) >= 3
            values = fact.model_dump().values()
            if "unknown" in values:
                assert fact.needs_review, fact


def test_glp1_dosing_from_the_labels():
    p = protocol("glp1_weight_loss")
    sema, tirz = p.dosing
    assert (sema.drug, sema.start, sema.maximum) == ("semaglutide", "0.25 mg weekly for 4 weeks", "2.4 mg once weekly")
    assert (tirz.drug, tirz.start, tirz.maximum) == ("tirzepatide", "2.5 mg weekly for 4 weeks", "15 mg once weekly")
    assert "WEGOVY" in sema.source and "ZEPBOUND" in tirz.source and sema.authorized
    assert any("MEN 2" in c.what for c in p.contraindications)
    assert [g.state for g in p.gfe] == ["TX", "OK"] and {d.role for d in p.delegation} == {"MD", "NP", "PA", "RN"}


def test_category_2_never_authorized():
    p = protocol("peptides")
    (bpc,) = [d for d in p.dosing if d.drug == "BPC-157"]
    assert not bpc.authorized and "Category 2" in bpc.why and "Category 2" in bpc.source
    # even when the intake asks for compounding explicitly
    p = protocol("peptides", product_choices={"peptides": "compounded_503a"})
    assert not next(d for d in p.dosing if d.drug == "BPC-157").authorized


def test_testosterone_defaults_to_the_fda_approved_product():
    p = protocol("testosterone_hrt")
    (cyp,) = p.dosing
    assert cyp.authorized and cyp.why == "FDA-approved product: Depo-Testosterone (testosterone cypionate injection)"
    assert {lab.test for lab in p.labs} >= {"hematocrit", "serum testosterone"}
    estradiol = next(lab for lab in p.labs if lab.test == "estradiol")
    assert estradiol.cadence == "unknown" and estradiol.needs_review


def test_compounded_copy_needs_a_documented_clinical_difference():
    p = protocol("testosterone_hrt", product_choices={"testosterone_hrt": "compounded_503a"})
    assert "documented patient-specific clinical difference" in p.dosing[0].why


def test_service_without_data_is_unknown_not_invented_and_content_hash_is_stable():
    p = protocol("neurotoxins")
    assert p.dosing == [] and p.contraindications[0].what == "unknown" and p.contraindications[0].needs_review
    assert any(e["severity"] == "sentinel" for e in p.adverse_events)
    assert protocol("glp1_weight_loss").data_sha256() == protocol("glp1_weight_loss").data_sha256()
