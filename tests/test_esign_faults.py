"""E-sign faults on the real embedded stack: 20 % injected 429/500 on DocuSign REST calls, and
Connect deliveries signed with a key nobody configured.

Faults are set through the local e-sign server's admin API and always reset afterwards, so they
never leak into other tests sharing the session's stack.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import httpx
import pytest

from api.auth import auth_headers
from bench.esign_calls import NO_FAULTS, esign_admin, set_faults
from starter.humans import demo_intakes, drive_to_launch, seed_demo_data
from esign.sandbox import list_envelopes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
FAULT_SEED = 7  # random.Random(7): 3 of its first 10 draws are < 0.2, so faults surely bite


@pytest.fixture(scope="module")
def seeded_stack(stack):
    settings, _ = stack
    seed_demo_data(settings)  # upserts: harmless if another module seeded the same stack
    return settings


@pytest.fixture
def faults(seeded_stack):
    """``faults(**knobs)`` sets e-sign fault knobs for this test; all are reset afterwards, always."""
    settings = seeded_stack
    yield lambda **knobs: set_faults(settings, **knobs)
    set_faults(settings, **NO_FAULTS)


def _injected_faults(settings) -> int:
    with esign_admin(settings) as admin:
        return admin.get("/admin/stats").json()["injected_faults"]


def test_twenty_percent_429_500_still_one_completed_envelope_per_agreement(seeded_stack, faults):
    from store import agreements
    from store.db import make_engine

    settings = seeded_stack
    intakes = demo_intakes(4, f"f{uuid.uuid4().hex[:6]}")  # 3 + 2 + 2 + 3 agreements
    before = _injected_faults(settings)
    assert faults(error_rate=0.2, fault_seed=FAULT_SEED)["error_rate"] == 0.2
    try:
        statuses = drive_to_launch(settings, intakes, timeout=240)
    finally:
        faults(**NO_FAULTS)
    injected = _injected_faults(settings) - before

    engine = make_engine(settings.resolved_database_url)
    checked = 0
    try:
        for wf, st in statuses.items():
            assert st["stage"] == "launched"
            kinds = sorted(e["agreement_kind"] for e in st["envelopes"])
            assert kinds and all(e["status"] == "completed" for e in st["envelopes"])
            envelopes = list_envelopes(settings, f"{wf}:")
            # error faults never void or resend: exactly one envelope per kind, all completed
            assert sorted(e["external_id"].split(":")[1] for e in envelopes) == kinds, envelopes
            assert {e["status"] for e in envelopes} == {"completed"}, envelopes
            for kind in kinds:
                stored = agreements.get_agreement(engine, wf, kind)
                assert stored["status"] == "completed", (wf, kind, stored["status"])
                with open(stored["document_path"], "rb") as pdf:
                    assert hashlib.sha256(pdf.read()).hexdigest() == stored["sha256"]
            checked += len(kinds)
    finally:
        engine.dispose()
    # the faults really bit (the seeded sequence makes this certain, not likely)
    assert injected >= 3, (injected, checked)


def _agreements(status: dict) -> list[dict]:
    """Stage 5's envelopes (stage 3's protocol packet, signed by then, left out)."""
    return [e for e in status["envelopes"] if e["agreement_kind"] != "protocol_packet"]


def _agreements_waiting(status: dict) -> bool:
    return (status.get("stage") == "agreements" and status.get("waiting_on") == "signers"
            and bool(_agreements(status)) and all(e["status"] == "sent" for e in _agreements(status)))


def _settled_attempts(admin: httpx.Client, envelope_ids: list[str], timeout: float = 20.0) -> dict[str, list[dict]]:
    """Connect attempts per envelope, in order, once the server has nothing left to deliver."""
    deadline = time.monotonic() + timeout
    while admin.get("/health").json()["pending_deliveries"]:
        assert time.monotonic() < deadline, "Connect deliveries still pending"
        time.sleep(0.2)
    return {eid: admin.get("/admin/connect/attempts", params={"envelope_id": eid}).json()["attempts"]
            for eid in envelope_ids}


def _since(now: dict[str, list[dict]], before: dict[str, list[dict]]) -> list[dict]:
    return [a for eid, attempts in now.items() for a in attempts[len(before[eid]):]]


def test_badly_signed_connect_is_refused_and_changes_nothing_until_a_good_delivery(seeded_stack, faults):
    settings = seeded_stack
    [intake] = demo_intakes(1, f"w{uuid.uuid4().hex[:6]}")
    [(wf, st)] = drive_to_launch(settings, [intake], timeout=120, until=_agreements_waiting, sign=False).items()
    envelope_ids = [e["envelope_id"] for e in _agreements(st)]

    with esign_admin(settings) as admin:
        seen = _settled_attempts(admin, envelope_ids)  # the envelope-sent deliveries, accepted
        faults(wrong_signature=True)
        for eid in envelope_ids:  # the clinic contact signs: recipient and envelope events go out
            admin.post(f"/admin/envelopes/{eid}/recipients/1/sign").raise_for_status()
        after_bad = _settled_attempts(admin, envelope_ids)
        bad = _since(after_bad, seen)
        assert bad and {a["status"] for a in bad} == {401}, bad  # every try refused, retries included
        assert {a["event"] for a in bad} >= {"envelope-delivered", "recipient-completed"}
        with httpx.Client(base_url=settings.api_base_url, timeout=15, headers=auth_headers(settings)) as api:
            unchanged = api.get(f"/onboardings/{wf}").json()
            assert unchanged["stage"] == "agreements"
            assert unchanged["envelopes"] == st["envelopes"]  # still "sent": nothing happened

            faults(wrong_signature=False)
            for eid in envelope_ids:  # the medical director signs: correctly signed deliveries
                admin.post(f"/admin/envelopes/{eid}/recipients/2/sign").raise_for_status()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = api.get(f"/onboardings/{wf}").json()
                if done["stage"] == "launched":
                    break
                time.sleep(0.3)
        good = _since(_settled_attempts(admin, envelope_ids), after_bad)
    assert done["stage"] == "launched", done
    assert all(e["status"] == "completed" for e in done["envelopes"])
    assert good and {a["status"] for a in good} == {200}
    envelopes = list_envelopes(settings, f"{wf}:")
    assert sorted(e["envelopeId"] for e in envelopes if ":protocol_packet:" not in e["external_id"]) == \
        sorted(envelope_ids)
    assert {e["status"] for e in envelopes} == {"completed"}
