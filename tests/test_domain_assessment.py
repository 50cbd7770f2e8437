"""Needs assessment: sourced rule data, dated facts, findings and a monotone quote."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.assessment import assess, quote
from domain.codes import COMPOUNDED_SERVICES, JURISDICTIONS, Service
from domain.intake import Intake
from domain.rules import (PriceTable, RuleDataError, ServiceCatalog, StateRuleBook, in_force, parse_rule_data,
                          price_table, service_catalog, state_rules)

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
DEFAULTS = ("version: 1\ndefaults: {chart_review: {percent: 10, cadence_days: 30, source: policy v1},"
            " ratio_cap_when_unknown: {value: 4, source: policy v1}}\n")
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
    text = DEFAULTS + "states:\n"
    text += "".join(f"  {s}: {{np_practice: [{{value: full, source: x1y, effective_from: 2024-01-01}}], "
                    f"pa_supervision: [{{value: unknown, source: x1y, effective_from: 2024-01-01}}], "
                    f"gfe_mode: [{{value: unknown, source: x1y, effective_from: 2024-01-01}}], "
                    f"supervision_ratio_cap: [{{value: unknown, source: x1y, effective_from: 2024-01-01}}], "
                    f"chart_review: [{{value: not_stated, source: x1y, effective_from: 2024-01-01}}]}}\n"
                    for s in sorted(JURISDICTIONS))
    parse_rule_data(StateRuleBook, text, "ok.yaml")
    broken = text.replace("  TX: {np_practice: [{value: full, source: x1y,", "  TX: {np_practice: [{value: full,")
    with pytest.raises(RuleDataError, match=r"bad.yaml: states.TX.np_practice.0.source: Field required"):
        parse_rule_data(StateRuleBook, broken, "bad.yaml")
    missing_state = "\n".join(line for line in text.splitlines() if not line.startswith("  DC:"))
    with pytest.raises(RuleDataError, match="missing: \\['DC'\\]"):
        parse_rule_data(StateRuleBook, missing_state, "dc.yaml")


def test_overlapping_dated_facts_are_rejected():
    text = (DEFAULTS + "states:\n  TX:\n"
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
    assert before.states["CA"].ratio_caps == {"PA": 4, "NP": 4} and [f.rule_id for f in before.blocking] == ["ratio_cap.CA"]
    assert after.states["CA"].ratio_caps == {"PA": 8, "NP": 4} and not after.blocking
    assert after.states["CA"].supervision_ratio_cap == 4  # the smallest cap, for a one-number summary


def test_california_np_furnishing_ratio_runs_beside_the_pa_ratio():
    """B&P §2836.1(e): at most 4 NPs furnishing drugs per physician; the PAs are counted apart."""
    day = date(2026, 6, 1)
    four = assess(make_intake(states=["CA"], midlevels=np_("CA", 4) + np_("CA", 8, "PA"), requested_start="2026-07-01"), day)
    assert not four.blocking
    five = assess(make_intake(states=["CA"], midlevels=np_("CA", 5) + np_("CA", 2, "PA"), requested_start="2026-07-01"), day)
    assert [(f.rule_id, f.severity) for f in five.blocking] == [("ratio_cap.CA.NP", "blocking")]
    assert "CA allows 4 NP per physician; the clinic has 5" in five.blocking[0].message
    assert "2836.1" in five.blocking[0].source
    assert any("at most 4 NP per physician" in n for n in five.states["CA"].notes)


def test_a_role_the_state_caps_leave_out_gets_the_policy_cap():
    """FL's statute caps PAs (10); its APRNs (restricted practice) are planned under the policy cap until verified."""
    plan = assess(make_intake(states=["FL"], midlevels=np_("FL", 3)), AS_OF)
    assert plan.states["FL"].ratio_caps == {"PA": 10, "NP": 4} and not plan.blocking
    assert "unknown.supervision_ratio_cap.FL" in {f.rule_id for f in plan.findings}
    over = assess(make_intake(states=["FL"], midlevels=np_("FL", 5)), AS_OF)
    assert [f.rule_id for f in over.blocking] == ["ratio_cap.policy.FL"]
    assert "NP cap unverified: planned as at most 4 NP per physician (policy)" in over.states["FL"].notes
    # full-practice NPs are never capped: WA's NPs count nowhere, its PAs under the policy cap
    assert assess(make_intake(states=["WA"], midlevels=np_("WA", 6)), AS_OF).states["WA"].ratio_caps == {"PA": 4}


