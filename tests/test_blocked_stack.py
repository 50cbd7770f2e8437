"""A DocuSign permanent error on the real stack (real SDK, local e-sign server, SMTP sink): the
onboarding stops in ``blocked`` with the reason and an ops e-mail, and `mdco retry` resumes it."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from bench.esign_calls import set_faults
from starter.humans import Driver, Humans, demo_intakes, drive_to_launch, seed_demo_data
from starter.smtp_sink import read_mailbox
from tests.test_esign_lifecycle import wait_status
from tests.test_integration import mdco

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_permanent_esign_error_blocks_then_ops_retry_launches(stack):
    settings, env = stack
    seed_demo_data(settings)
    (intake,) = demo_intakes(1, f"b{uuid.uuid4().hex[:6]}")
    wf = f"onboarding-{intake['clinic_key']}"
    set_faults(settings, reject_envelopes=True)
    try:
        st = drive_to_launch(settings, [intake], until=lambda s: s.get("stage") == "blocked", sign=False)[wf]
    finally:
        set_faults(settings, reject_envelopes=False)
    assert st["blocked_stage"] == "protocol_setup" and st["waiting_on"] == "ops"  # the protocol packet: 1st envelope
    assert "ACCOUNT_LACKS_PERMISSIONS" in st["waiting_reason"] or "permission" in st["waiting_reason"].lower()
    deadline = time.monotonic() + 20  # the ops e-mail is an activity after the status says blocked
    while True:
        subjects = [str(m["Subject"]).strip() for m in read_mailbox(settings.mail_dir)]  # a folded subject reads back with a leading space
        if f"Blocked: {wf} stopped in protocol_setup" in subjects or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert f"Blocked: {wf} stopped in protocol_setup" in subjects
    refused = mdco(env, "protocols", "approve", wf, "--npi", st["physician_npi"], check=False)
    assert refused.returncode == 2  # nothing else moves a blocked onboarding
    assert mdco(env, "retry", wf, "--reason", "DocuSign account permission fixed").returncode == 0
    wait_status(settings, wf, lambda s: s["stage"] == "protocol_setup" and s["waiting_on"] == "signers")
    final = asyncio.run(Driver(settings, Humans()).run(workflow_ids=[wf]))[wf]  # sign, pharmacies, agreements
    assert final["stage"] == "launched" and final["blocked_stage"] == ""
    assert any("retry of protocol_setup requested by" in t["event"] for t in final["timeline"])
