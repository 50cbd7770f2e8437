"""The real activities against a real database, a real SMTP sink and the local e-sign server."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import ssl
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.onboarding import OnboardingActivities
from api import links
from domain.intake import Intake
from domain.messages import (
    AgreementRequest, AssessRequest, CancelRecord, EnvelopeRecord, MatchRequest, Notice, OfferRequest,
    PacketRequest, PharmacyRequest, ProtocolRequest, StartRecord,
)
from domain.roster import parse_pharmacies, parse_physicians
from starter.demo import DEMO_DIR
from starter.smtp_sink import read_mailbox, start_sink
from store import agreements, audit, onboardings, roster
from tests.esign_fixtures import free_port

pytestmark = pytest.mark.timeout(120)
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(engine, esign_server, tmp_path):
    """Activities wired to this test's database, a fresh SMTP sink and the shared e-sign server."""
    esign_settings, _ = esign_server
    port = free_port()
    settings = esign_settings.model_copy(update={"smtp_port": port, "var_dir": tmp_path / "var"})
    settings = settings.model_copy(update={"docusign_ca_cert": esign_settings.resolved_docusign_ca_cert,
                                           "docusign_private_key_path": esign_settings.resolved_docusign_private_key_path})
    sink = start_sink("127.0.0.1", port, settings.mail_dir)
    roster.upsert_physicians(engine, parse_physicians((DEMO_DIR / "physicians.csv").read_text(), "csv")[0])
    roster.upsert_pharmacies(engine, parse_pharmacies((DEMO_DIR / "pharmacies.csv").read_text(), "csv")[0])
    acts = OnboardingActivities(settings, engine)
    yield acts, settings
    sink.stop()


def demo_intake(key: str) -> Intake:
    import json

    data = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    data["clinic_key"] = key
    return Intake.model_validate(data)


def run(fn, *args):
    return ActivityEnvironment().run(fn, *args)


