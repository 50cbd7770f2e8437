"""Needs assessment: sourced rule data, dated facts, findings and a monotone quote."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.assessment import assess, quote
from domain.codes import JURISDICTIONS, Service
from domain.intake import Intake
from domain.rules import (PriceTable, RuleDataError, ServiceCatalog, StateRuleBook, parse_rule_data, price_table,
                          service_catalog, state_rules)

AS_OF = date(2026, 11, 1)


def make_intake(**changes) -> Intake:
    data = {
        "clinic_key": "glow-austin", "clinic_name": "Glow", "contact": {"name": "Dana", "email": "dana@clinic.example",
                                                                      "phone": "+15125550100"},
        "states": ["TX"], "care_model": "on_site", "services": ["neurotoxins"], "monthly_patients": 50,
        "locations": [], "midlevels": [], "requested_start": "2026-12-15",
    }
    data.update(changes)
    return Intake.model_validate(data)


def np_(state: str, n: int = 1, role: str = "NP") -> list[dict]:
    return [{"name": f"M{i}", "role": role, "state": state, "license_number": f"L{i}"} for i in range(n)]


# ------------------------------------------------------------------ rule data
def test_rule_data_loads_and_covers_every_jurisdiction():
    book = state_rules()
    assert set(book.states) == JURISDICTIONS
    for st_rules in book.states.values():
        for field in ("np_practice", "pa_supervision", "gfe_mode", "supervision_ratio_cap", "chart_review", "notes"):
            for fact in getattr(st_rules, field):
                assert fact.source and fact.effective_from
    assert set(service_catalog().services) == set(Service)
    assert price_table().base > 0


def test_a_fact_without_a_source_is_rejected():
    text = "version: 1\ndefaults: {chart_review: {percent: 10, cadence_days: 30, source: policy v1}}\nstates:\n"
    text += "".join(f"  {s}: {{np_practice: [{{value: full, source: x1y, effective_from: 2024-01-01}}], "
                    f"pa_supervision: [{{value: unknown, source: x1y, effective_from: 2024-01-01}}], "
                    f"gfe_mode: [{{value: unknown, source: x1y, effective_from: 2024-01-01}}]}}\n"
                    for s in sorted(JURISDICTIONS))
    parse_rule_data(StateRuleBook, text, "ok.yaml")
    broken = text.replace("  TX: {np_practice: [{value: full, source: x1y,", "  TX: {np_practice: [{value: full,")
    with pytest.raises(RuleDataError, match=r"bad.yaml: states.TX.np_practice.0.source: Field required"):
        parse_rule_data(StateRuleBook, broken, "bad.yaml")
    missing_state = "\n".join(line for line in text.splitlines() if not line.startswith("  DC:"))
    with pytest.raises(RuleDataError, match="missing: \\['DC'\\]"):
        parse_rule_data(StateRuleBook, missing_state, "dc.yaml")


def test_overlapping_dated_facts_are_rejected():
    text = ("version: 1\ndefaults: {chart_review: {percent: 10, cadence_days: 30, source: policy v1}}\nstates:\n  TX:\n"
            "    np_practice: [{value: full, source: abc, effective_from: 2024-01-01},"
            " {value: reduced, source: abc, effective_from: 2024-06-01}]\n")
    with pytest.raises(RuleDataError, match="overlap"):
        parse_rule_data(StateRuleBook, text, "x.yaml")


def test_catalog_and_price_table_schemas_reject_bad_data():
    with pytest.raises(RuleDataError, match="services.yaml"):
        parse_rule_data(ServiceCatalog, "version: 1\nfederal: {}\nservices: {}\n", "services.yaml")
    with pytest.raises(RuleDataError, match="grow"):
        parse_rule_data(PriceTable, """
version: 1
source: test table
base: 1
state_strictness: {full: 1, reduced: 1, restricted: 1, unknown: 1}
controlled_per_dea_state: 1
service_risk: {neurotoxins: 1, dermal_fillers: 1, laser: 1, testosterone_hrt: 1, female_hrt: 1,
               glp1_weight_loss: 1, peptides: 1, iv_nutrients: 1, ketamine: 1}