def test_concurrent_caps_for_the_same_role_are_rejected():
    caps = ("    supervision_ratio_cap: [{value: 4, applies_to: [PA], source: abc, effective_from: 2024-01-01},"
            " {value: 7, applies_to: [NP, PA], source: abc, effective_from: 2024-06-01}]\n")
    text = DEFAULTS + "states:\n  TX:\n" + caps
    with pytest.raises(RuleDataError, match="caps for PA and NP/PA overlap in time"):
        parse_rule_data(StateRuleBook, text, "x.yaml")


def test_compounded_glp1_without_a_product_choice_blocks_and_tells_sales_to_pick():
    plan = assess(make_intake(services=["glp1_weight_loss"]), AS_OF)
    assert [f.rule_id for f in plan.blocking] == ["product_choice.missing.glp1_weight_loss"]
    msg = plan.blocking[0].message
    assert "product_choices.glp1_weight_loss" in msg and "Wegovy" in msg and "Zepbound" in msg
    assert plan.pharmacy_model["glp1_weight_loss"] == "503A"


def test_compounded_503a_glp1_after_discretion_end_blocks_per_drug_naming_the_alternative():
    plan = assess(make_intake(services=["glp1_weight_loss"], product_choices={"glp1_weight_loss": "compounded_503a"}),
                  AS_OF)
    blocking = {f.rule_id: f for f in plan.blocking}
    assert set(blocking) == {"fda.compounding_discretion.semaglutide", "fda.compounding_discretion.tirzepatide"}
    assert "Wegovy" in blocking["fda.compounding_discretion.semaglutide"].message
    assert "2025-02-18" in blocking["fda.compounding_discretion.tirzepatide"].message


def test_fda_approved_glp1_needs_no_pharmacy_and_is_not_blocked():
    plan = assess(make_intake(services=["glp1_weight_loss", "testosterone_hrt"],
                              product_choices={"glp1_weight_loss": "fda_approved"}), AS_OF)
    assert not plan.blocking
    assert plan.pharmacy_model == {"glp1_weight_loss": "none", "testosterone_hrt": "503A"}
    info = next(f for f in plan.findings if f.rule_id == "product_choice.glp1_weight_loss")
    assert info.severity == "info" and "Wegovy (semaglutide)" in info.message and "Zepbound" in info.message
    no_product = assess(make_intake(services=["peptides"], product_choices={"peptides": "fda_approved"}), AS_OF)
    assert [f.severity for f in no_product.findings if f.rule_id == "product_choice.peptides"] == ["warning"]


def test_503b_glp1_route_is_lawful_only_until_the_503b_discretion_ends():
    choice = {"glp1_weight_loss": "compounded_503b"}
    # 2025-03-01: 503A tirzepatide ended, 503B not yet -> no blocking, warnings with the coming end dates
    early = assess(make_intake(services=["glp1_weight_loss"], product_choices=choice, requested_start="2025-03-01"),
                   date(2025, 3, 1))
    assert not early.blocking and early.pharmacy_model["glp1_weight_loss"] == "503B"
    ending = {f.rule_id for f in early.findings if f.severity == "warning"}
    assert {"fda.compounding_discretion_ending.tirzepatide", "fda.compounding_discretion_ending.semaglutide"} <= ending
    mid = assess(make_intake(services=["glp1_weight_loss"], product_choices=choice, requested_start="2025-03-19"),
                 date(2025, 3, 1))
    assert [f.rule_id for f in mid.blocking] == ["fda.compounding_discretion.tirzepatide"]
    late = assess(make_intake(services=["glp1_weight_loss"], product_choices=choice), AS_OF)
    assert len(late.blocking) == 2


@pytest.mark.parametrize("rule_day, blocking", [
    ("2025-02-17", []),
    ("2025-02-18", ["product_choice.missing.glp1_weight_loss"]),
])
def test_glp1_503a_discretion_end_is_dated(rule_day, blocking):
    plan = assess(make_intake(services=["glp1_weight_loss"], requested_start=rule_day), date(2025, 1, 1))
    assert [f.rule_id for f in plan.blocking] == blocking


