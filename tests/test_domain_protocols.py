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


def test_service_without_data_is_unknown_not_invented_and_content_hash_is_stable(monkeypatch):
    import domain.protocols as protocols

    lib = protocol_library()
    without = lib.model_copy(update={"services": {k: v for k, v in lib.services.items() if k != Service.neurotoxins}})
    monkeypatch.setattr(protocols, "protocol_library", lambda: without)
    p = protocol("neurotoxins")
    assert p.dosing == [] and p.contraindications[0].what == "unknown" and p.contraindications[0].needs_review
    assert any(e["severity"] == "sentinel" for e in p.adverse_events)
    assert protocol("glp1_weight_loss").data_sha256() == protocol("glp1_weight_loss").data_sha256()


def test_every_service_has_sourced_protocol_data():
    assert set(protocol_library().services) == set(Service)


def test_aesthetic_protocols_from_the_labels_and_fda_communications():
    botox = protocol("neurotoxins")
    ona = next(d for d in botox.dosing if d.drug == "onabotulinumtoxinA")
    assert ona.authorized and ona.why.startswith("FDA-approved product: BOTOX Cosmetic")
    assert "20 Units" in ona.start and "400 Units in a 3-month interval" in ona.maximum
    assert {c.what.split(" ")[0] for c in botox.contraindications} >= {"Hypersensitivity", "Infection"}
    assert any(e["severity"] == "sentinel" and "boxed warning" in e["source"] for e in botox.adverse_events)
    fillers = protocol("dermal_fillers", services=["dermal_fillers"])
    assert any("2015-05-28" in e["source"] and e["severity"] == "sentinel" for e in fillers.adverse_events)
    assert any("gram-positive" in c.what for c in fillers.contraindications)
    assert fillers.dosing[0].maximum == "unknown" and fillers.dosing[0].needs_review  # per product IFU, not invented


def test_hormone_iv_and_ketamine_protocols():
    hrt = protocol("female_hrt", services=["female_hrt"])
    assert [d.drug for d in hrt.dosing] == ["estradiol", "progesterone"]
    assert "12 sequential days of each 28-day cycle" in hrt.dosing[1].start
    assert any("Undiagnosed abnormal genital bleeding" == c.what for c in hrt.contraindications)
    ket = protocol("ketamine", services=["ketamine"])
    assert ket.dosing[0].start == "0.5 mg/kg over 40 minutes" and "Sanacora" in ket.dosing[0].source
    assert any("significant elevation of blood pressure" in c.what for c in ket.contraindications)
    iv = protocol("iv_nutrients", services=["iv_nutrients"])
    assert all(d.needs_review for d in iv.dosing if d.maximum == "unknown")
    assert any("H.B. 3749" in lab.source for lab in iv.labs)
