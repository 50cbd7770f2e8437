"""`mdco protocols show ID [--json]` and `GET /onboardings/{id}/protocols` (ops): the CONTRACT list read from
the store (documents saved per workflow id, with the content each was rendered from), on SQLite and Postgres."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.auth import auth_headers
from config import Settings
from domain.assessment import assess
from domain.documents import protocol_document
from domain.intake import Intake
from domain.records import PhysicianRecord
from store import onboardings
from tests.esign_fixtures import free_port
from tests.fake_activities import sample_intake

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
CONTRACT_FIELDS = {"service", "version", "sha256", "status", "document", "delegation", "dosing", "gfe",
                   "contraindications", "labs", "adverse_events"}
DOC = PhysicianRecord.model_validate({
    "npi": "1234567893", "first_name": "Ana", "last_name": "Cruz", "degree": "MD", "email": "ana@md.example",
    "phone": "+15125550111", "home_state": "TX", "licenses": [{"state": "TX", "number": "Q1", "expires": "2028-01-01"}],
    "max_clinics": 5, "active_clinics": 1, "malpractice_expires": "2028-01-01"})


@pytest.fixture
def prepared(engine) -> str:
    """An onboarding at stage 3 whose protocols were prepared as ``prepare_protocols`` does."""
    intake = Intake.model_validate(sample_intake("show-me"))
    plan = assess(intake, date(2026, 11, 1))
    wf = "onboarding-show-me"
    onboardings.upsert_clinic(engine, intake)
    onboardings.record_onboarding(engine, wf, intake.clinic_key, stage="protocol_setup", sla_status="on_track",
                                  started_at=datetime(2026, 11, 1, tzinfo=UTC))
    onboardings.save_plan(engine, wf, plan)
    for service in intake.services:
        version, body, content = protocol_document(service, intake, plan, DOC)
        onboardings.save_protocol(engine, wf, service.value, version, body, hashlib.sha256(body.encode()).hexdigest(),
                                  content=content.model_dump(mode="json"))
    return wf


def _check(shown: list[dict]) -> None:
    assert [p["service"] for p in shown] == ["dermal_fillers", "glp1_weight_loss", "neurotoxins", "testosterone_hrt"]
    for p in shown:
        assert CONTRACT_FIELDS <= set(p) and p["status"] == "pending_approval"
        assert hashlib.sha256(p["document"].encode()).hexdigest() == p["sha256"] and p["version"].endswith(".v2")
        assert {d["role"] for d in p["delegation"]} == {"MD", "NP", "PA", "RN"}
        assert all({"role", "may", "supervision"} <= set(d) and isinstance(d["may"], list) for d in p["delegation"])
        assert p["gfe"]["required"] is True and p["gfe"]["by"] == ["MD", "NP", "PA"] and p["gfe"]["mode"]
        assert any(e["severity"] == "sentinel" for e in p["adverse_events"])
    glp1 = next(p for p in shown if p["service"] == "glp1_weight_loss")
    assert {(d["drug"], d["start"], d["max"]) for d in glp1["dosing"]} == {
        ("semaglutide", "0.25 mg weekly for 4 weeks", "2.4 mg once weekly"),
        ("tirzepatide", "2.5 mg weekly for 4 weeks", "15 mg once weekly")}
    assert all({"drug", "route", "start", "titration", "max"} <= set(d) for d in glp1["dosing"])
    trt = next(p for p in shown if p["service"] == "testosterone_hrt")
    assert {lab["test"] for lab in trt["labs"]} >= {"hematocrit", "serum testosterone"}


def test_cli_prints_the_contract_list_and_the_documents(engine, db_url, prepared, tmp_path):
    env = {**os.environ, "MDCO_DATABASE_URL": db_url, "MDCO_VAR_DIR": str(tmp_path / "var"), "COLUMNS": "200",
           "MDCO_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}  # nothing listens: the store is enough

    def mdco(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "starter", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    shown = mdco("protocols", "show", "show-me", "--json")  # the bare clinic key works too
    assert shown.returncode == 0, shown.stderr
    _check(json.loads(shown.stdout))
    text = mdco("protocols", "show", prepared)
    assert text.returncode == 0 and "## 5. Dosing" in text.stdout and "pending_approval SHA-256" in text.stdout
    missing = mdco("protocols", "show", "nobody-here", "--json")
    assert missing.returncode == 1 and "no onboarding recorded" in missing.stderr


async def test_api_route_for_ops(engine, db_url, prepared, tmp_path):
    settings = Settings(var_dir=tmp_path, database_url=db_url, temporal_address=f"127.0.0.1:{free_port()}")
    app = create_app(client=None, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        ok = await http.get(f"/onboardings/{prepared}/protocols", headers=auth_headers(settings, "ops"))
        assert ok.status_code == 200, ok.text
        _check(ok.json())
        assert (await http.get(f"/onboardings/{prepared}/protocols")).status_code == 401
        assert (await http.get(f"/onboardings/{prepared}/protocols",
                               headers=auth_headers(settings, "sales"))).status_code == 403
        gone = await http.get("/onboardings/onboarding-nobody-here/protocols", headers=auth_headers(settings, "ops"))
        assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")