def test_product_choices_are_validated():
    from domain.intake import parse_intake
    from tests.test_domain_assessment import make_intake as mk

    raw = mk().model_dump(mode="json")
    _, problems = parse_intake({**raw, "product_choices": {"glp1_weight_loss": "fda_approved"}})
    assert "product_choices.glp1_weight_loss is not one of the requested services" in str(problems[0])
    _, problems = parse_intake({**raw, "product_choices": {"neurotoxins": "compounded_503a"}})
    assert "never compounded" in problems[0].reason
    _, problems = parse_intake({**raw, "product_choices": {"neurotoxins": "homemade"}})
    assert problems[0].field.startswith("product_choices.neurotoxins")


def test_unknown_facts_are_planned_conservatively():
    plan = assess(make_intake(states=["AK"], care_model="telehealth", midlevels=np_("AK", 3, "PA")), AS_OF)
    ak = plan.states["AK"]
    assert ak.pa_supervision == "unknown" and ak.gfe_mode == "unknown"
    assert any("planned as supervision" in n for n in ak.notes)
    assert ak.supervision_ratio_cap == 4  # policy cap while the state's cap is unverified
    ids = {f.rule_id: f.severity for f in plan.findings}
    assert ids["unknown.supervision_ratio_cap.AK"] == "warning" and ids["gfe.in_person.AK"] == "warning"
    assert ids["unknown.chart_review.AK"] == "warning" and plan.chart_review.basis == "policy"
    over = assess(make_intake(states=["AK"], midlevels=np_("AK", 5, "PA")), AS_OF)
    assert [f.rule_id for f in over.blocking] == ["ratio_cap.policy.AK"]
    # a full-practice state's NPs do not count against the policy cap
    assert not assess(make_intake(states=["AK"], midlevels=np_("AK", 6)), AS_OF).blocking
    # unverified practice environments cost at least as much as restricted ones
    table = price_table()
    assert table.state_strictness["unknown"] >= table.state_strictness["restricted"]


def test_every_jurisdiction_has_every_fact_and_the_named_rules():
    book, day = state_rules(), date(2026, 6, 1)
    for code, rules in book.states.items():
        for field in ("np_practice", "pa_supervision", "gfe_mode", "supervision_ratio_cap", "chart_review"):
            assert in_force(getattr(rules, field), day) is not None, (code, field)
    tx = book.states["TX"]
    assert [(c.value, c.applies_to) for c in tx.supervision_ratio_cap] == [(7, ["NP", "PA"])]
    assert [(c.value, c.effective_from, c.effective_to) for c in book.states["CA"].supervision_ratio_cap] == [
        (4, date(2020, 1, 1), date(2025, 12, 31)), (8, date(2026, 1, 1), None), (4, date(2020, 1, 1), None)]
    assert any("3749" in n.value and n.effective_from == date(2025, 9, 1) for n in tx.notes)
    assert any("458.348(4)" in n.source for n in book.states["FL"].notes)
    assert book.defaults.chart_review.percent == 10 and book.defaults.chart_review.cadence_days == 30


def test_ryan_haight_warning_is_dated_by_the_flexibility_end():
    before = assess(make_intake(care_model="telehealth", services=["testosterone_hrt"], requested_start="2026-12-31"),
                    AS_OF)
    after = assess(make_intake(care_model="telehealth", services=["testosterone_hrt"], requested_start="2027-01-01"),
                   AS_OF)
    msg = {p: next(f.message for f in x.findings if f.rule_id == "dea.ryan_haight") for p, x in
           (("before", before), ("after", after))}
    assert "which end 2026-12-31" in msg["before"] and "ended 2026-12-31" in msg["after"]


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
    fl = plan.states["FL"]
    assert fl.director_local and fl.director_board_certifications == ["dermatology", "plastic_surgery"]
    assert any("board certified or board eligible in dermatology or plastic surgery" in n and "25 miles" in n
               and "contiguous to it" in n for n in fl.notes)
    hybrid = assess(make_intake(states=["FL"], locations=loc, care_model="hybrid", midlevels=np_("FL", 1, "PA")), AS_OF)
    assert hybrid.oversight_mode == "on_site" and hybrid.states["FL"].director_local  # on-site and hybrid care
    tele = assess(make_intake(states=["FL"], locations=loc, care_model="telehealth", midlevels=np_("FL", 1, "PA")), AS_OF)
    assert tele.oversight_mode == "remote" and not tele.states["FL"].director_local
    assert assess(make_intake(states=["FL"], locations=loc), AS_OF).oversight_mode == "remote"  # no midlevels
    other = assess(make_intake(states=["FL"], locations=loc, services=["glp1_weight_loss"],
                               product_choices={"glp1_weight_loss": "fda_approved"}, midlevels=np_("FL", 1, "PA")), AS_OF)
    assert other.oversight_mode == "remote"  # not a skin-care office


