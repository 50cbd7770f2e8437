"""The oversight verbs as ops, directors and clinics run them: real subprocesses on a real database
(SQLite and Postgres) and an SMTP sink; Temporal is not running (the store holds every fact, the CLI
warns and carries on). Bad input: a clear error, exit 2, nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from starter.smtp_sink import start_sink
from store import agreements, oversight, roster
from store.tables import now_utc
from tests.esign_fixtures import free_port
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import approved_protocols, live_clinic

pytestmark = pytest.mark.timeout(420)  # ~30 CLI subprocesses; about 3 min on a loaded 2-core machine
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(engine, db_url, tmp_path):
    port = free_port()
    sink = start_sink("127.0.0.1", port, tmp_path / "mail")
    env = {**os.environ, "MDCO_DATABASE_URL": db_url, "MDCO_SMTP_PORT": str(port), "COLUMNS": "200",
           "MDCO_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "MDCO_VAR_DIR": str(tmp_path / "var")}

    def mdco(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "starter", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    yield mdco
    sink.stop()


def test_renewals_status_reviews_events_offboard_and_packet(engine, cli, tmp_path):
    today = date.today()
    key = live_clinic(engine, 11, licence_expires=today + timedelta(days=20))
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(b"%PDF-1.4 signed bytes\n")
    agreements.upsert_agreement(engine, f"onboarding-{key}", "medical_director", "v1", document_path=str(pdf),
                                sha256="0" * 64)

    proc = cli("renewals", "--within", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    mine = [r for r in json.loads(proc.stdout) if key in r["clinics"]]
    (lic,) = [r for r in mine if r["credential"] == "license"]
    assert (lic["npi"], lic["state"], lic["days_left"], lic["step"], lic["notified_steps"]) == (
        npi_for(11), "TX", 20, 30, [])
    assert cli("renewals", "--within", "-1").returncode == 2

    sha256s = approved_protocols(engine, key, npi_for(11), now_utc() - timedelta(days=400))
    lapsed = live_clinic(engine, 13, licence_expires=today - timedelta(days=1))  # TX suspended by this sweep
    swept = cli("oversight", "sweep")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["notices"] >= 1 and json.loads(swept.stdout)["protocol_reviews_opened"] >= 1
    # Temporal is down: the suspension is in the store, the replacement is left to ops, who are told how
    assert f"{lapsed}:TX" in json.loads(swept.stdout)["suspended"] and json.loads(swept.stdout)["replacements"] == []
    assert f"no replacement placement started for {lapsed}" in swept.stderr
    # the annual protocol review: the director only, bound to the SHA-256s of the texts in force
    assert cli("oversight", "reapprove-protocols", key, "--npi", npi_for(12)).returncode == 2
    stale = cli("oversight", "reapprove-protocols", key, "--npi", npi_for(11), "--sha256", sha256s[0])
    assert stale.returncode == 2 and "changed since you read them" in stale.stderr
    assert oversight.protocol_reviews(engine, key)[0]["status"] == "open"
    again = cli("oversight", "reapprove-protocols", key, "--npi", npi_for(11))
    assert again.returncode == 0 and f"{key}-pr-1 approved" in again.stdout, again.stderr
    status = json.loads(cli("oversight", "status", f"oversight-{key}", "--json").stdout)
    assert {"workflow_id", "clinic_key", "status", "physician_npi", "suspended_states", "replacement_workflow_id",
            "chart_reviews", "adverse_events", "renewals"} <= set(status)
    assert status["status"] == "active" and status["workflow_id"] == f"oversight-{key}"
    (lic,) = [r for r in status["renewals"] if r["credential"] == "license" and r["state"] == "TX"]
    assert lic["notified_steps"] == [30]
    assert cli("oversight", "status", "no-such-clinic").returncode == 2

    # chart review: only the director; bad numbers refused; nothing changed by a refusal
    at = now_utc()
    oversight.open_review(engine, f"{key}-cr-1", key, npi_for(11), 1, 10, at, at + timedelta(days=14))
    roster_other = npi_for(12)
    refused = cli("reviews", "submit", f"{key}-cr-1", "--npi", roster_other, "--charts", "10", "--deficiencies", "0")
    assert refused.returncode == 2 and "not the medical director" in refused.stderr
    assert cli("reviews", "submit", f"{key}-cr-1", "--npi", npi_for(11), "--charts", "2",
               "--deficiencies", "3").returncode == 2
    assert cli("reviews", "submit", "nope", "--npi", npi_for(11), "--charts", "2", "--deficiencies", "0").returncode == 2
    assert oversight.get_review(engine, f"{key}-cr-1")["status"] == "open"
    ok = cli("reviews", "submit", f"{key}-cr-1", "--npi", npi_for(11), "--charts", "35", "--deficiencies", "1",
             "--notes", "one missing GFE")
    assert ok.returncode == 0, ok.stderr
    action = f"{key}-cr-1-ca"
    assert f"corrective action {action} opened" in ok.stdout
    # closing the corrective action: the director only, with what was done; nothing changed by a refusal
    assert cli("reviews", "close-action", action, "--npi", roster_other, "--notes", "x").returncode == 2
    blank = cli("reviews", "close-action", action, "--npi", npi_for(11), "--notes", " ")
    assert blank.returncode == 2 and "notes" in blank.stderr
    assert cli("reviews", "close-action", "nope-ca", "--npi", npi_for(11), "--notes", "x").returncode == 2
    assert oversight.corrective_actions(engine, key)[0]["status"] == "open"
    closed = cli("reviews", "close-action", action, "--npi", npi_for(11), "--notes", "GFE added to the chart")
    assert closed.returncode == 0, closed.stderr
    (row,) = json.loads(cli("oversight", "status", key, "--json").stdout)["chart_reviews"][0]["corrective_actions"]
    assert (row["status"], row["closed_by"], row["close_notes"]) == ("closed", npi_for(11), "GFE added to the chart")

    # adverse events
    assert cli("events", "report", key, "--severity", "deadly", "--summary", "x").returncode == 2
    reported = cli("events", "report", key, "--severity", "sentinel", "--summary", "anaphylaxis", "--json")
    assert reported.returncode == 0, reported.stderr
    event = json.loads(reported.stdout)
    assert event["status"] == "open" and event["event_id"].startswith(f"{key}-ae-")
    draft = tmp_path / "var" / "documents" / key / f"medwatch-3500-{event['event_id']}.md"
    assert Path(event["medwatch_draft"]).resolve() == draft.resolve() and "anaphylaxis" in draft.read_text()
    minor = json.loads(cli("events", "report", key, "--severity", "minor", "--summary", "bruise", "--json").stdout)
    assert minor["medwatch_draft"] is None
    assert cli("events", "ack", event["event_id"], "--npi", roster_other).returncode == 2
    assert cli("events", "ack", event["event_id"], "--npi", npi_for(11), "--notes", "seen").returncode == 0
    status = json.loads(cli("oversight", "status", key, "--json").stdout)
    assert [(r["review_id"], r["status"], r["charts_reviewed"]) for r in status["chart_reviews"]] == [
        (f"{key}-cr-1", "submitted", 35)]
    assert sorted((e["severity"], e["status"]) for e in status["adverse_events"]) == [
        ("minor", "open"), ("sentinel", "acknowledged")]

    # the audit packet
    assert cli("audit-packet", key, "--out", str(tmp_path / "packet.txt")).returncode == 2
    packet = tmp_path / "packet.zip"
    made = cli("audit-packet", key, "--out", str(packet))
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(packet) as z:
        names = set(z.namelist())
        assert {"manifest.json", "index.html", "plan.json", "protocols.json", "timeline.json", "chart_reviews.json",
                "adverse_events.json", "renewal_notices.json", "exclusion_screens.json", "agreements/signed.pdf"} <= names
        manifest = json.loads(z.read("manifest.json"))
        import hashlib
        for f in manifest["files"]:
            assert hashlib.sha256(z.read(f["path"])).hexdigest() == f["sha256"]
        assert z.read("agreements/signed.pdf") == pdf.read_bytes()
        assert json.loads(z.read("renewal_notices.json"))
        assert z.read(f"medwatch/{draft.name}") == draft.read_bytes()

    # a replacement: bad input refused from the store alone (exit 2, Temporal down here, nothing started)
    blank = cli("replace", key, "--reason", " ")
    assert blank.returncode == 2 and "reason" in blank.stderr
    assert cli("replace", "no-such-clinic", "--reason", "x").returncode == 2
    assert oversight.running_replacement(engine, key) is None

    # offboarding (no oversight workflow running here: offboarded from the CLI itself)
    assert cli("offboard", key, "--reason", "").returncode == 2
    before = roster.get_physician(engine, npi_for(11)).active_clinics
    off = cli("offboard", key, "--reason", "clinic closed")
    assert off.returncode == 0, off.stderr
    assert roster.get_physician(engine, npi_for(11)).active_clinics == before - 1
    assert json.loads(cli("oversight", "status", key, "--json").stdout)["status"] == "offboarded"
    assert cli("offboard", key, "--reason", "again").returncode == 2  # no longer under oversight
    gone = cli("replace", key, "--reason", "director leaving")
    assert gone.returncode == 2 and "not live" in gone.stderr
