"""Pharmacy selection: right kind, licensed everywhere, capable, fewest pharmacies, stable ties."""

from datetime import date

from domain.assessment import assess
from domain.intake import Intake
from domain.pharmacy import select_pharmacies
from domain.records import PharmacyRecord

AS_OF = date(2026, 11, 1)


def make_intake(**changes) -> Intake:
    data = {
        "clinic_key": "rx-test", "clinic_name": "Rx", "contact": {"name": "Dana", "email": "dana@clinic.example",
                                                                "phone": "+15125550100"},
        "states": ["TX", "OK"], "care_model": "on_site",
        "services": ["neurotoxins", "glp1_weight_loss", "testosterone_hrt", "female_hrt", "iv_nutrients"],
        "monthly_patients": 100, "requested_start": "2026-12-15",
    }
    data.update(changes)
    return Intake.model_validate(data)


def ph(pid: str, kind: str, states: str, caps: str, services: str) -> PharmacyRecord:
    return PharmacyRecord(pharmacy_id=pid, name=pid.upper(), kind=kind, licensed_states=states.split(";"),
                          capabilities=caps.split(";") if caps else [], services=services.split(";"),
                          email=f"{pid}@rx.example")


def choose(pharmacies, **changes):
    intake = make_intake(**changes)
    return select_pharmacies(intake, assess(intake, AS_OF), pharmacies)


def test_fewest_pharmacies_cover_everything():
    pharmacies = [
        ph("a-glp1", "503A", "TX;OK", "sterile", "glp1_weight_loss"),
        ph("b-trt", "503A", "TX;OK", "sterile", "testosterone_hrt"),
        ph("c-hrt", "503A", "TX;OK", "non_sterile;hazardous", "female_hrt"),
        ph("z-all", "503A", "TX;OK;FL", "sterile;non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;female_hrt"),
        ph("iv-b", "503B", "TX;OK", "sterile", "iv_nutrients"),
    ]
    assignments, problems = choose(pharmacies)
    assert problems == []
    assert [(a.pharmacy_id, a.kind, sorted(a.services)) for a in assignments] == [
        ("iv-b", "503B", ["iv_nutrients"]),
        ("z-all", "503A", ["female_hrt", "glp1_weight_loss", "testosterone_hrt"]),
    ]
    assert all(a.status == "packet_sent" for a in assignments)


def test_licence_kind_and_capability_are_required():
    pharmacies = [
        ph("only-tx", "503A", "TX", "sterile;non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;female_hrt"),
        ph("wrong-kind", "503B", "TX;OK", "sterile;non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;female_hrt"),
        ph("no-sterile", "503A", "TX;OK", "non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;female_hrt"),
    ]
    assignments, problems = choose(pharmacies)
    assert [(a.pharmacy_id, [s.value for s in a.services]) for a in assignments] == [("no-sterile", ["female_hrt"])]
    assert [p.split(":")[0] for p in problems] == ["glp1_weight_loss", "testosterone_hrt", "iv_nutrients"]
    assert "no 503A pharmacy on file offers it with sterile capability" in problems[0] and "TX, OK" in problems[0]


def test_ties_break_by_pharmacy_id_and_non_compounded_need_nothing():
    twins = [ph("beta", "503A", "TX;OK", "sterile", "glp1_weight_loss"),
             ph("alpha", "503A", "TX;OK", "sterile", "glp1_weight_loss")]
    assignments, problems = choose(twins, services=["glp1_weight_loss"])
    assert [a.pharmacy_id for a in assignments] == ["alpha"] and problems == []
    assert choose(twins, services=["neurotoxins", "laser"]) == ([], [])


def test_exact_cover_beats_greedy():
    # greedy would take "big" (3 services) and then need two more; the optimum is two pharmacies.
    pharmacies = [
        ph("big", "503A", "TX;OK", "sterile;non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;peptides"),
        ph("left", "503A", "TX;OK", "sterile;non_sterile;hazardous", "glp1_weight_loss;testosterone_hrt;female_hrt"),
        ph("right", "503A", "TX;OK", "sterile;non_sterile;hazardous", "peptides;ketamine"),
        ph("k", "503A", "TX;OK", "sterile", "ketamine"),
        ph("h", "503A", "TX;OK", "non_sterile;hazardous", "female_hrt"),
    ]
    assignments, problems = choose(pharmacies, care_model="telehealth",
                                   services=["glp1_weight_loss", "testosterone_hrt", "peptides", "female_hrt", "ketamine"])
    assert problems == [] and sorted(a.pharmacy_id for a in assignments) == ["left", "right"]