def run_attempt(attempt: int, fn, *args):
    """Run as Temporal's retry number ``attempt`` would."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env.run(fn, *args)


def test_stage_activities_persist_and_are_idempotent(world, engine, esign_server, unique_key):
    acts, settings = world
    wf = f"onboarding-{unique_key}"
    intake = demo_intake(unique_key)
    run(acts.record_start, StartRecord(workflow_id=wf, intake=intake, started_at=NOW))
    run(acts.record_start, StartRecord(workflow_id=wf, intake=intake, started_at=NOW))
    plan = run(acts.assess_needs, AssessRequest(workflow_id=wf, intake=intake, as_of=date(2026, 12, 1)))
    assert set(plan.states) == set(intake.states)
    assert onboardings.get_plan(engine, wf) == plan

    result = run(acts.find_candidates, MatchRequest(workflow_id=wf, intake=intake, plan=plan, top=3))
    assert len(result.candidates) == 3
    npi = result.candidates[0].npi
    offer = OfferRequest(workflow_id=wf, clinic_key=unique_key, npi=npi, sent_at=NOW, expires_at=NOW + timedelta(hours=4))
    run(acts.send_offer, offer)
    run(acts.send_offer, offer)  # a retried activity sends no second e-mail
    mails = read_mailbox(settings.mail_dir)
    assert len(mails) == 1
    [token] = re.findall(r"/a/([A-Za-z0-9_.-]+)", mails[0].get_content())  # the answer link, bound to this offer
    link = links.read(settings, token)
    assert (link.workflow_id, link.party, link.action, link.expires_at) == (wf, f"physician:{npi}", "offer",
                                                                            offer.expires_at)
    assert run(acts.reserve_physician, wf, npi).ok
    assert run(acts.reserve_physician, wf, npi).ok  # idempotent per workflow

    protocols = run(acts.prepare_protocols, ProtocolRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi))
    assert {p.service for p in protocols} == set(intake.services)
    assert len(onboardings.list_protocols(engine, wf)) == len(intake.services)
    shown = onboardings.protocols_shown(engine, wf)  # the documents rendered from build_protocol, with their content
    assert [p["sha256"] for p in shown] == [v.sha256 for v in sorted(protocols, key=lambda v: v.service.value)]
    for p in shown:
        assert p["content_matches_document"] and p["version"] == f"{p['service']}.v2"
        assert hashlib.sha256(p["document"].encode()).hexdigest() == p["sha256"]
        assert "## 5. Dosing" in p["document"] and "## 11. Sources" in p["document"]
    again = run(acts.prepare_protocols, ProtocolRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi))
    assert [v.sha256 for v in again] == [v.sha256 for v in protocols]  # deterministic: same text, same SHA-256

    selection = run(acts.select_pharmacies, PharmacyRequest(workflow_id=wf, intake=intake, plan=plan))
    assert selection.assignments and not selection.problems
    for a in selection.assignments:
        run(acts.send_prescriber_packet, PacketRequest(workflow_id=wf, clinic_key=unique_key, npi=npi, assignment=a))
    assert {a.pharmacy_id for a in onboardings.list_pharmacy_assignments(engine, wf)} == \
        {a.pharmacy_id for a in selection.assignments}

    specs = run(acts.prepare_agreements, ProtocolRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi))
    assert specs[0].agreement_kind == "medical_director"
    req = AgreementRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi, spec=specs[0])
    first = run(acts.send_agreement, req)
    again = run_attempt(2, acts.send_agreement, req)  # retried after the create succeeded: same envelope
    assert first.envelope_id == again.envelope_id

    esign_settings, base_url = esign_server
    with httpx.Client(base_url=base_url, verify=ssl.create_default_context(
            cafile=esign_settings.resolved_docusign_ca_cert)) as admin:
        admin.post(f"/admin/envelopes/{first.envelope_id}/sign").raise_for_status()
    run(acts.record_envelope, EnvelopeRecord(workflow_id=wf, envelope_id=first.envelope_id,
                                             agreement_kind="medical_director", status="completed", at=NOW))
    stored = agreements.get_agreement(engine, wf, "medical_director")
    assert stored["status"] == "completed" and len(stored["sha256"]) == 64
    assert open(stored["document_path"], "rb").read(5) == b"%PDF-"
    # the send re-run as a first attempt (a run `mdco repair` reset): it finds the completed envelope, creates
    # none, and the agreement stays completed
    rerun = run(acts.send_agreement, req)
    assert rerun.envelope_id == first.envelope_id
    with httpx.Client(base_url=base_url, verify=ssl.create_default_context(
            cafile=esign_settings.resolved_docusign_ca_cert)) as admin:
        ours = admin.get("/admin/envelopes", params={"external_id_prefix": wf}).json()["envelopes"]
    assert [e["envelopeId"] for e in ours] == [first.envelope_id]
    assert agreements.get_agreement(engine, wf, "medical_director")["status"] == "completed"

    # cancelling voids what is unsigned and releases the reserved capacity
    if len(specs) > 1:
        pending = run(acts.send_agreement, AgreementRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi,
                                                            spec=specs[1]))
        run(acts.record_cancellation, CancelRecord(workflow_id=wf, clinic_key=unique_key, reason="test", at=NOW))
        assert acts.esign.get_status(pending.envelope_id) == "voided"
    else:
        run(acts.record_cancellation, CancelRecord(workflow_id=wf, clinic_key=unique_key, reason="test", at=NOW))
    assert roster.get_reservation(engine, wf)["released_at"] is not None
    assert onboardings.get_clinic(engine, unique_key)["status"] == "cancelled"
    actions = [a["action"] for a in audit.list_audit(engine, wf)]
    assert actions.count("onboarding_started") == 1 and "onboarding_cancelled" in actions


def test_notice_to_unknown_physician_is_a_non_retryable_error(world, unique_key):
    acts, _ = world
    with pytest.raises(ApplicationError) as info:
        run(acts.notify, Notice(workflow_id=f"onboarding-{unique_key}", key="x", to_role="physician",
                                to_id="1234567893", subject="s", body="b"))
    assert info.value.non_retryable and "not on the roster" in str(info.value)
