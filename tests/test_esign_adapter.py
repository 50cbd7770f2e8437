"""ESignAdapter on the real docusign-esign SDK against the local DocuSign-compatible server."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from esign.adapter import Document, ESignAdapter, ESignPermanentError, ESignRetryableError, Signer
from esign.connect import parse_connect_event, verify_signature
from tests.esign_fixtures import connect_receiver, esign_admin, esign_server  # noqa: F401 - fixtures

HTML = b"<html><body><h1>Medical Director Agreement</h1><p>Terms &amp; duties.</p><p>/sig1/ /sig2/</p></body></html>"


def _docs() -> list[Document]:
    return [Document(name="Medical Director Agreement", file_extension="html", content=HTML, document_id="1")]


def _signers() -> list[Signer]:
    return [
        Signer(name="Dana Reyes", email="dana@glow.example", routing_order=1, recipient_id="1", anchor="/sig1/"),
        Signer(name="Ana Cruz", email="ana@md.example", routing_order=2, recipient_id="2", anchor="/sig2/"),
    ]


def _ext() -> str:
    return f"onboarding-{uuid.uuid4().hex[:8]}:medical_director"


def _send(adapter: ESignAdapter, ext: str, url: str = "http://127.0.0.1:9/webhooks/docusign") -> str:
    return adapter.send_envelope(ext, "Please sign: Medical Director Agreement", _docs(), _signers(), url)


def _op_count(admin, op: str) -> int:
    stats = admin.get("/admin/stats").json()
    return sum(a["by_operation"].get(op, 0) for a in stats["accounts"].values())


def test_jwt_grant_and_userinfo(esign_server):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    adapter._ensure_token()
    assert adapter.token_requests == 1
    info = adapter.api_client.get_user_info(adapter.api_client.default_headers["Authorization"].split()[1])
    assert info.accounts[0].account_id == settings.docusign_account_id
    adapter._ensure_token()  # cached: no second grant
    assert adapter.token_requests == 1


def test_token_is_renewed_before_expiry_without_a_401(esign_server, esign_admin):
    settings, _ = esign_server
    esign_admin.post("/admin/faults", json={"token_ttl_s": 2}).raise_for_status()
    adapter = ESignAdapter(settings)
    env_id = _send(adapter, _ext())
    assert adapter.token_requests == 1
    assert adapter.token_expires_at - time.time() <= 2.1
    gets_before = _op_count(esign_admin, "GET /envelopes/{id}")
    time.sleep(2.0)  # past the renewal point (90 % of 2 s) and past expiry
    assert adapter.get_status(env_id) == "sent"
    assert adapter.token_requests == 2
    # exactly one GET: the adapter renewed proactively instead of being refused first
    assert _op_count(esign_admin, "GET /envelopes/{id}") == gets_before + 1


def test_revoked_token_gets_one_renewal_and_retry(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    env_id = _send(adapter, _ext())
    esign_admin.post("/admin/tokens/revoke").raise_for_status()
    assert adapter.get_status(env_id) == "sent"
    assert adapter.token_requests == 2


def test_send_is_idempotent_by_external_id(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    ext = _ext()
    first = _send(adapter, ext)
    second = _send(ESignAdapter(settings), ext)  # a retried activity, possibly another worker
    assert first == second
    listed = esign_admin.get("/admin/envelopes", params={"external_id_prefix": ext}).json()["envelopes"]
    assert [e["envelopeId"] for e in listed] == [first]
    assert adapter.find_by_external_id(ext) == first
    assert adapter.find_by_external_id(ext + "-other") is None


def test_void_is_idempotent_and_a_voided_envelope_is_not_reused(esign_server):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    ext = _ext()
    env_id = _send(adapter, ext)
    adapter.void(env_id, "Agreement expired; resending")
    assert adapter.get_status(env_id) == "voided"
    adapter.void(env_id, "Agreement expired; resending")  # retried activity: no error
    assert adapter.find_by_external_id(ext) is None
    resent = _send(adapter, ext)
    assert resent != env_id and adapter.get_status(resent) == "sent"


def test_sign_via_admin_delivers_signed_connect_events_in_order(esign_server, esign_admin, connect_receiver):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    ext = _ext()
    env_id = _send(adapter, ext, connect_receiver.url)
    esign_admin.post(f"/admin/envelopes/{env_id}/sign").raise_for_status()
    assert adapter.get_status(env_id) == "completed"
    deliveries = connect_receiver.wait_for(
        lambda ds: any(json.loads(b)["event"] == "envelope-completed" for _, b in ds))
    events = [json.loads(b)["event"] for _, b in deliveries]
    assert events[0] == "envelope-sent" and events[-1] == "envelope-completed"
    assert events.index("recipient-completed") < events.index("envelope-completed")
    keys = settings.hmac_keys
    assert len(keys) == 2
    for headers, body in deliveries:
        for i, key in enumerate(keys, 1):  # each key signs, each header verifies on its own
            assert verify_signature(body, {f"X-DocuSign-Signature-{i}": headers[f"X-DocuSign-Signature-{i}"]}, [key])
    final = parse_connect_event(deliveries[-1][1])
    assert (final.envelope_id, final.status, final.external_id) == (env_id, "completed", ext)
    assert [r.status for r in final.recipients] == ["completed", "completed"]


def test_combined_pdf_holds_documents_and_certificate(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    env_id = _send(adapter, _ext())
    esign_admin.post(f"/admin/envelopes/{env_id}/sign").raise_for_status()
    pdf = adapter.download_combined(env_id)
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    assert b"Medical Director Agreement" in pdf and b"Certificate of Completion" in pdf
    assert b"Terms & duties." in pdf  # HTML rendered to text
    # every xref offset points at its object header: a reader can open the file
    xref_at = int(re.search(rb"startxref\n(\d+)", pdf).group(1))
    table = pdf[xref_at:].split(b"\n")
    count = int(table[1].split()[1])
    for no in range(1, count):
        offset = int(table[2 + no].split()[0])
        assert pdf[offset:].startswith(b"%d 0 obj" % no)


def test_unknown_envelope_is_a_permanent_error(esign_server):
    settings, _ = esign_server
    with pytest.raises(ESignPermanentError) as err:
        ESignAdapter(settings).get_status(str(uuid.uuid4()))
    assert err.value.status == 404 and err.value.error_code == "ENVELOPE_DOES_NOT_EXIST"


def test_burst_limit_is_retryable_with_retry_after(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    env_id = _send(adapter, _ext())
    esign_admin.post("/admin/faults", json={"burst_limit": 2, "burst_window_s": 20}).raise_for_status()
    with pytest.raises(ESignRetryableError) as err:
        for _ in range(5):
            adapter.get_status(env_id)
    assert err.value.status == 429 and err.value.error_code == "BURST_APIINVOCATION_LIMIT_EXCEEDED"
    assert 0 < err.value.retry_after <= 20


def test_server_errors_are_retryable(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    adapter._ensure_token()
    esign_admin.post("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    with pytest.raises(ESignRetryableError) as err:
        adapter.find_by_external_id(_ext())
    assert err.value.status in (429, 500)


def test_unreachable_server_is_retryable(tmp_path, esign_server):
    settings, _ = esign_server
    dead = settings.model_copy(update={"docusign_base_path": "https://127.0.0.1:9/restapi",
                                       "docusign_oauth_host": "127.0.0.1:9"})
    with pytest.raises(ESignRetryableError):
        ESignAdapter(dead, timeout_s=2).get_status("x")


def test_adapters_with_different_cas_do_not_share_tls_settings(tmp_path, esign_server):
    settings, _ = esign_server
    other_ca = tmp_path / "other-ca.pem"
    from esign.certs import ensure_materials

    other_ca.write_bytes(ensure_materials(tmp_path / "other").ca_cert.read_bytes())
    distrusting = ESignAdapter(settings.model_copy(update={"docusign_ca_cert": str(other_ca)}))
    trusting = ESignAdapter(settings)  # created after: must not inherit the other CA (SDK config is a singleton)
    with pytest.raises(ESignPermanentError) as err:
        distrusting._ensure_token()
    assert err.value.error_code == "TLS"
    trusting._ensure_token()
    assert trusting.token_requests == 1


def test_bad_input_names_the_field_and_sends_nothing(esign_server, esign_admin):
    settings, _ = esign_server
    adapter = ESignAdapter(settings)
    before = esign_admin.get("/admin/stats").json()["envelopes"]
    with pytest.raises(ValueError, match="email"):
        Signer(name="X", email="not-an-email", routing_order=1, recipient_id="1", anchor="/s/")
    with pytest.raises(ValueError, match="file_extension"):
        Document(name="A", file_extension="docx", content=b"x", document_id="1")
    with pytest.raises(ValueError, match="external_id"):
        adapter.send_envelope("", "Subject", _docs(), _signers(), "http://127.0.0.1:9/x")
    with pytest.raises(ValueError, match="signers"):
        adapter.send_envelope(_ext(), "Subject", _docs(), [], "http://127.0.0.1:9/x")
    with pytest.raises(ValueError, match="recipient_id"):
        adapter.send_envelope(_ext(), "Subject", _docs(), _signers()[:1] * 2, "http://127.0.0.1:9/x")
    assert esign_admin.get("/admin/stats").json()["envelopes"] == before


def test_document_round_trips_through_json():
    doc = _docs()[0]
    assert Document.model_validate_json(doc.model_dump_json()) == doc
