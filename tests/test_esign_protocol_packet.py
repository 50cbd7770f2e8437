"""The protocol packet through the real activities, the real docusign-esign SDK and the local e-sign
server: the envelope that arrives carries the approved protocols (their SHA-256s in its custom fields
and on its cover page), the director signs first and each midlevel with an e-mail acknowledges."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
from temporalio.exceptions import ApplicationError

from activities.audit_packet import packet_files
from activities.onboarding import envelope_external_id
from domain.intake import Intake
from domain.messages import (
    AgreementRequest, AssessRequest, EnvelopeRecord, MatchRequest, ProtocolRequest, StartRecord,
)
from esign.sandbox import admin_client
from store import agreements, onboardings
from tests.test_activities import NOW, demo_intake, run, world  # noqa: F401  (world: the fixture)

pytestmark = pytest.mark.timeout(120)


def _intake(key: str) -> Intake:
    """The demo clinic with three midlevels: two with an e-mail (an NP and an RN), a PA without one."""
    data = demo_intake(key).model_dump(mode="json")
    data["midlevels"] = [
        {"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456", "email": "sam@glow.example"},
        {"name": "Rita Moss", "role": "RN", "state": "TX", "license_number": "RN778899", "email": "rita@glow.example"},
        {"name": "Paul Ng", "role": "PA", "state": "TX", "license_number": "PA445566"},
    ]
    return Intake.model_validate(data)


def test_protocol_packet_reaches_the_server_with_the_approved_texts_and_the_right_recipients(world, engine,
                                                                                              unique_key):
    acts, settings = world
    wf = f"onboarding-{unique_key}"
    intake = _intake(unique_key)
    run(acts.record_start, StartRecord(workflow_id=wf, intake=intake, started_at=NOW))
    plan = run(acts.assess_needs, AssessRequest(workflow_id=wf, intake=intake, as_of=date(2026, 12, 1)))
    npi = run(acts.find_candidates, MatchRequest(workflow_id=wf, intake=intake, plan=plan, top=1)).candidates[0].npi
    assert run(acts.reserve_physician, wf, npi).ok
    req = ProtocolRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi)
    protocols = run(acts.prepare_protocols, req)

    with pytest.raises(ApplicationError, match="protocols not approved") as refused:
        run(acts.prepare_protocol_packet, req)  # nothing goes out for signature before the approval
    assert refused.value.non_retryable
    onboardings.approve_protocols(engine, wf, npi, NOW, sha256s=[p.sha256 for p in protocols])
    spec = run(acts.prepare_protocol_packet, req)
    assert spec.agreement_kind == "protocol_packet" and spec.sha256s == sorted(p.sha256 for p in protocols)

    envelope = run(acts.send_agreement, AgreementRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi, spec=spec))
    assert envelope.agreement_kind == "protocol_packet"
    esign = acts.esign
    on_server = esign._call("envelope get", lambda: esign.envelopes.get_envelope(
        esign.account_id, envelope.envelope_id, include="recipients,custom_fields"))
    signers = sorted((s.routing_order, s.name, s.email, s.status) for s in on_server.recipients.signers)
    director = acts._physician(npi)
    assert signers == [("1", director.display_name, director.email, "sent"),  # the director signs first
                       ("2", "Rita Moss", "rita@glow.example", "created"),  # then each midlevel with an e-mail
                       ("2", "Sam Lee", "sam@glow.example", "created")]  # (in parallel); Paul Ng has none
    fields = {f.name: f.value for f in on_server.custom_fields.text_custom_fields}
    assert fields["external_id"] == envelope_external_id(wf, "protocol_packet", spec.template_version)
    assert {k: v for k, v in fields.items() if k.startswith("sha256_")} == \
        {f"sha256_{p.service.value}": p.sha256 for p in protocols}

    with admin_client(settings) as admin:
        admin.post(f"/admin/envelopes/{envelope.envelope_id}/sign").raise_for_status()
    assert esign.get_status(envelope.envelope_id) == "completed"
    run(acts.record_envelope, EnvelopeRecord(workflow_id=wf, envelope_id=envelope.envelope_id,
                                             agreement_kind="protocol_packet", status="completed", at=NOW))
    stored = agreements.get_agreement(engine, wf, "protocol_packet")
    assert stored["status"] == "completed"
    pdf = open(stored["document_path"], "rb").read()
    assert pdf.startswith(b"%PDF-") and all(p.sha256.encode() in pdf for p in protocols)
    files = packet_files(engine, unique_key)  # the audit packet carries it like a signed agreement, byte for byte
    (listed,) = [a for a in json.loads(files["agreements.json"]) if a["kind"] == "protocol_packet"]
    assert listed["status"] == "completed" and files[listed["file"]] == pdf

    # a text changed after the approval is never sent under it
    doc = onboardings.protocol_documents(engine, wf)[0]
    body = doc["body"] + "\nedited\n"
    onboardings.save_protocol(engine, wf, doc["service"], doc["template_version"], body,
                              hashlib.sha256(body.encode()).hexdigest())
    with pytest.raises(ApplicationError, match="not the approved ones"):
        run(acts.send_agreement, AgreementRequest(workflow_id=wf, intake=intake, plan=plan, npi=npi, spec=spec,
                                                  attempt=2))
