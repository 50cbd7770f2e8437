"""Pharmacy selection: right kind, licensed everywhere, capable, fewest pharmacies, stable ties."""

from datetime import date

from domain.assessment import assess
from domain.intake import Intake
from domain.pharmacy import select_pharmacies
from domain.codes import Service
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


# ---------------------------------------------------------------- the compliance file rules when on file
from domain.pharmacy import pharmacy_policy  # noqa: E402

ON = date(2026, 11, 1)
ALL = ["licenses", "dea", "fda_registration", "attestations"]


def compliant(pid: str, kind: str = "503A", services: str = "glp1_weight_loss;testosterone_hrt", **changes) -> PharmacyRecord:
    data = dict(pharmacy_id=pid, name=pid.upper(), kind=kind, licensed_states=["TX", "OK"],
                capabilities=["sterile", "non_sterile", "hazardous"], services=services.split(";"),
                email=f"{pid}@rx.example", on_file=ALL,
                licenses=[{"state": "TX", "number": "T1", "expires": "2027-06-30"},
                          {"state": "OK", "number": "O1", "expires": "2027-06-30"}],
                dea={"number": "FA1234563", "expires": "2028-01-31"},
                fda_registration={"fei": "3012345678", "last_inspection": "2025-09-15"} if kind == "503B" else None,
                attestations={"usp795": "2026-06-01", "usp797": "2026-06-01", "usp800": "2026-06-01"})
    data.update(changes)
    return PharmacyRecord.model_validate(data)


def pick(pharmacies, services, **kw):
    intake = make_intake(services=services)
    return select_pharmacies(intake, assess(intake, AS_OF), pharmacies, on=ON, **kw)


def test_golden_selection_with_compliance_files():
    pharmacies = [
        compliant("a-lapsed", licenses=[{"state": "TX", "number": "T1", "expires": "2027-06-30"},
                                        {"state": "OK", "number": "O1", "expires": "2026-10-31"}]),
        compliant("b-ok"),
        compliant("iv-unregistered", kind="503B", services="iv_nutrients", fda_registration=None),
        compliant("iv-registered", kind="503B", services="iv_nutrients"),
    ]
    assignments, problems = pick(pharmacies, ["glp1_weight_loss", "testosterone_hrt", "iv_nutrients"])
    assert problems == []
    assert [(a.pharmacy_id, a.kind.value, sorted(s.value for s in a.services)) for a in assignments] == [
        ("b-ok", "503A", ["glp1_weight_loss", "testosterone_hrt"]),
        ("iv-registered", "503B", ["iv_nutrients"]),
    ]


def test_lapsed_licence_never_chosen_and_the_reason_is_given():
    lapsed = compliant("a-lapsed", licenses=[{"state": "TX", "number": "T1", "expires": "2027-06-30"},
                                             {"state": "OK", "number": "O1", "expires": "2026-10-31"}],
                       licensed_states=["TX", "OK"])  # the self-declared column does not rule over licences
    unlicensed = compliant("b-no-ok", licenses=[{"state": "TX", "number": "T1", "expires": "2027-06-30"}])
    assignments, problems = pick([lapsed, unlicensed], ["glp1_weight_loss"])
    assert assignments == []
    assert "a-lapsed: licence in OK expired 2026-10-31" in problems[0]
    assert "b-no-ok: no pharmacy licence in OK" in problems[0]


def test_unregistered_503b_never_chosen():
    assignments, problems = pick([compliant("iv-b", kind="503B", services="iv_nutrients", fda_registration=None)],
                                 ["iv_nutrients"])
    assert assignments == [] and "503B without an FDA outsourcing-facility registration" in problems[0]


def test_dea_needed_only_for_scheduled_drugs():
    no_dea = compliant("no-dea", dea=None)
    expired = compliant("old-dea", dea={"number": "FA1234563", "expires": "2026-10-01"})
    assignments, problems = pick([no_dea, expired], ["glp1_weight_loss", "testosterone_hrt"])
    assert [(a.pharmacy_id, [s.value for s in a.services]) for a in assignments] == [("no-dea", ["glp1_weight_loss"])]
    assert problems[0].startswith("testosterone_hrt:")
    assert "no-dea: no DEA registration (schedule III)" in problems[0]
    assert "old-dea: DEA registration expired 2026-10-01" in problems[0]


def test_attestations_must_be_current_per_policy():
    max_age = pharmacy_policy().attestations.max_age_days
    assert max_age == 365 and "within a year" in pharmacy_policy().attestations.source
    stale = compliant("stale", attestations={"usp797": "2025-10-31"})   # 366 days before ON
    fresh = compliant("zfresh", attestations={"usp797": "2025-11-01"})  # exactly a year: still current
    none = compliant("none", attestations={})
    assignments, problems = pick([stale, fresh, none], ["glp1_weight_loss"])
    assert [a.pharmacy_id for a in assignments] == ["zfresh"]
    hazardous = pick([fresh.model_copy(update={"services": [Service.female_hrt]})], ["female_hrt"])  # non-sterile + hazardous: <795> and <800> needed
    assert hazardous[0] == [] and "no usp795 attestation" in hazardous[1][0] and "no usp800 attestation" in hazardous[1][0]


def test_declined_pharmacies_are_excluded_and_only_their_services_reselected():
    pharmacies = [compliant("a"), compliant("b"), compliant("c", services="glp1_weight_loss")]
    first, _ = pick(pharmacies, ["glp1_weight_loss", "testosterone_hrt"])
    assert [a.pharmacy_id for a in first] == ["a"]
    nxt, problems = pick(pharmacies, ["glp1_weight_loss", "testosterone_hrt"], exclude=["a"],
                         only=[Service.testosterone_hrt])
    assert problems == [] and [(a.pharmacy_id, [s.value for s in a.services]) for a in nxt] == [("b", ["testosterone_hrt"])]
    none_left, problems = pick(pharmacies, ["testosterone_hrt"], exclude=["a", "b"])
    assert none_left == [] and "(declined: a, b)" in problems[0]
