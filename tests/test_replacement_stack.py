"""Replacing a live clinic's medical director on the real stack: `mdco replace` starts a replacement
placement, the oversight status shows `replacing`, the humans play it to launch, and the same
oversight workflow goes on with the new director while the old one's capacity is released."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from api.auth import auth_headers
from starter.humans import act, demo_intakes, drive_to_launch, seed_demo_data
from store import agreements, roster
from store.db import make_engine
from tests.test_integration import mdco

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def play(settings, wf: str, timeout: float = 120) -> dict:
    """Play every human of ``wf`` until it is launched (the same simulated humans as the demo)."""
    deadline, done = time.monotonic() + timeout, set()
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings)) as api:
        while time.monotonic() < deadline:
            st = api.get(f"/onboardings/{wf}").json()
            if st.get("stage") == "launched":
                return st
            act(api, settings, st, done)
            time.sleep(0.3)
    raise AssertionError(f"{wf} not launched: {st.get('stage')} waiting on {st.get('waiting_on')}")


def oversight_status(env, key: str) -> dict:
    return json.loads(mdco(env, "oversight", "status", key, "--json").stdout)


def test_ops_replace_a_director_and_oversight_goes_on_with_the_new_one(stack):
    settings, env = stack
    seed_demo_data(settings)
    (intake,) = demo_intakes(1, f"r{uuid.uuid4().hex[:6]}")
    key = intake["clinic_key"]
    first = drive_to_launch(settings, [intake])[f"onboarding-{key}"]
    outgoing = first["physician_npi"]
    engine = make_engine(settings.resolved_database_url)
    held = roster.get_physician(engine, outgoing).active_clinics

    started = json.loads(mdco(env, "replace", key, "--reason", "director relocating", "--json").stdout)
    assert started == {"workflow_id": f"onboarding-{key}-r1", "status": "started"}
    again = json.loads(mdco(env, "replace", f"oversight-{key}", "--reason", "clicked twice", "--json").stdout)
    assert again == {"workflow_id": started["workflow_id"], "status": "already_running"}
    st = oversight_status(env, key)
    assert st["status"] == "replacing" and st["replacement_workflow_id"] == started["workflow_id"]

    final = play(settings, started["workflow_id"])
    assert final["physician_npi"] != outgoing
    assert all(o["npi"] != outgoing for o in final["offers"])  # the outgoing director is never offered it
    assert final["oversight_workflow_id"] == f"oversight-{key}"
    st = oversight_status(env, key)
    assert st["status"] == "active" and st["physician_npi"] == final["physician_npi"]
    assert st["replacement_workflow_id"] is None
    assert roster.get_physician(engine, outgoing).active_clinics == held - 1  # the old capacity is released
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings)) as api:
        refused = api.post(f"/clinics/no-such-clinic-{uuid.uuid4().hex[:4]}/replace", json={"reason": "x"})
    assert refused.status_code == 404


def test_a_lapse_found_by_mdco_oversight_sweep_starts_a_replacement(stack):
    """`mdco oversight sweep` does what the Schedule's run does: a lapse suspends and starts a replacement."""
    settings, env = stack
    seed_demo_data(settings)
    (intake,) = demo_intakes(1, f"l{uuid.uuid4().hex[:6]}")
    key = intake["clinic_key"]
    drive_to_launch(settings, [intake])
    engine = make_engine(settings.resolved_database_url)
    # the medical-director agreement's term ended yesterday (this clinic's alone): every state suspended
    agreements.set_renewal_date(engine, f"onboarding-{key}", "medical_director", date.today() - timedelta(days=1))
    swept = json.loads(mdco(env, "oversight", "sweep").stdout)
    (started,) = [r for r in swept["replacements"] if r["clinic_key"] == key]
    assert (started["status"], started["workflow_id"]) == ("started", f"onboarding-{key}-r1")
    st = oversight_status(env, key)
    assert st["status"] == "replacing" and sorted(st["suspended_states"]) == sorted(intake["states"])
    assert st["replacement_workflow_id"] == started["workflow_id"]
    again = json.loads(mdco(env, "oversight", "sweep").stdout)  # suspended already: no second placement
    assert [r for r in again["replacements"] if r["clinic_key"] == key] == []
    mdco(env, "cancel", started["workflow_id"], "--reason", "test over")
