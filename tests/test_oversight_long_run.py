"""Two simulated years of one clinic's oversight on the time-skipping server, with the real oversight
activities on SQLite (the mailer is the only fake: it stands for SMTP): monthly chart reviews (the
director submits every other one; a deficient one opens a corrective action), the compliance sweep run
weekly and daily around each expiry (the licence's full ladder, then a renewal re-imported; the
agreement's term renewed twice, its ladder starting afresh at each new date; a midlevel's licence
lapsing, which suspends nothing), adverse events of each severity (the serious one acknowledged, the
minor and the sentinel ones escalated to ops at their deadlines), the annual protocol review (opened a
year after the approval, the director re-approves it, the next one a year after that is left and
escalates to the director, then ops), the director found on the imported OIG LEIE list near the end
(every state suspended, a replacement placement started on the worker, oversight ``replacing``),
continue-as-new every 12 cycles, and every run's history stays bounded. The sweep runs at the server's
(skipped) clock. (A replacement played to its hand-over: tests/test_workflow_replacement.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from activities.replacement import ReplacementActivities
from config import Settings
from domain.onboarding import ChartReview, OversightInput, OversightStatus, Timing
from api.service import start_event_watch, stop_event_watch
from domain.exclusions import LeieEntry
from domain.oversight import AdverseEventWatch, OversightCompliance, SweepRequest, SweepSummary
from starter.oversight_cli import ack_deadline
from store import agreements, audit, exclusions, oversight, roster
from store.db import init_db, make_engine
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import FakeMailer, approved_protocols, live_clinic
from workflows.compliance import COMPLIANCE_WORKFLOWS, ComplianceSweepWorkflow
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import CYCLES_PER_RUN, OversightWorkflow

pytestmark = pytest.mark.timeout(420)

YEARS_DAYS = 730
MAX_EVENTS_PER_RUN = 2_000


def sweep_days(expiries: list[int], protocol_days: list[int]) -> list[int]:
    """Weekly, every day from 15 days before each expiry to the day after (the ladder's last steps), and
    every day around each protocol-review date (opening, re-approval, due and escalation days)."""
    days = set(range(0, YEARS_DAYS + 1, 7))
    for day in expiries:
        days |= set(range(max(day - 15, 0), min(day + 2, YEARS_DAYS + 1)))
    for day in protocol_days:
        days |= set(range(max(day - 2, 0), min(day + 3, YEARS_DAYS + 1)))
    return sorted(days)


async def run_histories(client, workflow_id: str) -> list:
    """Every run of ``workflow_id``, first to last (following continue-as-new back from the latest)."""
    runs, run_id = [], None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.insert(0, history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            return runs


async def test_two_years_of_oversight_keep_every_run_bounded(time_env, task_queue, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'mdco.db'}")
    init_db(engine)
    client = time_env.client
    start = (await time_env.get_current_time()).date()
    key = live_clinic(engine, 1, licence_expires=start + timedelta(days=200),
                      midlevel_expires=start + timedelta(days=400))  # launched 200 days before 2027-03-01
    wf, npi = f"onboarding-{key}", npi_for(1)
    mailer = FakeMailer()
    settings = Settings(var_dir=tmp_path / "var", task_queue=task_queue)
    onboarding = OnboardingActivities(settings, engine, mailer=mailer)
    acts = OversightActivities(onboarding)
    # the director approved the protocols 60 days before: the first annual review opens on day 305
    started_at = await time_env.get_current_time()
    approved_at = started_at - timedelta(days=60)
    sha256s = approved_protocols(engine, key, npi, approved_at)
    year = timedelta(days=oversight.policy().protocol_review.interval_days)  # Timing() sets none: the policy's
    rule = oversight.policy().protocol_review
    first_review_day, reapprove_day = 305, 312
    second_review_day = reapprove_day + year.days  # 677: a year after the re-approval, not after the opening
    second_due_day = second_review_day + rule.due_days
    escalation_days = [second_due_day + d for d in [*rule.reminder_days, rule.escalate_to_ops_after_days]]
    assert escalation_days[-1] <= YEARS_DAYS
    acts.sweep(start, started_at)  # the first sweep stores the agreement's default renewal date
    term_day = (agreements.get_agreement(engine, wf, "medical_director")["renews_on"] - start).days
    licence_day, midlevel_day = 200, 400
    expiries = [licence_day, midlevel_day, term_day, term_day + 365]
    protocol_days = [first_review_day, reapprove_day, second_review_day, *escalation_days]
    reapproved: dict = {}
    event_day, events = 98, {}  # adverse events reported on a weekly sweep day, by severity
    exclusion_day = 700  # the monthly LEIE list imported that day names the director
    submitted: set[str] = set()
    summaries: list[SweepSummary] = []
    with ThreadPoolExecutor(4) as executor:
        async with Worker(client, task_queue=task_queue,
                          workflows=[OnboardingWorkflow, OversightWorkflow, *COMPLIANCE_WORKFLOWS],
                          activities=onboarding.all() + acts.all() + ReplacementActivities(onboarding, client).all(),
                          activity_executor=executor):
            handle = await client.start_workflow(
                OversightWorkflow.run,
                OversightInput(clinic_key=key, physician_npi=npi, states=["TX", "OK"],
                               chart_review=ChartReview(percent=10, cadence_days=30), timing=Timing()),
                id=f"oversight-{key}", task_queue=task_queue)
            for day in sweep_days(expiries, protocol_days):
                now = await time_env.get_current_time()
                target = start + timedelta(days=day)
                if target > now.date():
                    await time_env.sleep(timedelta(days=(target - now.date()).days))
                today = (await time_env.get_current_time()).date()
                # the director submits every other review (one deficiency in every fourth)
                for review in oversight.list_reviews(engine, key):
                    rid = review["review_id"]
                    if review["status"] == "open" and review["cycle"] % 2 and rid not in submitted:
                        oversight.submit_review(engine, rid, npi, review["sample_charts"],
                                                1 if review["cycle"] % 4 == 1 else 0, "", review["due_at"])
                        submitted.add(rid)
                if day == exclusion_day:  # ops import the month's OIG LEIE list: the director is on it
                    exclusions.import_exclusions(engine, [LeieEntry(
                        line=2, last_name="LAST1", first_name="FIRST1", mid_name="", business_name="", general="",
                        specialty="", npi=npi, state="TX", excl_type="1128a1", excl_date=today)])
                with time_env.auto_time_skipping_disabled():  # waiting on the sweep must not skip a month
                    summaries.append(await client.execute_workflow(
                        ComplianceSweepWorkflow.run, SweepRequest(as_of=today), id=f"sweep-{key}-{today}",
                        task_queue=task_queue, result_type=SweepSummary))
                # renewals arrive on the expiry day, after that day's (0-day) notice went out
                if day == licence_day:  # the state board renewed the licence: ops re-import the roster
                    p = roster.get_physician(engine, npi)
                    roster.upsert_physicians(engine, [p.model_copy(update={"licenses": [
                        lic.model_copy(update={"expires": lic.expires + timedelta(days=730)}) if lic.state == "TX"
                        else lic for lic in p.licenses]})])
                if day in (term_day, term_day + 365):  # the agreement renewed for another year
                    agreements.set_renewal_date(engine, wf, "medical_director", today + timedelta(days=365))
                if day == exclusion_day:  # every state suspended at once, a new director sought
                    excluded = await handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)
                if day == event_day:  # mdco events report for each severity; the director acks the serious one
                    at = await time_env.get_current_time()
                    for severity in ("minor", "serious", "sentinel"):
                        left = await ack_deadline(client, key, severity) or oversight.policy().ack_deadline(severity)
                        events[severity] = acts.report_event(key, severity, f"a {severity} event", at, at + left)
                        await start_event_watch(client, settings, AdverseEventWatch(
                            event_id=events[severity]["event_id"], clinic_key=key, severity=severity,
                            ack_due_at=at + left))
                    oversight.ack_event(engine, events["serious"]["event_id"], npi, "patient seen", at)
                    await stop_event_watch(client, events["serious"]["event_id"])
                if day == reapprove_day:  # the director re-approves the first review (mdco oversight reapprove-protocols)
                    reapproved = acts.reapprove_protocols(key, npi, None, await time_env.get_current_time())
            status = await handle.query(OversightWorkflow.status, result_type=OversightStatus)
            compliance = await handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)
            replacement = client.get_workflow_handle(f"onboarding-{key}-r1")
            placement = await replacement.describe()
            await replacement.terminate("the engagement ends")  # the clinic is offboarded instead
            await handle.signal(OversightWorkflow.end_engagement, "two years are up")
            await handle.result()
            runs = await run_histories(client, handle.id)

    # two years of monthly reviews, a run per CYCLES_PER_RUN of them, each history bounded
    assert status.cycles_done >= 23
    assert len(runs) == status.cycles_done // CYCLES_PER_RUN + 1
    sizes = [len(h.events) for h in runs]
    assert all(size < MAX_EVENTS_PER_RUN for size in sizes), sizes
    assert all(h.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
               for h in runs[:-1])
    assert runs[-1].events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    signals = sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED for h in runs for e in h.events)
    # every alert reached it (+ replacement_started, end_engagement)
    assert signals == sum(len(s.alerts) for s in summaries) + 2

    # the licence's full ladder, each step once, then its renewal: nothing more for the new date (yet)
    notices = oversight.list_notices(engine, key)
    ladder = ["90", "60", "30", "14", "7", "0"]
    assert [n["step"] for n in notices if n["credential"] == "license" and n["state"] == "TX"] == ladder
    assert len([k for _, _, k in mailer.sent if f"renewal:license:{npi}:TX" in k and k.endswith(":ops")]) == 6
    # the agreement's term: a full ladder for each of its first two end dates (renewed on the day)
    term = [(n["expires_on"], n["step"]) for n in notices if n["credential"] == "agreement_term"]
    first_end, second_end = start + timedelta(days=term_day), start + timedelta(days=term_day + 365)
    assert [st for end, st in term if end == first_end] == ladder
    assert [st for end, st in term if end == second_end] == ladder
    # the midlevel's licence lapsed: notices to the last step, nothing suspended by it
    assert [n["step"] for n in notices if n["credential"] == "midlevel_license"] == [*ladder, "lapsed"]
    # the LEIE exclusion suspended every state on its day (only then), and a replacement placement runs
    assert [(s.as_of - start).days for s in summaries if s.suspended] == [exclusion_day]
    assert [(s["state"], s["cause"]) for s in oversight.suspensions(engine, key)] == [
        ("OK", f"exclusion:{npi}"), ("TX", f"exclusion:{npi}")]
    assert (excluded.status, excluded.suspended_states) == ("replacing", ["OK", "TX"])
    assert (compliance.status, compliance.suspended_states) == ("replacing", ["OK", "TX"])
    assert placement.workflow_type == "OnboardingWorkflow" and placement.status.name == "RUNNING"
    assert oversight.running_replacement(engine, key) == f"onboarding-{key}-r1"

    # chart reviews: every cycle opened once, every other one submitted, deficient ones with an action
    reviews = oversight.list_reviews(engine, key)
    assert [r["cycle"] for r in reviews] == list(range(1, status.cycles_done + 1))
    assert all(r["sample_charts"] == 35 for r in reviews)  # 10 % of 350 patients a month
    assert {r["review_id"] for r in reviews if r["status"] == "submitted"} == submitted
    actions = oversight.corrective_actions(engine, key)
    assert [a["review_id"] for a in actions] == [r["review_id"] for r in reviews
                                                 if r["cycle"] % 4 == 1 and r["review_id"] in submitted]
    # adverse events: the serious one acknowledged; the minor and sentinel ones escalated to ops at their
    # deadlines by their watch workflows (the policy's 72 h and 1 h: this clinic's Timing sets none)
    stored = {e["severity"]: e for e in oversight.list_events(engine, key)}
    assert {s: e["status"] for s, e in stored.items()} == {
        "minor": "escalated", "serious": "acknowledged", "sentinel": "escalated"}
    for severity in ("minor", "sentinel"):
        e = stored[severity]
        assert e["ack_due_at"] - e["reported_at"] == oversight.policy().ack_deadline(severity)
        assert timedelta(0) <= e["escalated_at"] - e["ack_due_at"] < timedelta(minutes=1)
        assert len(mailer.keys(f"event-escalated-{e['event_id']}")) == 1
    assert mailer.keys(f"event-escalated-{stored['serious']['event_id']}") == []
    assert events["minor"]["medwatch"] is None
    assert all(Path(events[s]["medwatch"]["medwatch_path"]).exists() for s in ("serious", "sentinel"))
    # the annual protocol review: opened a year after the approval, re-approved by the director (bound to
    # the texts' SHA-256s); the next opened a year after that re-approval, left, escalated director then ops
    first, second = oversight.protocol_reviews(engine, key)
    assert (first["review_id"], second["review_id"]) == (f"{key}-pr-1", f"{key}-pr-2")
    assert timedelta(0) <= first["opened_at"] - (approved_at + year) < timedelta(days=1)
    assert (first["status"], first["approved_by"], first["sha256s"]) == ("approved", npi, sha256s)
    assert first["escalated"] is None and reapproved["review_id"] == first["review_id"]
    assert timedelta(0) <= second["opened_at"] - (first["approved_at"] + year) < timedelta(days=1)
    assert (second["status"], second["escalated"]) == ("open", "ops")
    opened = [(s.as_of - start).days for s in summaries for _ in range(s.protocol_reviews_opened)]
    assert opened == [first_review_day, second_review_day], opened
    levels = ["director", f"director+{rule.reminder_days[1]}", "ops"]
    assert [len(mailer.keys(f"protocol-review-overdue-{lvl}-{key}-pr-2")) for lvl in levels] == [1, 1, 1]
    assert mailer.keys(f"protocol-review-overdue-director-{key}-pr-1") == []
    escalated = [(s.as_of - start).days for s in summaries if s.protocol_reviews_escalated]
    assert escalated == escalation_days, escalated
    assert any(e["action"] == "protocols_reapproved" for e in audit.list_audit(engine, f"oversight-{key}"))
    # missed chart reviews were reminded, then went to ops (on the server's clock)
    last_sweep = max(s.as_of for s in summaries)
    missed = [r for r in reviews if r["status"] != "submitted" and r["due_at"].date() + timedelta(days=8) <= last_sweep]
    assert len(missed) >= 10 and all(r["escalated"] == "ops" for r in missed), [r["escalated"] for r in missed]
    # the end of the engagement: offboarded, the agreements terminated
    assert agreements.get_agreement(engine, wf, "medical_director")["status"] == "terminated"
    assert max(s.as_of for s in summaries) >= start + timedelta(days=YEARS_DAYS) - timedelta(days=7)
    engine.dispose()
