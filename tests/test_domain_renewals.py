"""The renewal ladder as pure rules: steps from data, each step once per credential and expiry date,
a moved expiry resets the ladder, missed days never send stale steps, who is told, what a lapse suspends."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from domain import renewals as r
from domain.intake import Intake
from domain.renewals import LAPSED, Credential, NoticeRecord
from domain.rules import RuleDataError
from tests.db_fixtures import physician_record
from tests.fake_activities import sample_intake

TODAY = date(2027, 1, 1)


def cred(expires: date, **kw) -> Credential:
    return Credential(**{"credential": "license", "holder_id": "1234567893", "state": "TX", "expires_on": expires, **kw})


def sweep_daily(c: Credential, start: date, days: int, sent: list[NoticeRecord], every: int = 1) -> list:
    """Run the ladder once a day (or every ``every`` days), recording each notice sent."""
    out = []
    for i in range(0, days, every):
        day = start + timedelta(days=i)
        step = r.due_step(c, day, sent)
        if step is not None:
            sent.append(NoticeRecord(credential_key=c.key, expires_on=c.expires_on, step=step))
            out.append((day, step))
    return out


def test_policy_data_has_a_source_and_the_issue_ladder():
    p = r.policy()
    assert p.source and p.ladder.source and p.lapse_suspends.source and p.adverse_events.source
    assert p.ladder.days == [90, 60, 30, 14, 7, 0]
    assert p.ladder.clinic_notice_within_days == 14
    assert p.agreement_term.default_days == 365
    assert p.ack_deadline("serious") == timedelta(hours=24) and p.ack_deadline("sentinel") == timedelta(hours=1)


@pytest.mark.parametrize("days", [[90, 60, 60, 0], [0, 7], [90, 30], [-1, 0]])
def test_a_bad_ladder_is_refused(days):
    text = (r.resources.files("domain").joinpath("data", "oversight_policy.yaml").read_text()
            .replace("days: [90, 60, 30, 14, 7, 0]", f"days: {days}"))
    with pytest.raises(RuleDataError, match="ladder"):
        r.parse_rule_data(r.OversightPolicy, text, "oversight_policy.yaml")


def expected_step(left: int):
    if left < 0:
        return LAPSED
    for d in (0, 7, 14, 30, 60, 90):
        if left <= d:
            return d
    return None


@pytest.mark.parametrize("left", range(-400, 401))
def test_step_for_every_day_left(left):
    assert r.step_on(TODAY + timedelta(days=left), TODAY) == expected_step(left)
    assert r.days_left(TODAY + timedelta(days=left), TODAY) == left


def test_a_daily_sweep_sends_each_step_exactly_once_then_the_lapse():
    c = cred(TODAY + timedelta(days=120))
    sent: list[NoticeRecord] = []
    out = sweep_daily(c, TODAY, 200, sent)
    assert [s for _, s in out] == [90, 60, 30, 14, 7, 0, LAPSED]
    assert [(c.expires_on - d).days for d, s in out if s != LAPSED] == [90, 60, 30, 14, 7, 0]
    assert out[-1][0] == c.expires_on + timedelta(days=1)
    assert r.notified_steps(c, sent) == [90, 60, 30, 14, 7, 0, LAPSED]
    # sweeping the same days again (a retried sweep) sends nothing
    assert sweep_daily(c, TODAY, 200, sent) == []


def test_a_sweep_that_missed_days_sends_only_the_current_step():
    c = cred(TODAY + timedelta(days=20))  # first seen at 20 days: 90/60 are superseded, 30 is due
    sent: list[NoticeRecord] = []
    assert [s for _, s in sweep_daily(c, TODAY, 40, sent)] == [30, 14, 7, 0, LAPSED]
    weekly = cred(TODAY + timedelta(days=100), holder_id="1000000001")
    # every 10 days: seen at 100, 90, ..., 10, 0, -10 days left; step 7 fell between two sweeps
    assert [s for _, s in sweep_daily(weekly, TODAY, 140, [], every=10)] == [90, 60, 30, 14, 0, LAPSED]


def test_a_moved_expiry_resets_the_ladder_and_old_notices_do_not_count():
    old = cred(TODAY + timedelta(days=10))
    sent = [NoticeRecord(credential_key=old.key, expires_on=old.expires_on, step=s) for s in (90, 60, 30, 14)]
    assert r.due_step(old, TODAY, sent) is None
    renewed = old.model_copy(update={"expires_on": TODAY + timedelta(days=85)})
    assert renewed.key == old.key  # the same credential...
    assert r.notified_steps(renewed, sent) == []  # ...but a new expiry date: nothing sent for it yet
    assert r.due_step(renewed, TODAY, sent) == 90
    # moved back to the old date: the old date's notices count again (never re-sent)
    assert r.due_step(old, TODAY, sent) is None


def test_credential_keys_tell_credentials_apart():
    keys = {cred(TODAY).key, cred(TODAY, state="OK").key, cred(TODAY, credential="dea").key,
            cred(TODAY, holder_id="1000000001").key, cred(TODAY, credential="board_certification", state="",
                                                        label="internal_medicine").key,
            cred(TODAY, credential="board_certification", state="", label="dermatology").key}
    assert len(keys) == 6
    assert r.notice_key(cred(TODAY), 30) != r.notice_key(cred(TODAY), 14)
    assert r.notice_key(cred(TODAY), 30) != r.notice_key(cred(TODAY + timedelta(days=1)), 30)


@pytest.mark.parametrize("step,clinic", [(90, False), (60, False), (30, False), (14, True), (7, True), (0, True),
                                         (LAPSED, True)])
def test_who_is_told(step, clinic):
    assert r.recipients(step) == ["holder", "ops", *(["clinic"] if clinic else [])]


@pytest.mark.parametrize("value,step", [("90", 90), (0, 0), ("lapsed", LAPSED), (14, 14)])
def test_steps_round_trip_through_the_store(value, step):
    assert r.parse_step(value) == step


@pytest.mark.parametrize("value", ["x", "-1", True, None, 1.5])
def test_a_bad_stored_step_is_refused(value):
    with pytest.raises(ValueError):
        r.parse_step(value)


@pytest.mark.parametrize("credential,expected", [
    ("license", ["TX"]), ("dea", ["TX"]), ("malpractice", ["OK", "TX"]), ("board_certification", []),
    ("midlevel_license", []), ("pharmacy_license", []), ("agreement_term", ["OK", "TX"])])
def test_what_a_lapse_suspends(credential, expected):
    assert r.suspended_states(cred(TODAY, credential=credential), ["TX", "OK"]) == expected


def test_a_pharmacy_licence_lapse_suspends_that_pharmacy_in_its_state_only():
    rx = r.Credential(credential="pharmacy_license", holder_id="austin-rx", state="TX", expires_on=TODAY)
    assert r.suspended_pharmacy_states(rx, ["TX", "OK"]) == ["TX"]
    assert r.suspended_pharmacy_states(rx.model_copy(update={"state": "FL"}), ["TX", "OK"]) == []
    assert r.suspended_pharmacy_states(cred(TODAY), ["TX", "OK"]) == []  # a physician's licence: not a pharmacy


def test_a_licence_in_a_state_the_clinic_does_not_use_suspends_nothing():
    assert r.suspended_states(cred(TODAY, state="FL"), ["TX", "OK"]) == []


def test_physician_credentials_are_those_the_clinic_depends_on():
    p = physician_record(3, ("TX", "OK", "FL"), dea_states=("TX", "FL"),
                         board_certifications=["internal_medicine:2028-06-30", "dermatology", "x:2028-02-30"])
    creds = r.physician_credentials(p, ["TX", "OK"])
    assert sorted((c.credential, c.state, c.label) for c in creds) == [
        ("board_certification", "", "internal_medicine"), ("dea", "TX", ""), ("license", "OK", ""),
        ("license", "TX", ""), ("malpractice", "", "")]
    assert all(c.holder_id == p.npi and c.holder_kind == "physician" for c in creds)


def test_midlevel_licences_with_an_expiry_are_tracked_and_the_field_is_optional():
    data = sample_intake("glow-x")
    data["midlevels"] = [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP1",
                          "license_expires": "2027-03-31"},
                         {"name": "Kim Ray", "role": "PA", "state": "OK", "license_number": "PA2"}]
    intake = Intake.model_validate(data)
    (c,) = r.midlevel_credentials(intake)
    assert (c.credential, c.state, c.expires_on) == ("midlevel_license", "TX", date(2027, 3, 31))
    assert c.holder_id.startswith("glow-x:TX:NP-") and "AP1" not in c.key  # no licence number in keys
    assert c.holder_kind == "midlevel"
    assert Intake.model_validate(sample_intake("glow-y")).midlevels[0].license_expires is None


def test_agreement_terms_default_to_a_year_from_launch():
    creds = r.agreement_credentials("onboarding-a", ["medical_director", "collaborative_practice_TX"],
                                    date(2027, 1, 10), {"collaborative_practice_TX": date(2027, 6, 30)})
    assert [(c.holder_id, c.expires_on) for c in creds] == [
        ("onboarding-a:collaborative_practice_TX", date(2027, 6, 30)),
        ("onboarding-a:medical_director", date(2028, 1, 10))]


def test_pharmacy_licences_in_clinic_states():
    creds = r.pharmacy_credentials("austin-rx", [("TX", date(2027, 2, 1)), ("FL", date(2027, 2, 1))], ["TX"])
    assert [(c.holder_id, c.state, c.holder_kind) for c in creds] == [("austin-rx", "TX", "pharmacy")]


def test_renewal_view_has_the_contract_fields():
    c = cred(TODAY + timedelta(days=12))
    sent = [NoticeRecord(credential_key=c.key, expires_on=c.expires_on, step=s) for s in (30, 14)]
    view = r.renewal_view(c, TODAY, sent, ["b", "a", "a"]).model_dump(mode="json")
    assert view["npi"] == "1234567893" and view["pharmacy_id"] is None
    assert (view["credential"], view["state"], view["expires_on"], view["days_left"], view["step"]) == (
        "license", "TX", (TODAY + timedelta(days=12)).isoformat(), 12, 14)
    assert view["notified_steps"] == [30, 14] and view["clinics"] == ["a", "b"]
    lapsed = r.renewal_view(cred(TODAY - timedelta(days=1)), TODAY, []).model_dump(mode="json")
    assert lapsed["step"] == "lapsed" and lapsed["days_left"] == -1


@pytest.mark.parametrize("days_late,done,expected", [
    (-1, "", None), (0, "", "director"), (2, "director", None), (3, "director", "director+3"),
    (5, "", "director+3"), (7, "director", "ops"), (30, "ops", None), (8, "director+3", "ops")])
def test_an_overdue_item_is_reminded_then_goes_to_ops_each_step_once(days_late, done, expected):
    assert r.escalation_due(days_late, done, [0, 3], 7) == expected


def test_escalation_policy_is_checked():
    data = r.policy().chart_review.model_dump()
    with pytest.raises(ValueError, match="strictly increasing"):
        r.ChartReviewPolicy.model_validate({**data, "reminder_days": [3, 0]})
    with pytest.raises(ValueError, match="after the last reminder"):
        r.ChartReviewPolicy.model_validate({**data, "corrective_action_escalate_to_ops_after_days": 7})


def test_the_review_basis_is_the_strictest_of_the_states_and_never_looser_than_planned():
    from domain.oversight import review_basis

    mo, tn = {"percent": 10, "cadence_days": 14, "basis": "law"}, {"percent": 20, "cadence_days": 30, "basis": "law"}
    b = review_basis({"TN": tn, "MO": mo}, 10, 30)
    assert (b.percent, b.cadence_days, b.percent_set_by, b.cadence_set_by) == (20, 14, ["TN"], ["MO"])
    old = review_basis({}, 15, 30)  # a plan from before per-state requirements: the planned review stands
    assert (old.percent, old.cadence_days, old.states) == (15, 30, {})
    assert review_basis({"MO": mo}, 25, 7).percent_set_by == []  # the planned one is stricter than any state


def test_the_demo_timings_acknowledgement_deadlines_keep_the_policys_order_and_are_shorter():
    from domain.onboarding import Timing

    policy = {sev: timedelta(hours=h) for sev, h in r.policy().adverse_events.ack_deadline_hours.items()}
    demo = Timing.demo().event_ack
    assert set(demo) == set(policy) == {"minor", "serious", "sentinel"}
    assert demo["sentinel"] < demo["serious"] < demo["minor"]
    assert policy["sentinel"] < policy["serious"] < policy["minor"]
    assert all(timedelta(0) < demo[sev] < policy[sev] for sev in policy)
    assert Timing().event_ack == {}  # production: the policy's deadlines
    every = Timing.demo().protocol_review_every
    assert every is not None and every < timedelta(days=r.policy().protocol_review.interval_days)
    assert Timing().protocol_review_every is None
