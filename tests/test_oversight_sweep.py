"""The compliance sweep and the oversight activities against a real database (SQLite and Postgres):
ladder notices once per step and expiry date, a moved expiry resets the ladder, a lapse or an LEIE
exclusion suspends states and tells every party, overdue reviews escalate, offboarding releases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

import pytest
from temporalio.testing import ActivityEnvironment

from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from api import links
from config import Settings
from domain.exclusions import LeieEntry
from domain.intake import Intake
from domain.messages import ChartReviewRequest
from domain.oversight import OffboardRecord, SweepRequest
from domain.records import License
from store import agreements, audit, exclusions, onboardings, oversight, roster
from tests.db_fixtures import npi_for, pharmacy_record, physician_record
from tests.fake_activities import sample_intake

pytestmark = pytest.mark.timeout(120)
TODAY = date(2027, 3, 1)
NOW = datetime(2027, 3, 1, 6, 0, tzinfo=timezone.utc)


@dataclass
class FakeMailer:
    sent: list[tuple[list[str], str, str]] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)  # by message key

    def send(self, to, subject, body, *, message_id_key=""):
        self.sent.append((list(to), subject, message_id_key))
        self.bodies[message_id_key] = body

    def keys(self, contains: str = "") -> list[str]:
        return [k for _, _, k in self.sent if contains in k]


@pytest.fixture
def world(engine, tmp_path):
    mailer = FakeMailer()
    acts = OversightActivities(OnboardingActivities(Settings(var_dir=tmp_path / "var"), engine, mailer=mailer))
    return acts, mailer


def live_clinic(engine, n: int, *, licence_expires: date, midlevel_expires: date | None = None) -> str:
    key = f"clinic-{uuid.uuid4().hex[:8]}"
    p = physician_record(n, ("TX", "OK"), dea_states=("TX",))
    p = p.model_copy(update={"licenses": [License(state="TX", number=f"L{n}", expires=licence_expires),
                                          License(state="OK", number=f"M{n}", expires=date(2031, 1, 1))],
                             "dea": [d.model_copy(update={"expires": date(2031, 1, 1)}) for d in p.dea]})
    roster.upsert_physicians(engine, [p])
    roster.upsert_pharmacies(engine, [pharmacy_record("austin-rx")])
    data = sample_intake(key)
    if midlevel_expires:
        data["midlevels"][0]["license_expires"] = midlevel_expires.isoformat()
    onboardings.upsert_clinic(engine, Intake.model_validate(data))
    wf = f"onboarding-{key}"
    onboardings.record_onboarding(engine, wf, key, stage="launched", launched_at=NOW - timedelta(days=200))
    assert roster.reserve_physician(engine, wf, npi_for(n)).ok
    onboardings.activate_clinic(engine, key, npi_for(n), NOW - timedelta(days=200))
    onboardings.upsert_pharmacy_assignment(engine, wf, "austin-rx", ["testosterone_hrt"], "confirmed", NOW)
    agreements.upsert_agreement(engine, wf, "medical_director", "v1", envelope_id=f"env-{key}", status="completed",
                                status_at=NOW)
    return key


def test_ladder_notices_go_once_per_step_and_a_moved_expiry_resets_the_ladder(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 1, licence_expires=TODAY + timedelta(days=25), midlevel_expires=TODAY + timedelta(days=10))
    env = ActivityEnvironment()
    env.info = replace(env.info, started_time=NOW)  # the sweep's clock is the activity's start (the server's)
    summary = env.run(acts.compliance_sweep, SweepRequest(as_of=TODAY))
    assert summary.clinics >= 1 and summary.notices >= 2
    lic = [k for k in mailer.keys("renewal:license:") if npi_for(1) in k]
    # the 30-day step: holder and ops, not yet the clinic
    assert sorted(k.split(":")[-1].split("@")[0] for k in lic) == ["holder", "ops"]
    assert all(":30:" in k for k in lic)
    mid = mailer.keys("renewal:midlevel_license:")
    assert any(k.endswith(":clinic") for k in mid)  # the midlevel's notice reaches the clinic (14-day step)
    assert all("AP123456" not in k for k in mailer.keys())  # no licence number in keys
    alerts = [a for a in summary.alerts if a.clinic_key == key]
    assert {a.kind for a in alerts} == {"renewal_notice"} and {a.step for a in alerts} == {"30", "14"}
    # the same day again: nothing new
    count = len(mailer.sent)
    again = acts.sweep(TODAY, NOW)
    assert again.notices == 0 and len(mailer.sent) == count
    # the licence is renewed (re-import, new expiry): the ladder starts afresh at the new date's step
    p = roster.get_physician(engine, npi_for(1))
    renewed = [lic.model_copy(update={"expires": TODAY + timedelta(days=80)}) if lic.state == "TX" else lic
               for lic in p.licenses]
    roster.upsert_physicians(engine, [p.model_copy(update={"licenses": renewed})])
    moved = acts.sweep(TODAY + timedelta(days=1), NOW + timedelta(days=1))
    steps = {a.step for a in moved.alerts if a.clinic_key == key and a.credential_key.startswith("license:")}
    assert steps == {"90"}
    notices = [n for n in oversight.list_notices(engine, key) if n["credential"] == "license"]
    assert sorted((n["expires_on"], n["step"]) for n in notices) == [
        (TODAY + timedelta(days=25), "30"), (TODAY + timedelta(days=80), "90")]
    assert any(e["action"] == "renewal_notice" for e in audit.list_audit(engine, f"oversight-{key}"))


def test_a_lapse_suspends_the_state_and_tells_every_party(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 2, licence_expires=TODAY - timedelta(days=1))
    summary = acts.sweep(TODAY, NOW)
    assert f"{key}:TX" in summary.suspended and f"{key}:OK" not in summary.suspended
    (lapse,) = [a for a in summary.alerts if a.clinic_key == key and a.kind == "lapse"]
    assert lapse.suspended_states == ["TX"] and lapse.step == "lapsed"
    assert [s["state"] for s in oversight.suspensions(engine, key)] == ["TX"]
    told = {k.split(":")[-1].split("@")[0] for k in mailer.keys(f"oversight-{key}:suspended:")}
    assert told == {"clinic", "ops", "physician", "pharmacies"}
    assert acts.sweep(TODAY, NOW).suspended == []  # already suspended: nobody told twice


def test_an_excluded_director_suspends_every_state_of_the_clinic(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 3, licence_expires=date(2031, 1, 1))
    assert acts.sweep(TODAY, NOW).leie_entries == 0  # no list imported: no screen
    exclusions.import_exclusions(engine, [LeieEntry(
        line=2, last_name="LAST3", first_name="FIRST3", mid_name="", business_name="", general="", specialty="",
        npi=npi_for(3), state="TX", excl_type="1128a1", excl_date=date(2027, 2, 1))])
    summary = acts.sweep(TODAY, NOW)
    assert summary.leie_entries == 1 and summary.excluded_npis == [npi_for(3)]
    assert sorted(s for s in summary.suspended if s.startswith(key)) == [f"{key}:OK", f"{key}:TX"]
    assert [a.kind for a in summary.alerts if a.clinic_key == key] == ["exclusion"]
    screens = [e for e in audit.list_audit(engine, f"oversight-{key}") if e["action"] == "exclusion_screen"]
    assert screens and screens[0]["detail"]["excluded"] is True
    assert mailer.keys(f"oversight-{key}:suspended:exclusion:")


def test_overdue_reviews_escalate_to_the_director_then_ops(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 4, licence_expires=date(2031, 1, 1))
    ActivityEnvironment().run(acts.open_chart_review, ChartReviewRequest(
        clinic_key=key, physician_npi=npi_for(4), cycle=1, sample_percent=10, due_at=NOW - timedelta(days=2)))
    (review,) = oversight.list_reviews(engine, key)
    assert review["review_id"] == f"{key}-cr-1"
    assert acts.sweep(TODAY, NOW).reviews_escalated >= 1
    assert oversight.get_review(engine, f"{key}-cr-1")["escalated"] == "director"
    (reminder,) = [b for k, b in mailer.bodies.items() if f"review-overdue-{key}-cr-1" in k]
    (url,) = [w for w in reminder.split() if "/a/" in w]  # the reminder carries the review's answer link
    link = links.read(acts._onb.settings, url.rsplit("/", 1)[1])
    assert (link.workflow_id, link.party, link.action, link.ref) == (f"oversight-{key}", f"physician:{npi_for(4)}",
                                                                     "review", f"{key}-cr-1")
    assert acts.sweep(TODAY, NOW).reviews_escalated == 0
    assert acts.sweep(TODAY + timedelta(days=7), NOW + timedelta(days=7)).reviews_escalated >= 1
    assert oversight.get_review(engine, f"{key}-cr-1")["escalated"] == "ops"
    assert mailer.keys(f"review-overdue-ops-{key}-cr-1")


def test_an_overdue_review_gets_a_later_reminder_and_an_overdue_corrective_action_reminders_then_ops(engine, world):
    acts, mailer = world
    rule = oversight.policy().chart_review  # reviews: reminders on days 0 and 3, ops from 7; actions: 0, 7, ops 14
    key = live_clinic(engine, 9, licence_expires=date(2031, 1, 1))
    rid = f"{key}-cr-1"
    oversight.open_review(engine, rid, key, npi_for(9), 1, 10, NOW - timedelta(days=20), NOW - timedelta(days=1))
    acts.sweep(TODAY, NOW)
    later = rule.reminder_days[1]
    acts.sweep(TODAY + timedelta(days=later), NOW + timedelta(days=later - 1))
    assert oversight.get_review(engine, rid)["escalated"] == f"director+{later}"
    assert len(mailer.keys(f"review-overdue-director+{later}-{rid}")) == 1 and len(mailer.keys(f"review-overdue-{rid}")) == 1
    # a deficient review opens a corrective action; past its due date: reminders, then ops, each once
    row = oversight.submit_review(engine, rid, npi_for(9), 10, 2, "two charts without consent", NOW)
    aid, due = row["corrective_action"]["action_id"], row["corrective_action"]["due_at"]
    assert acts.sweep(TODAY, due - timedelta(hours=1)).actions_escalated == 0
    days = [*rule.corrective_action_reminder_days, rule.corrective_action_escalate_to_ops_after_days]
    for d in days:
        at = due + timedelta(days=d, hours=1)
        assert acts.sweep(at.date(), at).actions_escalated >= 1
        assert acts.sweep(at.date(), at).actions_escalated == 0  # the same day again: nobody told twice
    assert oversight.corrective_actions(engine, key)[0]["escalated"] == "ops"
    assert [len(mailer.keys(f"action-overdue-{lvl}-{aid}")) for lvl in ("director", f"director+{days[1]}", "ops")] \
        == [1, 1, 1]
    levels = [e["detail"]["level"] for e in audit.list_audit(engine, f"oversight-{key}")
              if e["action"] == "corrective_action_escalated"]
    assert levels == ["director", f"director+{days[1]}", "ops"]
    # closed by the director: no more escalations; a second close returns the first
    closed = oversight.close_action(engine, aid, npi_for(9), "consent forms added", NOW + timedelta(days=60))
    assert closed["status"] == "closed"
    assert aid not in [a["action_id"] for a in oversight.overdue_actions(engine, NOW + timedelta(days=90))]
    assert oversight.close_action(engine, aid, npi_for(9), "other", NOW)["close_notes"] == "consent forms added"
    with pytest.raises(oversight.Refused):
        oversight.close_action(engine, aid, npi_for(10), "not mine", NOW)


def test_an_event_past_its_deadline_escalates_once(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 5, licence_expires=date(2031, 1, 1))
    oversight.report_event(engine, f"{key}-ae-1", key, "sentinel", "anaphylaxis", NOW, NOW + timedelta(hours=1))
    assert acts.sweep(TODAY, NOW).events_escalated == 0
    assert acts.sweep(TODAY, NOW + timedelta(hours=2)).events_escalated >= 1
    assert oversight.get_event(engine, f"{key}-ae-1")["status"] == "escalated"
    assert not acts.escalate(f"{key}-ae-1", NOW)
    assert len(mailer.keys(f"event-escalated-{key}-ae-1")) == 1


def test_offboarding_releases_capacity_and_tells_every_party(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 6, licence_expires=date(2031, 1, 1))
    before = roster.get_physician(engine, npi_for(6)).active_clinics
    req = OffboardRecord(clinic_key=key, physician_npi=npi_for(6), reason="clinic closed", at=NOW)
    ActivityEnvironment().run(acts.offboard_clinic, req)
    ActivityEnvironment().run(acts.offboard_clinic, req)  # a retry changes nothing more
    assert roster.get_physician(engine, npi_for(6)).active_clinics == before - 1
    assert onboardings.get_clinic(engine, key)["status"] == "offboarded"
    assert key not in [c["key"] for c in oversight.live_clinics(engine)]
    told = sorted(k.split("offboarded-")[1].split("@")[0] for k in mailer.keys(f"oversight-{key}:offboarded-"))
    assert told == ["clinic", "ops", "pharmacies", "physician"]
    (entry,) = [e for e in audit.list_audit(engine, f"oversight-{key}") if e["action"] == "offboarded"]
    assert entry["detail"]["agreements_terminated"] == ["medical_director"]
    assert entry["detail"]["terminated_on"] == NOW.date().isoformat()
    agreement = agreements.get_agreement(engine, f"onboarding-{key}", "medical_director")
    assert agreement["status"] == "terminated" and agreement["status_at"] == NOW


def test_an_agreement_term_ends_on_its_renewal_date_a_year_from_launch_by_default(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 7, licence_expires=date(2031, 1, 1))  # launched 200 days before NOW
    wf = f"onboarding-{key}"
    assert agreements.get_agreement(engine, wf, "medical_director")["renews_on"] is None
    acts.sweep(TODAY, NOW)  # the sweep stores the default: a policy term (365 days) from the launch
    launched_on = (NOW - timedelta(days=200)).date()
    assert agreements.get_agreement(engine, wf, "medical_director")["renews_on"] == launched_on + timedelta(days=365)
    # a term agreed to end sooner: the ladder follows the stored date (25 days left -> the 30-day step)
    agreements.set_renewal_date(engine, wf, "medical_director", TODAY + timedelta(days=25))
    summary = acts.sweep(TODAY, NOW)
    (alert,) = [a for a in summary.alerts if a.clinic_key == key and a.credential_key.startswith("agreement_term:")]
    assert alert.step == "30" and alert.credential_key == f"agreement_term:{wf}:medical_director:-:-"
    (view,) = [v for v in acts.renewals(TODAY, key) if v.credential == "agreement_term"]
    assert view.expires_on == TODAY + timedelta(days=25) and view.notified_steps == [30]
    # past the stored date the term lapses and suspends every state of the clinic
    lapsed = acts.sweep(TODAY + timedelta(days=26), NOW + timedelta(days=26))
    assert sorted(s for s in lapsed.suspended if s.startswith(key)) == [f"{key}:OK", f"{key}:TX"]
    with pytest.raises(LookupError):
        agreements.set_renewal_date(engine, wf, "no_such_kind", TODAY)


def test_the_sample_follows_monthly_patients_and_deficiencies_open_a_corrective_action(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 8, licence_expires=date(2031, 1, 1))  # 350 patients a month (sample_intake)
    for cycle, percent in ((1, 10), (2, 1)):
        ActivityEnvironment().run(acts.open_chart_review, ChartReviewRequest(
            clinic_key=key, physician_npi=npi_for(8), cycle=cycle, sample_percent=percent,
            due_at=NOW + timedelta(days=7)))
    first, second = oversight.list_reviews(engine, key)
    assert first["sample_charts"] == 35  # 10 % of 350
    assert second["sample_charts"] == 5  # 1 % of 350 is 4 (rounded up): the policy minimum of 5
    row = oversight.submit_review(engine, f"{key}-cr-1", npi_for(8), 35, 2, "two missing GFEs", NOW)
    action = row["corrective_action"]
    assert action["action_id"] == f"{key}-cr-1-ca" and action["deficiencies"] == 2
    assert action["due_at"] == NOW + timedelta(days=30) and action["status"] == "open"
    again = oversight.submit_review(engine, f"{key}-cr-1", npi_for(8), 35, 2, "two missing GFEs", NOW)
    assert again["corrective_action"]["action_id"] == action["action_id"]  # the same action, not a second one
    assert oversight.submit_review(engine, f"{key}-cr-2", npi_for(8), 5, 0, "", NOW)["corrective_action"] is None
    assert len(oversight.corrective_actions(engine, key)) == 1
    status = acts.oversight_status(key, NOW + timedelta(days=31))
    by_id = {r["review_id"]: r for r in status["chart_reviews"]}
    (shown,) = by_id[f"{key}-cr-1"]["corrective_actions"]
    assert shown["action_id"] == f"{key}-cr-1-ca" and shown["status"] == "overdue"
    assert by_id[f"{key}-cr-2"]["corrective_actions"] == [] and by_id[f"{key}-cr-1"]["sample_charts"] == 35


def test_a_pharmacy_licence_climbs_the_ladder_and_its_lapse_suspends_that_pharmacy_in_that_state(engine, world):
    acts, mailer = world
    key = live_clinic(engine, 8, licence_expires=date(2031, 1, 1))
    wf, rx = f"onboarding-{key}", f"rx-{uuid.uuid4().hex[:6]}"

    def licensed(tx_expires: date) -> None:  # the pharmacy file with its licences column
        roster.upsert_pharmacies(engine, [pharmacy_record(rx, on_file=["licenses"], licenses=[
            {"state": "TX", "number": "PTX1", "expires": tx_expires}, {"state": "FL", "number": "PFL1",
                                                                      "expires": TODAY + timedelta(days=5)}])])

    licensed(TODAY + timedelta(days=60))
    onboardings.upsert_pharmacy_assignment(engine, wf, rx, ["glp1_weight_loss"], "confirmed", NOW)
    summary = acts.sweep(TODAY, NOW)
    mine = [a for a in summary.alerts if a.clinic_key == key and a.credential_key.startswith("pharmacy_license:")]
    # only the licence in a clinic state (TX) is tracked; the 60-day step goes to the pharmacy and ops
    assert [(a.credential_key, a.step) for a in mine] == [(f"pharmacy_license:{rx}:TX:-", "60")]
    assert sorted(k.rsplit(":", 1)[-1] for k in mailer.keys(f"renewal:pharmacy_license:{rx}:")) == ["holder", "ops"]
    (view,) = [v for v in acts.renewals(TODAY, key) if v.credential == "pharmacy_license"]
    assert view.pharmacy_id == rx and view.state == "TX" and view.notified_steps == [60]
    # the lapse: that pharmacy stops serving the clinic in TX; the clinic's oversight itself goes on
    lapsed = acts.sweep(TODAY + timedelta(days=61), NOW + timedelta(days=61))
    assert lapsed.pharmacies_suspended == [f"{key}:{rx}:TX"] and not [s for s in lapsed.suspended if key in s]
    (alert,) = [a for a in lapsed.alerts if a.clinic_key == key and a.kind == "lapse"]
    assert alert.suspended_pharmacies == [f"{rx}:TX"] and alert.suspended_states == []
    told = sorted(k.rsplit(":", 1)[-1] for k in mailer.keys(f"oversight-{key}:pharmacy-suspended:"))
    assert told == ["clinic", "ops", "pharmacy", "physician"]
    status = acts.oversight_status(key, NOW + timedelta(days=61))
    assert status["status"] == "active" and [(p["pharmacy_id"], p["state"]) for p in status["suspended_pharmacies"]] \
        == [(rx, "TX")]
    assert acts.sweep(TODAY + timedelta(days=62), NOW + timedelta(days=62)).pharmacies_suspended == []
    # the renewed licence is imported: the suspension lifts and every party hears it once
    licensed(TODAY + timedelta(days=500))
    acts.sweep(TODAY + timedelta(days=63), NOW + timedelta(days=63))
    assert oversight.pharmacy_suspensions(engine, key) == []
    assert len(mailer.keys(f"oversight-{key}:pharmacy-lifted:")) == 4
    assert any(e["action"] == "pharmacy_reinstated" for e in audit.list_audit(engine, f"oversight-{key}"))


def test_each_cycle_samples_the_strictest_of_the_clinic_states_own_chart_review_requirements(engine, world):
    from domain.assessment import assess

    acts, mailer = world
    key = live_clinic(engine, 10, licence_expires=date(2031, 1, 1))
    data = sample_intake(key)
    data["states"] = ["MO", "TN", "TX"]  # MO: 10 % every 14 days; TN: 20 % every 30 days; TX: none (policy)
    for m in data["midlevels"]:
        m["state"] = "MO"
    intake = Intake.model_validate(data)
    onboardings.upsert_clinic(engine, intake)
    plan = assess(intake, TODAY)
    onboardings.save_plan(engine, f"onboarding-{key}", plan)
    # an oversight started with a looser review than its states now require samples the strictest anyway
    ActivityEnvironment().run(acts.open_chart_review, ChartReviewRequest(
        clinic_key=key, physician_npi=npi_for(10), cycle=1, sample_percent=10, due_at=NOW + timedelta(days=7)))
    (review,) = oversight.list_reviews(engine, key)
    assert (review["sample_percent"], review["sample_charts"]) == (20, 70)  # 20 % of 350 patients a month
    (opened,) = [e for e in audit.list_audit(engine, f"oversight-{key}") if e["action"] == "chart_review_opened"]
    basis = opened["detail"]["basis"]
    assert (basis["cadence_days"], basis["percent_set_by"], basis["cadence_set_by"]) == (14, ["TN"], ["MO"])
    assert {st: (r["percent"], r["cadence_days"], r["basis"]) for st, r in basis["states"].items()} == {
        "MO": (10, 14, "law"), "TN": (20, 30, "law"), "TX": (10, 30, "policy")}
    assert "Tenn. Comp. R." in basis["states"]["TN"]["source"]
    assert plan.chart_review.percent == 20 and plan.chart_review.cadence_days == 14  # the workflow's timer


def approved_protocols(engine, key: str, npi: str, at: datetime) -> list[str]:
    """Two protocols of the clinic's launched placement, approved by its director at ``at``."""
    import hashlib

    wf, sha256s = f"onboarding-{key}", []
    for service in ("glp1_weight_loss", "testosterone_hrt"):
        body = f"{service} protocol for {key}"
        sha = hashlib.sha256(body.encode()).hexdigest()
        onboardings.save_protocol(engine, wf, service, "v1", body, sha)
        sha256s.append(sha)
    assert onboardings.approve_protocols(engine, wf, npi, at) == 2
    return sorted(sha256s)


