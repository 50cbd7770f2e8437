"""Operability without servers: the JSON log formatter (whitelisted fields, no PII), the business
metrics derived from the store, and the Grafana dashboard naming only series that are exposed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from observability.business import API_METRICS, BusinessMetrics, store_counts
from observability.logging import JsonFormatter, configure_logging
from observability.worker import SDK_METRICS, WORKER_METRICS
from store import audit, onboardings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "mdco.json"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def _line(logger: str = "mdco.test", msg: str = "hello %s", args=("world",), level=logging.INFO, **extra) -> dict:
    record = logging.getLogger(logger).makeRecord(logger, level, __file__, 1, msg, args, None, extra=extra or None)
    text = JsonFormatter("worker").format(record)
    assert "\n" not in text
    return json.loads(text)


# ---------------------------------------------------------------- logs
def test_json_line_has_the_standard_fields_and_known_extras():
    line = _line(workflow_id="onboarding-glow-austin", stage="matching", attempt=2)
    assert line["level"] == "info" and line["logger"] == "mdco.test" and line["message"] == "hello world"
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None
    assert line["service"] == "worker"
    assert line["workflow_id"] == "onboarding-glow-austin" and line["stage"] == "matching" and line["attempt"] == 2


def test_pii_in_extra_fields_is_never_emitted():
    line = _line(contact_email="dana@glow.example", contact_name="Dana Reyes", phone="+15125550100",
                 intake={"contact": {"email": "dana@glow.example"}}, workflow_id="onboarding-glow-austin")
    text = json.dumps(line)
    assert "dana@glow.example" not in text and "Dana Reyes" not in text and "5125550100" not in text
    assert set(line) == {"ts", "level", "logger", "message", "service", "workflow_id"}


def test_emails_and_phones_in_the_message_are_masked_but_npis_are_not():
    line = _line(msg="mailed %s at %s for NPI %s", args=("dana@glow.example", "(512) 555-0100", "1234567893"))
    assert line["message"] == "mailed <email> at <phone> for NPI 1234567893"
    assert _line(msg="call +1 512 555 0100", args=())["message"] == "call <phone>"


def test_temporal_activity_and_workflow_extras_fill_ids():
    act = _line(logger="temporalio.activity", temporal_activity={
        "activity_id": "3", "activity_type": "record_stage", "attempt": 1, "workflow_id": "onboarding-a",
        "workflow_run_id": "run-1", "workflow_type": "OnboardingWorkflow", "task_queue": "q", "namespace": "default"})
    assert (act["workflow_id"], act["run_id"], act["activity"], act["attempt"]) == \
        ("onboarding-a", "run-1", "record_stage", 1)
    wf = _line(logger="temporalio.workflow", temporal_workflow={
        "workflow_id": "onboarding-b", "run_id": "run-2", "workflow_type": "OnboardingWorkflow", "attempt": 1})
    assert (wf["workflow_id"], wf["run_id"], wf["workflow_type"]) == ("onboarding-b", "run-2", "OnboardingWorkflow")
    assert "activity" not in wf


def test_exceptions_are_one_line_and_masked():
    logger = logging.getLogger("mdco.test")
    try:
        raise ValueError("bad address dana@glow.example")
    except ValueError:
        record = logger.makeRecord("mdco.test", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad address <email>" in line["exc"] and "dana@" not in line["exc"]


def test_configure_logging_installs_one_handler_and_silences_the_access_log(monkeypatch):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("api", "json", "INFO")
        configure_logging("api", "json", "INFO")
        ours = [h for h in root.handlers if getattr(h, "_mdco_observability", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert logging.getLogger("uvicorn.access").disabled
        stream = io.StringIO()
        ours[0].setStream(stream)
        logging.getLogger("mdco.api").info("started", extra={"email": "x@y.example"})
        assert json.loads(stream.getvalue())["message"] == "started" and "x@y" not in stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False


# ---------------------------------------------------------------- business metrics from the store
def _onboarding(engine, n: int, matched_after: timedelta | None = None, launched: bool = False,
                cancelled: bool = False) -> str:
    wf = f"onboarding-clinic-{n}"
    fields = {"stage": "matching", "started_at": T0}
    if matched_after is not None:
        fields.update(stage="protocol_setup", matched_at=T0 + matched_after)
    if launched:
        fields.update(stage="launched", launched_at=T0 + timedelta(hours=30))
    if cancelled:
        fields.update(stage="cancelled", cancelled_at=T0 + timedelta(hours=1))
    onboardings.record_onboarding(engine, wf, f"clinic-{n}", **fields)
    return wf


def test_store_counts(engine):
    _onboarding(engine, 1)
    _onboarding(engine, 2, matched_after=timedelta(minutes=45))
    breached = _onboarding(engine, 3, matched_after=timedelta(hours=30), launched=True)
    _onboarding(engine, 4, cancelled=True)
    for key in (f"{breached}:sla-at_risk", f"{breached}:sla-breached", "onboarding-clinic-1:sla-at_risk"):
        audit.mark_notification_sent(engine, key, "ops", "SLA")
    audit.mark_notification_sent(engine, "onboarding-clinic-2:offer-1", "physician", "offer")
    counts = store_counts(engine)
    assert (counts.started, counts.launched, counts.cancelled) == (4, 1, 1)
    assert (counts.sla_breaches, counts.sla_at_risk) == (1, 2)
    assert sorted(counts.minutes_to_match) == [45.0, 1800.0]


def test_rendered_business_metrics_when_temporal_is_unreachable(engine):
    _onboarding(engine, 1, matched_after=timedelta(minutes=45))
    _onboarding(engine, 2, matched_after=timedelta(minutes=3))

    async def no_client():
        raise ConnectionError("down")

    text = asyncio.run(BusinessMetrics(lambda: engine, no_client).render()).decode()
    assert "mdco_onboardings_started_total 2.0" in text and "mdco_onboardings_launched_total 0.0" in text
    assert 'mdco_time_to_match_minutes_bucket{le="1.0"} 0.0' in text
    assert 'mdco_time_to_match_minutes_bucket{le="5.0"} 1.0' in text
    assert 'mdco_time_to_match_minutes_bucket{le="60.0"} 2.0' in text
    assert 'mdco_time_to_match_minutes_bucket{le="+Inf"} 2.0' in text
    assert "mdco_time_to_match_minutes_count 2.0" in text and "mdco_time_to_match_minutes_sum 48.0" in text
    assert "mdco_visibility_up 0.0" in text and "mdco_onboardings_open{" not in text  # unknown, not zero
    assert 'mdco_renewal_notices_due{step="90"} 0.0' in text and "mdco_chart_reviews_overdue 0.0" in text


# ---------------------------------------------------------------- the Grafana dashboard
SERIES = re.compile(r"\b((?:mdco|temporal)_[a-z0-9_]+)")


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def test_dashboard_is_a_grafana_model_on_a_prometheus_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]


def test_dashboard_names_only_series_the_worker_or_api_expose():
    """The lists are checked against real scrapes in test_observability_stack.py."""
    exposed = set(API_METRICS) | set(WORKER_METRICS) | set(SDK_METRICS)
    used: set[str] = set()
    for panel in _panels(json.loads(DASHBOARD.read_text())):
        for target in panel.get("targets", []):
            names = set(SERIES.findall(target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exposed, (panel["title"], sorted(names - exposed))
            used |= names
    # the three sections the dashboard is for
    assert {"mdco_sla_breaches_total", "mdco_time_to_match_minutes_bucket", "mdco_onboardings_open_by_sla"} <= used
    assert {"mdco_onboardings_open", "mdco_onboardings_started_total", "mdco_onboardings_launched_total"} <= used
    assert {"temporal_activity_execution_failed", "temporal_workflow_task_schedule_to_start_latency_bucket",
            "temporal_worker_task_slots_available", "temporal_workflow_task_queue_poll_succeed"} <= used


@pytest.mark.parametrize("name", sorted(set(API_METRICS) | set(WORKER_METRICS) | set(SDK_METRICS)))
def test_named_series_are_valid_prometheus_names(name):
    assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name)
