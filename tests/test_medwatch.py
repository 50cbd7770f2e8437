"""A serious or sentinel adverse event gets a draft FDA MedWatch 3500 summary in the clinic's records
(var/documents/<clinic_key>/), its SHA-256 stored on the event and the file in the audit packet; a minor
one gets none. SQLite and Postgres."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import date, timedelta

import pytest

from activities.audit_packet import build_packet
from activities.medwatch import draft_medwatch
from domain import medwatch
from store import oversight
from store.common import NotFound
from store.tables import now_utc
from tests.test_oversight_sweep import live_clinic


def _report(engine, key: str, severity: str, summary: str) -> str:
    at = now_utc()
    event_id = f"{key}-ae-{severity}"
    oversight.report_event(engine, event_id, key, severity, summary, at, at + timedelta(hours=1))
    return event_id


def test_serious_and_sentinel_events_get_a_stored_draft_in_the_packet(engine, tmp_path):
    key = live_clinic(engine, 31, licence_expires=date(2031, 1, 1))
    docs = tmp_path / "documents"
    sentinel = _report(engine, key, "sentinel", "anaphylaxis after the second injection; EMS called")
    minor = _report(engine, key, "minor", "bruising at the injection site")

    assert draft_medwatch(engine, docs, minor) is None
    row = draft_medwatch(engine, docs, sentinel)
    path = docs / key / medwatch.file_name(sentinel)
    assert row["medwatch_path"] == str(path) and path.exists()
    content = path.read_bytes()
    assert row["medwatch_sha256"] == hashlib.sha256(content).hexdigest()
    stored = oversight.get_event(engine, sentinel)
    assert (stored["medwatch_path"], stored["medwatch_sha256"]) == (row["medwatch_path"], row["medwatch_sha256"])
    text = content.decode()
    assert text.startswith("# DRAFT FDA 3500") and "not submitted" in text
    assert "anaphylaxis after the second injection; EMS called" in text and key in text
    for section in ("A. Patient information", "B. Adverse event", "D. Suspect products", "G. Reporter"):
        assert f"## {section}" in text
    assert "AP123456" not in text  # nothing from the intake beyond the event and the clinic's name and director
    assert oversight.get_event(engine, minor)["medwatch_path"] is None

    # idempotent: the stored draft is kept; a missing one is written again with the same content
    assert draft_medwatch(engine, docs, sentinel)["medwatch_sha256"] == row["medwatch_sha256"]
    path.unlink()
    assert draft_medwatch(engine, docs, sentinel)["medwatch_sha256"] == row["medwatch_sha256"]
    assert path.read_bytes() == content
    with pytest.raises(NotFound):
        draft_medwatch(engine, docs, "no-such-event")

    out = tmp_path / "packet.zip"
    manifest = build_packet(engine, key, out)
    with zipfile.ZipFile(out) as z:
        name = f"medwatch/{medwatch.file_name(sentinel)}"
        assert z.read(name) == content
        assert {f["path"]: f["sha256"] for f in manifest["files"]}[name] == row["medwatch_sha256"]
        events = {e["event_id"]: e for e in json.loads(z.read("adverse_events.json"))}
        assert events[sentinel]["medwatch_file"] == name and events[sentinel]["medwatch_sha256"] == row["medwatch_sha256"]
        assert "medwatch_path" not in events[sentinel] and "medwatch_file" not in events[minor]


def test_a_minor_event_has_no_draft_form():
    event = {"event_id": "e1", "clinic_key": "c", "severity": "minor", "summary": "x"}
    with pytest.raises(ValueError):
        medwatch.render(event, {})
    serious = medwatch.sections({**event, "severity": "serious"}, {"name": "Clinic", "physician_npi": "1234567893"})
    assert serious["B. Adverse event, product problem"]["B.5 Describe event or problem"] == "x"
    assert serious["G. Reporter"]["Medical director NPI"] == "1234567893"