def test_dea_telemedicine_flexibilities_start_on_2020_03_16():
    flex = service_catalog().federal.dea_telemedicine_flexibilities
    assert flex.effective_from == date(2020, 3, 16) and "802(54)(D)" in flex.source


def test_texas_prescriptive_authority_notes_follow_the_current_157_0512():
    """H.B. 278 (2019): monthly meetings in a manner the parties choose, agreement reviewed yearly."""
    now = assess(make_intake(midlevels=np_("TX", 1)), AS_OF).states["TX"].notes
    assert any("H.B. 278" in n or "at least once a month in a manner" in n for n in now)
    assert any("reviewed, signed and dated by the parties yearly" in n for n in now)
    assert not any("third anniversary" in n or "90 days" in n for n in now)
    old = assess(make_intake(midlevels=np_("TX", 1), requested_start="2018-01-02"), date(2018, 1, 1)).states["TX"].notes
    assert any("third anniversary" in n for n in old)
    assert not any("157.0512" in n for n in assess(make_intake(), AS_OF).states["TX"].notes)  # no midlevels


def test_unknown_facts_become_warnings():
    plan = assess(make_intake(states=["WA"]), AS_OF)
    assert {f.rule_id for f in plan.findings} >= {"unknown.pa_supervision.WA", "unknown.gfe_mode.WA"}
    assert plan.states["WA"].np_practice == "full"


def test_chart_review_takes_the_strictest_state_law():
    mo = assess(make_intake(states=["MO"]), AS_OF).chart_review
    assert (mo.percent, mo.cadence_days, mo.basis) == (10, 14, "law")
    both = assess(make_intake(states=["MO", "TN"]), AS_OF).chart_review
    # the strictest percentage (TN 20 %) and the strictest cadence (MO 14 days), each state's own kept
    assert (both.percent, both.cadence_days, both.basis) == (20, 14, "law")
    plan = assess(make_intake(states=["MO", "TN"]), AS_OF)
    own = {st: (sp.chart_review.percent, sp.chart_review.cadence_days, sp.chart_review.basis)
           for st, sp in plan.states.items()}
    assert own == {"MO": (10, 14, "law"), "TN": (20, 30, "law")}
    assert "2150-5.100" in plan.states["MO"].chart_review.source and "0880-06" in plan.states["TN"].chart_review.source
    assert set(plan.chart_review.model_dump()) == {"percent", "cadence_days", "basis"}  # CONTRACT: mdco assess --json
    # a state without a rule of its own is held to the company default beside the others
    tx = assess(make_intake(states=["TX", "TN"]), AS_OF)
    assert (tx.chart_review.percent, tx.chart_review.cadence_days) == (20, 30)
    assert tx.states["TX"].chart_review.basis == "policy"
    assert assess(make_intake(states=["TX"]), AS_OF).chart_review.basis == "policy"


# ------------------------------------------------------------------ the quote
def test_quote_has_one_explained_line_per_cost_factor():
    plan = assess(make_intake(states=["TX", "OK"], care_model="hybrid", services=["neurotoxins", "testosterone_hrt"],
                              monthly_patients=350, locations=[{"state": "TX", "city": "Austin", "zip": "78701"}],
                              midlevels=np_("TX")), AS_OF)
    lines = {line.factor: line for line in plan.quote.lines}
    assert list(lines) == ["base", "state_strictness", "therapy_risk", "patient_volume", "scope_of_involvement"]
    assert plan.quote.monthly_usd == sum(line.amount_usd for line in plan.quote.lines)
    t = price_table()
    assert lines["state_strictness"].amount_usd == 2 * t.state_strictness["restricted"] + 2 * t.controlled_per_dea_state
    assert "TX restricted" in lines["state_strictness"].explanation and "DEA" in lines["state_strictness"].explanation
    assert lines["therapy_risk"].amount_usd == t.service_risk[Service.neurotoxins] + t.service_risk[Service.testosterone_hrt]
    assert "300-599" in lines["patient_volume"].explanation
    assert lines["scope_of_involvement"].amount_usd == t.per_midlevel + t.per_on_site_location


