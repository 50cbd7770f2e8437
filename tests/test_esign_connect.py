"""Connect webhook verification and parsing (no server needed)."""

from __future__ import annotations

import json
from datetime import timezone

import pytest

from esign.connect import compute_signature, parse_connect_event, signature_headers, verify_signature

KEYS = ["key-one", "key-two"]


def _body(**overrides) -> bytes:
    doc = {
        "event": "envelope-completed",
        "apiVersion": "v2.1",
        "uri": "/restapi/v2.1/accounts/acc/envelopes/env-1",
        "retryCount": 0,
        "configurationId": "10000001",
        "generatedDateTime": "2026-11-28T10:15:30.1234567Z",
        "data": {
            "accountId": "acc",
            "envelopeId": "env-1",
            "envelopeSummary": {
                "status": "completed",
                "customFields": {"textCustomFields": [{"name": "external_id", "value": "onboarding-glow:md"}]},
                "recipients": {"signers": [
                    {"recipientId": "1", "routingOrder": "1", "status": "completed",
                     "name": "Dana Reyes", "email": "dana@glow.example"},
                    {"recipientId": "2", "routingOrder": "2", "status": "completed",
                     "name": "Ana Cruz", "email": "ana@md.example"},
                ]},
            },
        },
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_signature_with_each_key_is_accepted():
    body = _body()
    headers = signature_headers(body, KEYS)
    assert set(headers) == {"X-DocuSign-Signature-1", "X-DocuSign-Signature-2"}
    for i, key in enumerate(KEYS, 1):
        only_one = {f"X-DocuSign-Signature-{i}": headers[f"X-DocuSign-Signature-{i}"]}
        assert verify_signature(body, only_one, [key])
        assert verify_signature(body, only_one, KEYS)  # rotation: any configured key may match


def test_header_names_are_case_insensitive():
    body = _body()
    assert verify_signature(body, {"x-docusign-signature-1": compute_signature(body, "key-two")}, KEYS)


def test_tampered_body_wrong_key_and_missing_header_are_rejected():
    body = _body()
    headers = signature_headers(body, KEYS)
    assert not verify_signature(body.replace(b"completed", b"declined"), headers, KEYS)
    assert not verify_signature(body, headers, ["some-other-key"])
    assert not verify_signature(body, {"Content-Type": "application/json"}, KEYS)
    assert not verify_signature(body, headers, [])
    assert not verify_signature(body, {"X-DocuSign-Signature-1": "not base64 ☃"}, KEYS)


def test_parse_connect_event_reduces_to_status_without_pii():
    event = parse_connect_event(_body())
    assert event.envelope_id == "env-1"
    assert event.status == "completed"
    assert event.event == "envelope-completed"
    assert event.external_id == "onboarding-glow:md"
    assert event.generated_at.tzinfo is not None and event.generated_at.utcoffset().total_seconds() == 0
    assert event.generated_at.tzinfo == timezone.utc
    assert (event.generated_at.hour, event.generated_at.microsecond) == (10, 123456)
    assert [(r.recipient_id, r.routing_order, r.status) for r in event.recipients] == [
        ("1", 1, "completed"), ("2", 2, "completed")]
    dumped = event.model_dump_json()
    assert "dana" not in dumped.lower() and "@" not in dumped


def test_parse_accepts_offset_timestamps_and_missing_custom_fields():
    body = json.loads(_body(generatedDateTime="2026-11-28T05:15:30-05:00"))
    del body["data"]["envelopeSummary"]["customFields"]
    event = parse_connect_event(json.dumps(body).encode())
    assert event.external_id is None
    assert event.generated_at.hour == 10 and event.generated_at.tzinfo == timezone.utc


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (_body(event=""), "'event'"),
        (_body(data={"envelopeSummary": {"status": "sent"}}), "'data.envelopeId'"),
        (_body(data={"envelopeId": "e", "envelopeSummary": {}}), "'data.envelopeSummary.status'"),
        (_body(generatedDateTime="yesterday"), "'generatedDateTime'"),
    ],
)
def test_malformed_bodies_raise_value_error_naming_the_field(body, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        parse_connect_event(body)