def test_a_year_after_approval_the_director_re_approves_the_protocols_bound_to_their_sha256s(engine, world):
    acts, mailer = world
    rule = oversight.policy().protocol_review  # a year, 30 days to re-approve, reminders 0 and 7, ops from 14
    key = live_clinic(engine, 12, licence_expires=date(2031, 1, 1))
    approved = NOW - timedelta(days=rule.interval_days) + timedelta(days=2)
    sha256s = approved_protocols(engine, key, npi_for(12), approved)
    acts.sweep(TODAY, NOW)
    assert oversight.protocol_reviews(engine, key) == []  # two days short of a year: not yet
    opened_at = NOW + timedelta(days=2)
    assert acts.sweep(opened_at.date(), opened_at).protocol_reviews_opened >= 1
    (review,) = oversight.protocol_reviews(engine, key)
    assert (review["review_id"], review["sha256s"], review["status"]) == (f"{key}-pr-1", sha256s, "open")
    assert review["due_at"] == opened_at + timedelta(days=rule.due_days)
    assert len(mailer.keys(f"protocol-review-{key}-pr-1")) == 1
    assert acts.sweep(opened_at.date(), opened_at).protocol_reviews_opened == 0  # one open review at a time
    # overdue: reminders, then ops, each once
    for d in [*rule.reminder_days, rule.escalate_to_ops_after_days]:
        at = review["due_at"] + timedelta(days=d, hours=1)
        assert acts.sweep(at.date(), at).protocol_reviews_escalated >= 1
        assert acts.sweep(at.date(), at).protocol_reviews_escalated == 0
    assert [len(mailer.keys(f"protocol-review-overdue-{lvl}-{key}-pr-1"))
            for lvl in ("director", f"director+{rule.reminder_days[1]}", "ops")] == [1, 1, 1]
    assert acts.oversight_status(key, at)["protocol_reviews"][0]["status"] == "overdue"
    # only the director, only bound to the review's SHA-256s; nothing changed by a refusal
    with pytest.raises(oversight.Refused, match="not the medical director"):
        oversight.reapprove_protocols(engine, key, npi_for(13), sha256s, at)
    with pytest.raises(oversight.Refused, match="changed since you read them"):
        oversight.reapprove_protocols(engine, key, npi_for(12), sha256s[:1], at)
    assert oversight.protocol_reviews(engine, key)[0]["status"] == "open"
    done = oversight.reapprove_protocols(engine, key, npi_for(12), list(reversed(sha256s)), at)
    assert (done["status"], done["approved_by"], done["approved_at"]) == ("approved", npi_for(12), at)
    # the next review opens a year after this re-approval, not after the first approval
    assert acts.sweep((at + timedelta(days=30)).date(), at + timedelta(days=30)).protocol_reviews_opened == 0
    year_on = at + timedelta(days=rule.interval_days, hours=1)
    acts.sweep(year_on.date(), year_on)
    assert [r["review_id"] for r in oversight.protocol_reviews(engine, key)] == [f"{key}-pr-1", f"{key}-pr-2"]


