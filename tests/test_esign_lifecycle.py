"""Stage 5 on the real stack and the real SDK: a signer declines (ops resend), an envelope expires
(voided and resent). Envelopes are counted on the local e-sign server itself."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest

from api.auth import auth_headers
from bench.esign_calls import esign_admin
from starter.humans import demo_intakes, drive_to_launch, seed_demo_data
from domain.intake import Intake
from domain.onboarding import Timing
from esign.sandbox import list_envelopes, sign_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def at_signers(status: dict) -> bool:
    return status.get("stage") == "agreements" and status.get("waiting_on") == "signers"


def wait_status(settings, wf: str, pred, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings)) as api:
        while time.monotonic() < deadline:
            r = api.get(f"/onboardings/{wf}")
            if r.status_code == 200 and pred(r.json()):
                return r.json()
            time.sleep(0.3)
    raise AssertionError(f"{wf}: condition not met; last {json.dumps(r.json())[:2000]}")


@pytest.fixture(scope="module")
def lifecycle_stack(stack):
    settings, env = stack
    seed_demo_data(settings)
    return settings, env


def test_declined_envelope_waits_for_ops_then_resend_completes(lifecycle_stack):
    from tests.test_integration import mdco

    settings, env = lifecycle_stack
    (intake,) = demo_intakes(1, f"d{uuid.uuid4().hex[:6]}")
    wf = f"onboarding-{intake['clinic_key']}"
    st = drive_to_launch(settings, [intake], until=at_signers, sign=False)[wf]
    declined = next(e for e in st["envelopes"] if e["agreement_kind"] == "medical_director")
    with esign_admin(settings) as admin:
        admin.post(f"/admin/envelopes/{declined['envelope_id']}/recipients/1/decline").raise_for_status()
    st = wait_status(settings, wf, lambda s: s["waiting_on"] == "ops")
    assert "declined" in st["waiting_reason"]
    assert mdco(env, "agreements", "resend", wf, "--reason", "terms clarified with the clinic").returncode == 0
    st = wait_status(settings, wf, lambda s: at_signers(s) and len(s["envelopes"]) > len(st["envelopes"]))
    sign_all(settings, wf)
    st = wait_status(settings, wf, lambda s: s["stage"] == "launched")
    on_server = list_envelopes(settings, f"{wf}:")
    md = sorted(e["status"] for e in on_server if ":medical_director:" in e["external_id"])
    assert md == ["completed", "declined"]
    current = [e for e in st["envelopes"] if e["current"]]
    assert all(e["status"] == "completed" for e in current)
    assert len(current) == len({e["agreement_kind"] for e in current})


def test_expired_envelope_is_voided_and_resent_once(lifecycle_stack):
    from api import service
    from mdco_temporal.client import connect

    settings, _ = lifecycle_stack
    (raw,) = demo_intakes(1, f"x{uuid.uuid4().hex[:6]}")
    intake = Intake.model_validate(raw)
    wf = f"onboarding-{intake.clinic_key}"
    timing = Timing(agreement_expiry=timedelta(seconds=12), reminder_every=timedelta(seconds=5))

    async def start():
        client = await connect(settings)
        return await service.start_onboarding(client, settings, intake, timing=timing)

    assert asyncio.run(start()).status == "started"
    drive_to_launch(settings, [raw], until=at_signers, sign=False)
    def stage5(s: dict) -> list[dict]:  # stage 3's protocol packet was signed before these went out
        return [e for e in s["envelopes"] if e["agreement_kind"] != "protocol_packet"]

    def all_resent(s: dict) -> bool:
        kinds = {e["agreement_kind"] for e in stage5(s)}
        return {e["agreement_kind"] for e in stage5(s) if e["attempt"] == 2} == kinds

    st = wait_status(settings, wf, all_resent, timeout=90)
    first = [e for e in stage5(st) if e["attempt"] == 1]
    assert first and all(e["status"] == "voided" and not e["current"] for e in first)
    on_server = {e["envelopeId"]: e["status"] for e in list_envelopes(settings, f"{wf}:")}
    assert all(on_server[e["envelope_id"]] == "voided" for e in first)
    wait_status(settings, wf, lambda s: at_signers(s) and all(e["attempt"] == 2 for e in stage5(s) if e["current"]))
    sign_all(settings, wf)
    st = wait_status(settings, wf, lambda s: s["stage"] == "launched")
    assert sorted(e["agreement_kind"] for e in st["envelopes"] if e["current"] and e["status"] == "completed") == \
        sorted({e["agreement_kind"] for e in st["envelopes"]})
