"""End to end on the real embedded stack: Temporal dev server, worker, API, e-sign server, SMTP sink.

Sales and humans act through the public paths (CLI subprocesses and HTTP); the envelope is signed on
the e-sign server, whose HMAC-signed Connect webhook reaches the API; ops find the onboarding with a
visibility query on its search attributes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.auth import auth_headers
from starter.demo import DEMO_DIR
from starter.smtp_sink import read_mailbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def mdco(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "starter", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"mdco {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def intake_file(tmp_path: Path, name: str, key: str) -> Path:
    data = json.loads((DEMO_DIR / "intakes" / f"{name}.json").read_text())
    data["clinic_key"] = key
    path = tmp_path / f"{key}.json"
    path.write_text(json.dumps(data))
    return path


def poll(api: httpx.Client, wf: str, pred, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        r = api.get(f"/onboardings/{wf}")
        if r.status_code == 200:
            last = r.json()
            if pred(last):
                return last
        time.sleep(0.3)
    raise AssertionError(f"{wf}: condition not met; last status {json.dumps(last, indent=1)[:3000]}")


@pytest.fixture(scope="module")
def seeded(stack):
    settings, env = stack
    first = re.search(r"physicians: (\d+) created, (\d+) updated",
                      mdco(env, "roster", "import", str(DEMO_DIR / "physicians.csv")).stdout)
    assert first and int(first[1]) + int(first[2]) == 72  # another module may have seeded this stack first
    mdco(env, "pharmacies", "import", str(DEMO_DIR / "pharmacies.csv"))
    # re-import updates, never duplicates
    assert "0 created, 72 updated" in mdco(env, "roster", "import", str(DEMO_DIR / "physicians.csv")).stdout
    return settings, env


def test_onboarding_end_to_end_through_cli_http_esign_and_webhook(seeded, tmp_path):
    settings, env = seeded
    key = f"it-{uuid.uuid4().hex[:8]}"
    wf = f"onboarding-{key}"
    path = intake_file(tmp_path, "glow-austin", key)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(path.read_text()), "states": ["TX", "ZZ"], "care_model": "remote"}))
    rejected = mdco(env, "onboard", str(bad), "--json", check=False)
    assert rejected.returncode == 2 and "states" in rejected.stderr and "care_model" in rejected.stderr

    started = json.loads(mdco(env, "onboard", str(path), "--json").stdout)
    assert started == {"workflow_id": wf, "status": "started"}
    with httpx.Client(base_url=settings.api_base_url, timeout=15, headers=auth_headers(settings)) as api:
        again = api.post("/onboardings", json=json.loads(path.read_text()))
        assert again.status_code == 200 and again.json()["status"] == "already_running"

        st = poll(api, wf, lambda s: s["stage"] == "matching" and s["waiting_on"] == "physician")
        assert st["sla_status"] == "on_track" and any(o["status"] == "open" for o in st["offers"])
        npi = next(o["npi"] for o in st["offers"] if o["status"] == "open")
        assert "accepted" in mdco(env, "offer", "accept", key, "--npi", npi).stdout

        st = poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["protocols"])
        assert st["sla_status"] == "met" and st["physician_npi"] == npi
        assert api.post(f"/onboardings/{wf}/protocols/approve", json={"npi": "1234567893"}).status_code == 409
        assert api.post(f"/onboardings/{wf}/protocols/approve", json={"npi": npi}).status_code == 200
        st = poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["waiting_on"] == "signers")
        assert [e["agreement_kind"] for e in st["envelopes"]] == ["protocol_packet"]  # the director signs it
        assert "signed" in mdco(env, "sandbox", "sign", wf).stdout

        st = poll(api, wf, lambda s: s["stage"] == "pharmacy_coordination" and s["pharmacies"])
        for p in st["pharmacies"]:
            mdco(env, "pharmacy", "confirm", wf, "--pharmacy", p["pharmacy_id"])

        st = poll(api, wf, lambda s: s["stage"] == "agreements" and s["waiting_on"] == "signers")
        assert [e["status"] for e in st["envelopes"] if e["agreement_kind"] == "protocol_packet"] == ["completed"]
        assert all(e["status"] == "sent" for e in st["envelopes"] if e["agreement_kind"] != "protocol_packet")
        assert "signed" in mdco(env, "sandbox", "sign", wf).stdout
        st = poll(api, wf, lambda s: s["stage"] == "launched")

    assert all(e["status"] == "completed" for e in st["envelopes"])
    status = json.loads(mdco(env, "status", wf, "--json").stdout)
    for field in ("workflow_id", "stage", "sla_status", "waiting_on", "physician_npi", "offers", "pharmacies",
                  "envelopes", "timeline"):
        assert field in status
    assert status["oversight_workflow_id"] == f"oversight-{key}"

    # ops find it by its search attributes (visibility is eventually consistent)
    deadline = time.monotonic() + 20
    while True:
        listing = mdco(env, "list", "--stage", "launched").stdout
        if wf in listing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wf in listing
    assert wf not in mdco(env, "list", "--stage", "matching").stdout
    assert mdco(env, "list", "--stage", "nonsense", check=False).returncode == 2

    subjects = [m["Subject"] for m in read_mailbox(settings.mail_dir)]
    assert any(s.startswith("Medical director offer") for s in subjects)
    assert any(s.startswith("You are live") for s in subjects)
    docs = list((settings.documents_dir / wf).glob("*.pdf"))
    assert len(docs) == len(st["envelopes"])


def test_worker_sigkill_mid_onboarding_finishes_exactly_once(seeded, running_stack, tmp_path):
    """SIGKILL the worker twice mid-onboarding; a fresh worker finishes it with one accepted offer and
    exactly one envelope per agreement."""
    settings, env = seeded
    key = f"crash-{uuid.uuid4().hex[:8]}"
    wf = f"onboarding-{key}"
    mdco(env, "onboard", str(intake_file(tmp_path, "glow-austin", key)))
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings)) as api:
        st = poll(api, wf, lambda s: any(o["status"] == "open" for o in s["offers"]))
        npi = next(o["npi"] for o in st["offers"] if o["status"] == "open")
        mdco(env, "offer", "accept", wf, "--npi", npi)
        running_stack.restart("worker", signal.SIGKILL)  # killed while protocols are prepared
        st = poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["protocols"], timeout=120)
        api.post(f"/onboardings/{wf}/protocols/approve", json={"npi": npi}).raise_for_status()
        poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["waiting_on"] == "signers")
        mdco(env, "sandbox", "sign", wf)  # the protocol packet
        st = poll(api, wf, lambda s: s["stage"] == "pharmacy_coordination" and s["pharmacies"])
        for p in st["pharmacies"]:
            api.post(f"/onboardings/{wf}/pharmacies/{p['pharmacy_id']}/confirm").raise_for_status()
        time.sleep(0.2)
        running_stack.restart("worker", signal.SIGKILL)  # killed while envelopes go out
        # a task on the dead worker is retried after its 20 s start-to-close timeout
        st = poll(api, wf, lambda s: s["stage"] == "agreements" and s["waiting_on"] == "signers", timeout=120)
        mdco(env, "sandbox", "sign", wf)
        st = poll(api, wf, lambda s: s["stage"] == "launched")

    from esign.sandbox import list_envelopes
    from store import onboardings, roster
    from store.db import make_engine

    envelopes = list_envelopes(settings, f"{wf}:")
    kinds = [e["external_id"].split(":")[1] for e in envelopes]
    assert sorted(kinds) == sorted(set(kinds)) == sorted(e["agreement_kind"] for e in st["envelopes"])
    engine = make_engine(settings.resolved_database_url)
    offers = onboardings.list_offers(engine, wf)
    assert [o.npi for o in offers if o.status == "accepted"] == [npi]
    assert roster.get_reservation(engine, wf)["npi"] == npi


def test_onboarding_waiting_on_the_roster_resumes_after_a_roster_import(seeded, tmp_path):
    """Nobody is licensed in Alaska: the onboarding waits on the roster (SLA clock running); importing
    an Alaska physician signals it and an offer goes out to that physician."""
    from domain.identifiers import dea_with_check_digit, npi_with_check_digit

    settings, env = seeded
    key = f"ak-{uuid.uuid4().hex[:8]}"
    wf = f"onboarding-{key}"
    intake = {"clinic_key": key, "clinic_name": "Northern Lights Aesthetics",
              "contact": {"name": "Kim Park", "email": "kim@clinic.example", "phone": "+19075550100"},
              "states": ["AK"], "care_model": "on_site", "services": ["neurotoxins"], "monthly_patients": 80,
              "locations": [{"state": "AK", "city": "Anchorage", "zip": "99501"}], "midlevels": [],
              "requested_start": "2026-12-15"}
    path = tmp_path / f"{key}.json"
    path.write_text(json.dumps(intake))
    mdco(env, "onboard", str(path))
    with httpx.Client(base_url=settings.api_base_url, timeout=15, headers=auth_headers(settings)) as api:
        st = poll(api, wf, lambda s: s["waiting_on"] == "roster")
        assert st["stage"] == "matching" and "no eligible physician" in st["waiting_reason"]
        npi = npi_with_check_digit(f"{uuid.uuid4().int % 10**9:09d}")
        dea = dea_with_check_digit("AF", "123456")
        roster = tmp_path / "alaska.csv"
        roster.write_text(
            (DEMO_DIR / "physicians.csv").read_text().splitlines()[0] + "\n"
            f"{npi},Ida,Frost,DO,ida.frost@md.example,+19075550111,AK,AK:AK1234:2029-01-31,AK:{dea}:2028-06-30,"
            "neurotoxins;dermal_fillers,4,0,2028-12-31,family_medicine,false,\n")
        imported = mdco(env, "roster", "import", str(roster)).stdout
        assert "1 created" in imported and f"signalled {wf}" in imported
        st = poll(api, wf, lambda s: any(o["npi"] == npi and o["status"] == "open" for o in s["offers"]))
        assert st["waiting_on"] == "physician"
        assert api.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"}).status_code == 200