def test_the_protocol_review_interval_comes_from_the_clinics_timing_else_the_policy(engine, world):
    """The oversight's Timing.protocol_review_every reaches the store through the chart-review activity's
    input; the sweep opens the review that long after the approval. A Timing without one: the policy's year."""
    acts, mailer = world
    rule = oversight.policy().protocol_review
    key = live_clinic(engine, 14, licence_expires=date(2031, 1, 1))
    approved = NOW - timedelta(days=100)
    approved_protocols(engine, key, npi_for(14), approved)
    cycle = ChartReviewRequest(clinic_key=key, physician_npi=npi_for(14), cycle=1, sample_percent=10,
                               due_at=NOW + timedelta(days=14), protocol_review_every=timedelta(days=90))
    ActivityEnvironment().run(acts.open_chart_review, cycle)
    assert onboardings.get_clinic(engine, key)["protocol_review_every_seconds"] == timedelta(days=90).total_seconds()
    acts.sweep(TODAY, NOW)  # 100 days after the approval, the clinic's interval 90 days: opened
    (review,) = oversight.protocol_reviews(engine, key)
    opened = [e for e in audit.list_audit(engine, f"oversight-{key}") if e["action"] == "protocol_review_opened"]
    assert review["opened_at"] == NOW and opened[0]["detail"]["interval_days"] == 90
    done = oversight.reapprove_protocols(engine, key, npi_for(14), review["sha256s"], NOW)
    # the next cycle's Timing sets none: the policy's interval (a year) after the re-approval
    ActivityEnvironment().run(acts.open_chart_review, cycle.model_copy(update={"cycle": 2, "protocol_review_every": None}))
    assert onboardings.get_clinic(engine, key)["protocol_review_every_seconds"] is None
    day_91 = done["approved_at"] + timedelta(days=91)
    acts.sweep(day_91.date(), day_91)
    assert len(oversight.protocol_reviews(engine, key)) == 1
    year_on = done["approved_at"] + timedelta(days=rule.interval_days)
    acts.sweep(year_on.date(), year_on)
    assert [r["opened_at"] for r in oversight.protocol_reviews(engine, key)] == [NOW, year_on]
    with pytest.raises(ValueError, match="protocol_review_every"):
        oversight.set_protocol_review_every(engine, key, timedelta(0))