volume_tiers: [{max_patients: 10, amount: 5, label: a}, {max_patients: null, amount: 1, label: b}]
per_midlevel: 1
per_on_site_location: 1
""", "pricing.yaml")


def test_glp1_discretion_dates_are_in_the_catalog():
    facts = {(f.drug, f.kind): f.effective_from for f in service_catalog().services[Service.glp1_weight_loss].fda_status
             if f.drug}
    assert facts == {("tirzepatide", "503A"): date(2025, 2, 18), ("tirzepatide", "503B"): date(2025, 3, 19),
                     ("semaglutide", "503A"): date(2025, 4, 22), ("semaglutide", "503B"): date(2025, 5, 22)}
    assert service_catalog().federal.dea_telemedicine_flexibilities.effective_to == date(2026, 12, 31)


# ------------------------------------------------------------------ the plan
def test_texas_plan_with_controlled_service():
    plan = assess(make_intake(states=["TX", "OK"], care_model="hybrid",
                              services=["neurotoxins", "testosterone_hrt"], midlevels=np_("TX")), AS_OF)
    tx = plan.states["TX"]
    assert (tx.np_practice, tx.pa_supervision, tx.supervision_ratio_cap, tx.gfe_mode) == (
        "restricted", "supervision", 7, "telehealth_allowed")
    assert plan.dea_required_states == ["TX", "OK"] and tx.dea_required and plan.states["OK"].dea_required
    assert plan.pharmacy_model == {"neurotoxins": "none", "testosterone_hrt": "503A"}
    ids = {f.rule_id: f for f in plan.findings}
    assert ids["dea.ryan_haight"].severity == "warning" and "2026-12-31" in ids["dea.ryan_haight"].message
    assert ids["unknown.pa_supervision.OK"].severity == "warning"
    assert not plan.blocking
    assert plan.chart_review.percent == 10 and plan.chart_review.basis == "policy"


def test_no_dea_states_without_controlled_services_and_no_ryan_haight_on_site():
    plan = assess(make_intake(services=["neurotoxins", "glp1_weight_loss"]), AS_OF)
    assert plan.dea_required_states == [] and not plan.states["TX"].dea_required
    assert all(f.rule_id != "dea.ryan_haight" for f in plan.findings)
    on_site_controlled = assess(make_intake(services=["testosterone_hrt"]), AS_OF)
    assert all(f.rule_id != "dea.ryan_haight" for f in on_site_controlled.findings)


def test_ryan_haight_message_after_flexibilities_end():
    plan = assess(make_intake(care_model="telehealth", services=["ketamine"], requested_start="2027-02-01"), AS_OF)
    finding = next(f for f in plan.findings if f.rule_id == "dea.ryan_haight")
    assert "ended 2026-12-31" in finding.message
    assert plan.pharmacy_model["ketamine"] == "503A"  # telehealth: no office-use 503B


def test_texas_ratio_cap_blocks_over_seven_midlevels():
    assert not assess(make_intake(midlevels=np_("TX", 7)), AS_OF).blocking
    plan = assess(make_intake(midlevels=np_("TX", 4) + np_("TX", 4, "PA") + np_("TX", 3, "RN")), AS_OF)
    assert [f.rule_id for f in plan.blocking] == ["ratio_cap.TX"]
    assert "allows 7 NP/PA per physician; the clinic has 8" in plan.blocking[0].message


def test_california_pa_cap_is_dated():
    before = assess(make_intake(states=["CA"], midlevels=np_("CA", 5, "PA"), requested_start="2025-12-31"),
                    date(2025, 6, 1))
    after = assess(make_intake(states=["CA"], midlevels=np_("CA", 5, "PA"), requested_start="2026-01-01"),
                   date(2025, 6, 1))
    assert before.states["CA"].supervision_ratio_cap == 4 and [f.rule_id for f in before.blocking] == ["ratio_cap.CA"]
    assert after.states["CA"].supervision_ratio_cap == 8 and not after.blocking
    # the cap counts PAs only: six NPs do not breach it
    assert not assess(make_intake(states=["CA"], midlevels=np_("CA", 6)), date(2025, 6, 1)).blocking


def test_compounded_glp1_after_discretion_end_is_a_warning_naming_the_alternative():
    plan = assess(make_intake(services=["glp1_weight_loss"]), AS_OF)
    glp = {f.rule_id: f for f in plan.findings if f.rule_id.startswith("fda.")}
    assert set(glp) == {"fda.compounding_discretion.semaglutide", "fda.compounding_discretion.tirzepatide"}
    assert all(f.severity == "warning" for f in glp.values())
    assert "Wegovy" in glp["fda.compounding_discretion.semaglutide"].message
    early = assess(make_intake(services=["glp1_weight_loss"], requested_start="2025-03-01"), date(2025, 1, 1))
    assert [f.rule_id for f in early.findings if f.rule_id.startswith("fda.")] == ["fda.compounding_discretion.tirzepatide"]


def test_texas_iv_note_is_dated():
    before = assess(make_intake(services=["iv_nutrients"], requested_start="2025-08-31"), date(2025, 8, 1))
    after = assess(make_intake(services=["iv_nutrients"], requested_start="2025-09-01"), date(2025, 8, 1))
    assert not any("3749" in n for n in before.states["TX"].notes)
    assert any("3749" in n and "2025-09-01" in n for n in after.states["TX"].notes)
    assert not any("3749" in n for n in assess(make_intake(), AS_OF).states["TX"].notes)


def test_florida_skin_care_office_needs_a_local_physician_on_site():
    loc = [{"state": "FL", "city": "Miami", "zip": "33131"}]
    plan = assess(make_intake(states=["FL"], locations=loc, midlevels=np_("FL", 1, "PA")), AS_OF)
    assert plan.oversight_mode == "on_site" and "458.348(4)" in plan.oversight_reason
    assert assess(make_intake(states=["FL"], locations=loc, care_model="hybrid", midlevels=np_("FL", 1, "PA")),
                  AS_OF).oversight_mode == "remote"
    assert assess(make_intake(states=["FL"], locations=loc), AS_OF).oversight_mode == "remote"  # no midlevels


def test_unknown_facts_become_warnings():
    plan = assess(make_intake(states=["WA"]), AS_OF)
    assert {f.rule_id for f in plan.findings} >= {"unknown.pa_supervision.WA", "unknown.gfe_mode.WA"}
    assert plan.states["WA"].np_practice == "full"


def test_chart_review_takes_the_strictest_state_law():
    assert assess(make_intake(states=["MO"]), AS_OF).chart_review.model_dump() == {
        "percent": 10, "cadence_days": 14, "basis": "law"}
    assert assess(make_intake(states=["MO", "TN"]), AS_OF).chart_review.percent == 20


# ------------------------------------------------------------------ the quote
def test_quote_lines_explain_every_factor():
    plan = assess(make_intake(states=["TX", "OK"], care_model="hybrid", services=["neurotoxins", "testosterone_hrt"],
                              monthly_patients=350, locations=[{"state": "TX", "city": "Austin", "zip": "78701"}],
                              midlevels=np_("TX")), AS_OF)
    factors = [line.factor for line in plan.quote.lines]
    assert factors == ["base", "state:TX", "state:OK", "dea", "service:neurotoxins", "service:testosterone_hrt",
                       "volume", "midlevels", "locations"]
    assert plan.quote.monthly_usd == sum(line.amount_usd for line in plan.quote.lines)
    assert all(line.explanation for line in plan.quote.lines)


STATES = sorted(JURISDICTIONS)
SERVICES = [s.value for s in Service]


@settings(max_examples=60, deadline=None)
@given(states=st.lists(st.sampled_from(STATES), min_size=1, max_size=4, unique=True),
       more_states=st.lists(st.sampled_from(STATES), max_size=3, unique=True),
       services=st.lists(st.sampled_from(SERVICES), min_size=1, max_size=4, unique=True),
       more_services=st.lists(st.sampled_from(SERVICES), max_size=3, unique=True),
       volume=st.integers(0, 3000), more_volume=st.integers(0, 3000))
def test_quote_never_decreases_when_the_clinic_grows(states, more_states, services, more_services, volume, more_volume):
    small = make_intake(states=states, services=services, monthly_patients=volume, care_model="hybrid")
    big = make_intake(states=states + [s for s in more_states if s not in states],
                      services=services + [s for s in more_services if s not in services],
                      monthly_patients=volume + more_volume, care_model="hybrid")
    small_quote = assess(small, AS_OF).quote.monthly_usd
    big_plan = assess(big, AS_OF)
    assert big_plan.quote.monthly_usd >= small_quote
    assert quote(big, big_plan).monthly_usd == big_plan.quote.monthly_usd