def test_on_site_oversight_costs_more():
    loc = [{"state": "FL", "city": "Miami", "zip": "33131"}]
    intake = make_intake(states=["FL"], locations=loc, care_model="hybrid", midlevels=np_("FL", 1, "PA"))
    on_site = assess(intake, AS_OF)
    remote = quote(intake, on_site.model_copy(update={"oversight_mode": "remote"}))
    assert on_site.oversight_mode == "on_site"
    assert on_site.quote.monthly_usd - remote.monthly_usd == price_table().on_site_oversight


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


@st.composite
def intakes(draw):
    states = draw(st.lists(st.sampled_from(STATES), min_size=1, max_size=4, unique=True))
    services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, max_size=5, unique=True))
    compounded = [s for s in services if Service(s) in COMPOUNDED_SERVICES]
    choices = draw(st.dictionaries(st.sampled_from(services), st.just("fda_approved"), max_size=2))
    choices.update(draw(st.dictionaries(st.sampled_from(compounded), st.sampled_from(
        ["fda_approved", "compounded_503a", "compounded_503b"]), max_size=2)) if compounded else {})
    mids = draw(st.lists(st.tuples(st.sampled_from(states), st.sampled_from(["NP", "PA", "RN"])), max_size=12))
    return make_intake(
        states=states, services=services, product_choices=choices,
        care_model=draw(st.sampled_from(["on_site", "telehealth", "hybrid"])),
        monthly_patients=draw(st.integers(0, 5000)),
        midlevels=[{"name": f"M{i}", "role": r, "state": s, "license_number": f"L{i}"} for i, (s, r) in enumerate(mids)],
        locations=[{"state": s, "city": "Town", "zip": "10001"} for s in states[:draw(st.integers(0, len(states)))]],
        requested_start=draw(st.dates(date(2024, 6, 1), date(2028, 1, 1))).isoformat())


@settings(max_examples=80, deadline=None)
@given(intake=intakes(), as_of=st.dates(date(2024, 6, 1), date(2028, 1, 1)))
def test_every_valid_intake_gets_a_complete_deterministic_plan(intake, as_of):
    plan = assess(intake, as_of)
    assert list(plan.states) == intake.states
    assert set(plan.pharmacy_model) == {s.value for s in intake.services}
    assert set(plan.pharmacy_model.values()) <= {"none", "503A", "503B"}
    assert set(plan.dea_required_states) == (set(intake.states) if intake.controlled_services else set())
    assert plan.oversight_reason and plan.chart_review.percent >= 1 and plan.chart_review.cadence_days >= 1
    assert all(f.rule_id and f.message for f in plan.findings)
    assert [line.factor for line in plan.quote.lines] == ["base", "state_strictness", "therapy_risk",
                                                          "patient_volume", "scope_of_involvement"]
    for service, choice in intake.product_choices.items():
        assert (plan.pharmacy_model[service.value] == "none") == (choice == "fda_approved")
    again = assess(Intake.model_validate(intake.model_dump(mode="json")), as_of)
    assert again.model_dump(mode="json") == plan.model_dump(mode="json")


@pytest.mark.parametrize("choice, drug, end", [
    ("compounded_503a", "tirzepatide", date(2025, 2, 18)), ("compounded_503b", "tirzepatide", date(2025, 3, 19)),
    ("compounded_503a", "semaglutide", date(2025, 4, 22)), ("compounded_503b", "semaglutide", date(2025, 5, 22)),
])
def test_each_glp1_discretion_end_changes_the_outcome_on_its_day(choice, drug, end):
    def blocked(day: date) -> bool:
        plan = assess(make_intake(services=["glp1_weight_loss"], product_choices={"glp1_weight_loss": choice},
                                  requested_start=day.isoformat()), date(2025, 1, 1))
        return f"fda.compounding_discretion.{drug}" in {f.rule_id for f in plan.blocking}

    assert not blocked(date.fromordinal(end.toordinal() - 1)) and blocked(end)
