"""The clinic reports its chart count (issue 9: "the plan's percentage of the period's charts — the clinic
reports its chart count or the monthly patient volume is used"): the store on SQLite and Postgres, the
chart-review activity choosing its basis, ``mdco reviews charts`` and ``POST /clinics/{key}/chart-counts``
(bad input: the field named, exit 2 / 422, nothing changed; no token 401, sales 403, a clinic's token
for another clinic 403)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import inspect, text
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.audit_packet import packet_files
from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities, chart_count_period, report_chart_count
from config import Settings, get_settings
from domain.limits import CHART_COUNT_MAX
from domain.messages import ChartReviewRequest
from domain.oversight import chart_count_problems, cycle_days, reported_for_cycle
from store import audit, oversight
from store.common import NotFound
from store.db import add_missing_columns, init_db, make_engine
from store.tables import now_utc
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import FakeMailer, live_clinic

pytestmark = pytest.mark.timeout(120)
UTC = timezone.utc


# ---------------------------------------------------------------- domain (pure)
def test_a_cycle_counts_the_overlapping_reports_once_each_the_latest_first():
    d = date.fromisoformat
    at = datetime(2027, 1, 1, tzinfo=UTC)
    first, last = cycle_days(datetime(2026, 9, 1, 8, tzinfo=UTC), datetime(2026, 10, 1, 7, tzinfo=UTC))
    assert (first, last) == (d("2026-09-01"), d("2026-09-30"))  # the opening day belongs to the next cycle
    same_day = datetime(2026, 9, 1, 9, tzinfo=UTC)
    assert cycle_days(same_day, same_day + timedelta(minutes=1)) == (d("2026-09-01"), d("2026-09-01"))

    def rep(start, end, charts, hours):
        return {"period_start": d(start), "period_end": d(end), "charts": charts,
                "reported_at": at + timedelta(hours=hours)}

    august = rep("2026-08-01", "2026-08-31", 500, 0)  # before the cycle: not counted
    first_half = rep("2026-09-01", "2026-09-15", 100, 1)
    second_half = rep("2026-09-16", "2026-09-30", 110, 2)
    whole = rep("2026-09-01", "2026-09-30", 205, 0)  # older, overlaps both halves: left out
    total, counted = reported_for_cycle([august, first_half, whole, second_half], first, last)
    assert total == 210 and counted == [first_half, second_half]
    newer_whole = {**whole, "reported_at": at + timedelta(hours=3)}
    assert reported_for_cycle([first_half, second_half, newer_whole], first, last) == (205, [newer_whole])
    assert reported_for_cycle([august], first, last) is None
    assert chart_count_problems(12, d("2026-09-01"), d("2026-09-30"), d("2026-10-01")) == []
    problems = chart_count_problems(-1, d("2026-09-30"), d("2026-10-02"), d("2026-10-01"))
    assert [f for f, _ in problems] == ["charts", "period_end"]
    assert [f for f, _ in chart_count_problems(True, d("2026-09-30"), d("2026-09-01"), d("2026-10-01"))] == [
        "charts", "period_start"]
    assert chart_count_problems(CHART_COUNT_MAX + 1, d("2026-09-01"), d("2026-09-01"), d("2026-10-01"))


# ---------------------------------------------------------------- store (SQLite and Postgres)
def test_a_report_per_period_replaced_by_a_re_report_refused_without_a_trace(engine):
    key = live_clinic(engine, 51, licence_expires=date(2031, 1, 1))
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    start, end = date(2026, 9, 1), date(2026, 9, 30)
    row, before = oversight.report_chart_count(engine, key, 120, start, end, "ops:cli", at)
    assert before is None and (row["charts"], row["reported_by"], row["reported_at"]) == (120, "ops:cli", at)
    later = at + timedelta(hours=1)
    row, before = oversight.report_chart_count(engine, key, 130, start, end, "ops:jo", later)
    assert before == 120 and (row["charts"], row["reported_by"], row["reported_at"]) == (130, "ops:jo", later)
    row, before = oversight.report_chart_count(engine, key, 130, start, end, "ops:al", later + timedelta(hours=1))
    assert before == 130 and row["reported_by"] == "ops:jo"  # the same count again: nothing changes
    oversight.report_chart_count(engine, key, 40, date(2026, 10, 1), date(2026, 10, 1), "ops:cli", at)
    assert [(r["period_start"], r["period_end"], r["charts"]) for r in oversight.chart_counts(engine, key)] == [
        (start, end, 130), (date(2026, 10, 1), date(2026, 10, 1), 40)]

    bad = [((-1, start, end), "charts"), ((CHART_COUNT_MAX + 1, start, end), "charts"), ((5, end, start), "period_start"),
           ((5, start, date(2026, 10, 3)), "period_end")]
    for (charts, s, e), field in bad:
        with pytest.raises(ValueError, match=f"^{field}:"):
            oversight.report_chart_count(engine, key, charts, s, e, "ops:cli", at)
    with pytest.raises(NotFound):
        oversight.report_chart_count(engine, "no-such-clinic", 5, start, end, "ops:cli", at)
    oversight.mark_offboarded(engine, key)
    with pytest.raises(oversight.Refused, match="not under oversight"):
        oversight.report_chart_count(engine, key, 7, start, end, "ops:cli", at)
    assert [r["charts"] for r in oversight.chart_counts(engine, key)] == [130, 40]  # nothing changed


def test_an_older_database_gets_the_table_and_the_sample_basis_column(db_url):
    engine = make_engine(db_url)
    try:
        init_db(engine)
        with engine.begin() as conn:  # the shape before chart counts
            conn.execute(text("DROP TABLE chart_counts"))
            conn.execute(text("ALTER TABLE chart_reviews DROP COLUMN sample_basis"))
        init_db(engine)  # the next start
        assert inspect(engine).has_table("chart_counts")
        assert "sample_basis" in {c["name"] for c in inspect(engine).get_columns("chart_reviews")}
        assert add_missing_columns(engine) == []
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the chart-review activity
def test_each_review_samples_the_reported_charts_of_its_cycle_else_the_patient_volume(engine, tmp_path):
    mailer = FakeMailer()
    acts = OversightActivities(OnboardingActivities(Settings(var_dir=tmp_path / "var"), engine, mailer=mailer))
    key = live_clinic(engine, 52, licence_expires=date(2031, 1, 1))  # live since 2026-08-13 06:00, 350 a month
    npi, live = npi_for(52), datetime(2026, 8, 13, 6, tzinfo=UTC)

    def open_cycle(cycle: int, day: int) -> dict:
        env = ActivityEnvironment()
        env.info = replace(env.info, started_time=live + timedelta(days=day))
        env.run(acts.open_chart_review, ChartReviewRequest(clinic_key=key, physician_npi=npi, cycle=cycle,
                                                           sample_percent=10, due_at=live + timedelta(days=day + 7)))
        return oversight.get_review(engine, f"{key}-cr-{cycle}")

    def report(charts: int, start_day: int, end_day: int, at_day: int) -> dict:
        return report_chart_count(engine, key, charts, (live + timedelta(days=start_day)).date(),
                                  (live + timedelta(days=end_day)).date(), "ops:test", live + timedelta(days=at_day))

    # nothing reported: 10 % of the 350 patients a month, as before
    assert (open_cycle(1, 30)["sample_charts"], oversight.get_review(engine, f"{key}-cr-1")["sample_basis"]) == (
        35, "patient_volume")
    # 120 charts reported for cycle 2 (days 30..59): 10 % of them, rounded up
    report(120, 30, 59, 60)
    assert (open_cycle(2, 60)["sample_charts"], oversight.get_review(engine, f"{key}-cr-2")["sample_basis"]) == (
        12, "reported")
    (asked,) = [b for k, b in mailer.bodies.items() if k.startswith(f"oversight-{key}:chart-review-2")]
    assert "review 12 charts (10% of 120 charts reported for 2026-09-12 to 2026-10-11" in asked
    # 30 reported, then replaced by 80 for the same period: the replacement counts (8, not the minimum 5)
    report(30, 60, 89, 89)
    assert report(80, 60, 89, 90)["previous"] == 30
    assert open_cycle(3, 90)["sample_charts"] == 8
    # fewer than the policy minimum (5) reported: never more than the charts there are
    report(3, 90, 119, 120)
    assert open_cycle(4, 120)["sample_charts"] == 3
    # nothing reported for cycle 5: the patient volume again (older reports do not overlap it)
    assert (open_cycle(5, 150)["sample_charts"], oversight.get_review(engine, f"{key}-cr-5")["sample_basis"]) == (
        35, "patient_volume")

    status = acts.oversight_status(key, live + timedelta(days=151))
    assert [(r["cycle"], r["sample_basis"], r["sample_charts"]) for r in status["chart_reviews"]] == [
        (1, "patient_volume", 35), (2, "reported", 12), (3, "reported", 8), (4, "reported", 3),
        (5, "patient_volume", 35)]
    opened = {e["detail"]["cycle"]: e["detail"] for e in audit.list_audit(engine, f"oversight-{key}")
              if e["action"] == "chart_review_opened"}
    assert (opened[3]["sample_basis"], opened[3]["reported_charts"], opened[3]["reported_periods"]) == (
        "reported", 80, [["2026-10-12", "2026-11-10"]])
    assert opened[3]["cycle_days"] == ["2026-10-12", "2026-11-10"] and opened[1]["reported_charts"] is None
    trail = [(e["action"], e["actor"], e["detail"]["charts"], e["detail"]["previous"])
             for e in audit.list_audit(engine, f"oversight-{key}") if e["action"].startswith("chart_count_")]
    assert trail == [("chart_count_reported", "ops:test", 120, None), ("chart_count_reported", "ops:test", 30, None),
                     ("chart_count_replaced", "ops:test", 80, 30), ("chart_count_reported", "ops:test", 3, None)]
    reviews = json.loads(packet_files(engine, key)["chart_reviews.json"])  # the audit packet's reviews file
    assert [r["sample_basis"] for r in reviews] == ["patient_volume", "reported", "reported", "reported",
                                                    "patient_volume"]
    # the default period of a report: since the last review opened (day 150), to today
    assert chart_count_period(engine, key, date(2027, 1, 20)) == (date(2027, 1, 10), date(2027, 1, 20))


# ---------------------------------------------------------------- mdco reviews charts
@pytest.fixture
def mdco(db_url, tmp_path, monkeypatch):
    from starter.cli import app

    monkeypatch.setenv("MDCO_DATABASE_URL", db_url)
    monkeypatch.setenv("MDCO_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_cli_reports_for_the_current_cycle_and_refuses_bad_input_with_exit_2(engine, mdco):
    key = live_clinic(engine, 53, licence_expires=date(2031, 1, 1))
    today = date.today()
    ok = mdco("reviews", "charts", key, "--charts", "140", "--json")
    assert ok.exit_code == 0, ok.output
    got = json.loads(ok.stdout)
    assert got["period_start"] == date(2026, 8, 13).isoformat()  # no review opened yet: since the clinic went live
    assert (got["period_end"], got["charts"], got["previous"], got["changed"]) == (today.isoformat(), 140, None, True)
    again = mdco("reviews", "charts", f"oversight-{key}", "--charts", "150")
    assert again.exit_code == 0 and "replaced 140" in again.stdout, again.output

    before = oversight.chart_counts(engine, key)
    trail = len(audit.list_audit(engine, f"oversight-{key}"))
    tomorrow = (today + timedelta(days=1)).isoformat()
    refusals = [
        (("--charts", "-1"), "--charts"),
        (("--charts", str(CHART_COUNT_MAX + 1)), "--charts"),
        (("--charts", "ten"), "--charts"),  # typer's own check: exit 2 as well
        (("--charts", "5", "--period-start", "2026-13-01"), "--period-start"),
        (("--charts", "5", "--period-start", "2026-09-30", "--period-end", "2026-09-01"), "--period-start"),
        (("--charts", "5", "--period-end", tomorrow), "--period-end"),
    ]
    for args, field in refusals:
        result = mdco("reviews", "charts", key, *args)
        assert result.exit_code == 2 and field in result.stderr, (args, result.output)
    assert mdco("reviews", "charts", "no-such-clinic", "--charts", "5").exit_code == 2
    oversight.mark_offboarded(engine, key)
    gone = mdco("reviews", "charts", key, "--charts", "5")
    assert gone.exit_code == 2 and "not under oversight" in gone.stderr
    assert oversight.chart_counts(engine, key) == before and before[0]["charts"] == 150  # nothing changed
    assert len(audit.list_audit(engine, f"oversight-{key}")) == trail


# ---------------------------------------------------------------- POST /clinics/{clinic_key}/chart-counts
async def test_api_ops_and_the_clinic_report_chart_counts_401_403_422_404_409(engine, db_url, tmp_path):
    from api.app import create_app
    from api.auth import auth_headers
    from tests.esign_fixtures import free_port

    settings = Settings(var_dir=tmp_path, database_url=db_url, temporal_address=f"127.0.0.1:{free_port()}")
    key = live_clinic(engine, 54, licence_expires=date(2031, 1, 1))
    url, today = f"/clinics/{key}/chart-counts", now_utc().date()
    body = {"charts": 90, "period_start": "2026-09-01", "period_end": "2026-09-30"}
    app = create_app(client=None, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        assert (await http.post(url, json=body)).status_code == 401
        assert (await http.post(url, json=body, headers=auth_headers(settings, "sales"))).status_code == 403
        ops = auth_headers(settings, "ops", "ops-jo")
        invalid = [({"charts": -1}, "charts"), ({"charts": CHART_COUNT_MAX + 1}, "charts"), ({"charts": "90"}, "charts"),
                   ({"charts": 9.5}, "charts"), ({}, "charts"), ({"charts": 5, "period_start": 0}, "period_start"),
                   ({"charts": 5, "period_start": "2026-09-31"}, "period_start"),
                   ({"charts": 5, "period_start": "2026-09-30", "period_end": "2026-09-01"}, "period_start"),
                   ({"charts": 5, "period_end": (today + timedelta(days=1)).isoformat()}, "period_end")]
        for payload, field in invalid:
            answer = await http.post(url, json=payload, headers=ops)
            assert answer.status_code == 422, (payload, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert field in [e["field"] for e in answer.json()["errors"]], (payload, answer.json())
        assert oversight.chart_counts(engine, key) == []  # nothing changed by a refusal
        assert (await http.post("/clinics/no-such-clinic/chart-counts", json=body, headers=ops)).status_code == 404
        first = await http.post(url, json=body, headers=ops)
        assert first.status_code == 200, first.text
        assert first.json() == {"clinic_key": key, "period_start": "2026-09-01", "period_end": "2026-09-30",
                                "charts": 90, "previous": None, "status": "reported"}
        second = await http.post(url, json={**body, "charts": 95}, headers=ops)
        assert (second.json()["status"], second.json()["previous"]) == ("replaced", 90)
        assert (await http.post(url, json={**body, "charts": 95}, headers=ops)).json()["status"] == "unchanged"
        current = await http.post(url, json={"charts": 12}, headers=ops)  # the current cycle's period
        assert (current.json()["period_start"], current.json()["period_end"]) == ("2026-08-13", today.isoformat())
        # the clinic's own token (role clinic, subject the clinic key): its own clinic only, nothing else
        own = auth_headers(settings, "clinic", key)
        october = {"charts": 70, "period_start": "2026-10-01", "period_end": "2026-10-31"}
        assert (await http.post(url, json=october, headers=own)).json()["status"] == "reported"
        other = live_clinic(engine, 55, licence_expires=date(2031, 1, 1))
        assert (await http.post(f"/clinics/{other}/chart-counts", json=october, headers=own)).status_code == 403
        assert (await http.get(f"/clinics/{key}/audit-packet", headers=own)).status_code == 403
        assert (await http.post(f"/clinics/{key}/replace", json={"reason": "x"}, headers=own)).status_code == 403
        assert oversight.chart_counts(engine, other) == []
        oversight.mark_offboarded(engine, key)
        assert (await http.post(url, json=body, headers=ops)).status_code == 409
    assert [(r["period_start"].isoformat(), r["charts"]) for r in oversight.chart_counts(engine, key)] == [
        ("2026-08-13", 12), ("2026-09-01", 95), ("2026-10-01", 70)]
    trail = [(e["action"], e["actor"]) for e in audit.list_audit(engine, f"oversight-{key}")
             if e["action"].startswith("chart_count_")]
    assert trail == [("chart_count_reported", "ops:ops-jo"), ("chart_count_replaced", "ops:ops-jo"),
                     ("chart_count_reported", "ops:ops-jo"), ("chart_count_reported", f"clinic:{key}")]
