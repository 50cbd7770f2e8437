"""The local DocuSign-compatible server over real HTTPS: OAuth and REST error shapes, signing,
Connect retries and fault knobs, the sandbox helper, and state surviving a restart."""

from __future__ import annotations

import json
import ssl
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from esign import sandbox
from esign.adapter import Document, ESignAdapter, Signer
from esign.connect import verify_signature
from tests.esign_fixtures import (  # noqa: F401 - fixtures
    connect_receiver,
    esign_admin,
    esign_server,
    esign_settings,
    running_esign_server,
)

DOCS = [Document(name="Collaborative Practice Agreement TX", file_extension="html",
                 content=b"<p>Agreement</p><p>/s1/ /s2/</p>", document_id="1")]
SIGNERS = [Signer(name="Sam Lee", email="sam@glow.example", routing_order=1, recipient_id="1", anchor="/s1/"),
           Signer(name="Ana Cruz", email="ana@md.example", routing_order=2, recipient_id="2", anchor="/s2/")]


def _send(settings, ext: str, url: str = "http://127.0.0.1:9/hook") -> str:
    adapter = ESignAdapter(settings)
    try:
        return adapter.send_envelope(ext, "Please sign", DOCS, SIGNERS, url)
    finally:
        adapter.close()


def _ctx(settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.resolved_docusign_ca_cert)


def _rest(settings) -> httpx.Client:
    adapter = ESignAdapter(settings)
    adapter._ensure_token()
    auth = adapter.api_client.default_headers["Authorization"]
    adapter.close()
    return httpx.Client(base_url=f"{settings.resolved_docusign_base_path}/v2.1/accounts/{settings.docusign_account_id}",
                        headers={"Authorization": auth}, timeout=10,
                        verify=_ctx(settings))


def _assertion(settings, key_pem: bytes, **claims) -> str:
    now = int(time.time())
    body = {"iss": settings.docusign_integration_key, "sub": settings.docusign_user_id,
            "aud": settings.resolved_docusign_oauth_host, "iat": now, "exp": now + 600,
            "scope": "signature impersonation", **claims}
    return jwt.encode(body, key_pem, algorithm="RS256")


@pytest.mark.parametrize(
    ("case", "error", "description"),
    [
        ("foreign_key", "invalid_grant", "no_valid_keys_or_signatures"),
        ("wrong_user", "invalid_grant", "user_not_found"),
        ("wrong_issuer", "invalid_grant", "issuer_not_found"),
        ("expired", "invalid_grant", "expired_grant"),
        ("bad_grant_type", "unsupported_grant_type", None),
    ],
)
def test_oauth_rejects_bad_assertions(esign_server, case, error, description):
    settings, base_url = esign_server
    key = open(settings.resolved_docusign_private_key_path, "rb").read()
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    if case == "foreign_key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        assertion = _assertion(settings, key)
    elif case == "wrong_user":
        assertion = _assertion(settings, key, sub="someone-else")
    elif case == "wrong_issuer":
        assertion = _assertion(settings, key, iss="unknown-integration-key")
    elif case == "expired":
        assertion = _assertion(settings, key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    else:
        assertion, grant = _assertion(settings, key), "password"
    response = httpx.post(f"{base_url}/oauth/token", data={"grant_type": grant, "assertion": assertion},
                          verify=_ctx(settings))
    assert response.status_code == 400
    assert response.json()["error"] == error
    if description:
        assert response.json()["error_description"] == description


def test_rest_errors_have_docusign_shapes_and_rate_headers(esign_server):
    settings, _ = esign_server
    with _rest(settings) as rest:
        r1 = rest.post("/envelopes", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r1.status_code == 400 and r1.json()["errorCode"] == "INVALID_REQUEST_BODY"
        r2 = rest.post("/envelopes", json={"emailSubject": "x", "status": "sent",
                                           "recipients": {"signers": [{"email": "a@b.example", "name": "A",
                                                                       "recipientId": "1"}]}})
        assert r2.status_code == 400 and "'documents'" in r2.json()["message"]
        r3 = rest.get("/envelopes")
        assert r3.status_code == 400 and r3.json()["errorCode"] == "INVALID_REQUEST_PARAMETER"
        assert "from_date" in r3.json()["message"]
        assert int(r3.headers["X-RateLimit-Remaining"]) < int(r1.headers["X-RateLimit-Remaining"])
        assert int(r3.headers["X-RateLimit-Reset"]) > time.time()
        r4 = rest.put(f"/envelopes/{uuid.uuid4()}", json={"status": "voided", "voidedReason": "x"})
        assert r4.status_code == 404 and r4.json()["errorCode"] == "ENVELOPE_DOES_NOT_EXIST"
    anonymous = httpx.get(f"{settings.resolved_docusign_base_path}/v2.1/accounts/{settings.docusign_account_id}/envelopes",
                          verify=_ctx(settings))
    assert anonymous.status_code == 401 and anonymous.json()["errorCode"] == "AUTHORIZATION_INVALID_TOKEN"


def test_recipient_view_link_signs_that_recipient_in_routing_order(esign_server, esign_admin):
    settings, _ = esign_server
    env_id = _send(settings, f"wf-{uuid.uuid4().hex[:6]}:cpa")
    with _rest(settings) as rest:
        view = {"returnUrl": "https://clinic.example/done", "authenticationMethod": "none"}
        early = rest.post(f"/envelopes/{env_id}/views/recipient", json={**view, "recipientId": "2"}).json()["url"]
        early_open = httpx.get(early, verify=_ctx(settings))
        assert early_open.status_code == 409  # signer 2 must wait for signer 1
        url = rest.post(f"/envelopes/{env_id}/views/recipient",
                        json={**view, "email": "sam@glow.example", "userName": "Sam Lee"}).json()["url"]
        opened = httpx.get(url, verify=_ctx(settings))
        assert opened.status_code == 303 and "event=signing_complete" in opened.headers["location"]
        signers = rest.get(f"/envelopes/{env_id}/recipients").json()["signers"]
        assert [s["status"] for s in signers] == ["completed", "sent"]
        assert rest.get(f"/envelopes/{env_id}").json()["status"] == "delivered"
        assert httpx.get(url, verify=_ctx(settings)).status_code == 404  # one-time link


def test_connect_retries_until_acknowledged(esign_server, esign_admin, connect_receiver):
    settings, _ = esign_server
    connect_receiver.fail_first = 2
    env_id = _send(settings, f"wf-{uuid.uuid4().hex[:6]}:md", connect_receiver.url)
    first = connect_receiver.wait_for(lambda ds: len(ds) >= 1)[0]
    payload = json.loads(first[1])
    assert payload["event"] == "envelope-sent" and payload["retryCount"] == 2
    deadline = time.monotonic() + 10  # the server records the 200 just after the receiver answered
    while True:
        attempts = esign_admin.get("/admin/connect/attempts", params={"envelope_id": env_id}).json()["attempts"]
        sent_attempts = [a for a in attempts if a["event"] == "envelope-sent"]
        if len(sent_attempts) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [a["status"] for a in sent_attempts] == [500, 500, 200]


def test_fault_knobs_duplicate_reorder_and_wrong_signature(esign_server, esign_admin, connect_receiver):
    settings, _ = esign_server
    esign_admin.post("/admin/faults", json={"duplicate_deliveries": True, "out_of_order": True,
                                            "wrong_signature": True}).raise_for_status()
    env_id = _send(settings, f"wf-{uuid.uuid4().hex[:6]}:md", connect_receiver.url)
    esign_admin.post(f"/admin/envelopes/{env_id}/sign").raise_for_status()
    deliveries = connect_receiver.wait_for(
        lambda ds: sum(json.loads(b)["event"] == "envelope-delivered" for _, b in ds) == 2)
    events = [json.loads(b)["event"] for _, b in deliveries]
    assert events.count("envelope-completed") == 2
    assert events.index("envelope-completed") < events.index("envelope-delivered")  # terminal overtook
    assert not any(verify_signature(b, h, settings.hmac_keys) for h, b in deliveries)
    bad = esign_admin.post("/admin/faults", json={"error_rate": 2})
    assert bad.status_code == 400 and "error_rate" in bad.json()["message"]
    assert esign_admin.post("/admin/faults", json={"nonsense": 1}).status_code == 400


def test_decline_via_admin(esign_server, esign_admin, connect_receiver):
    settings, _ = esign_server
    env_id = _send(settings, f"wf-{uuid.uuid4().hex[:6]}:md", connect_receiver.url)
    r = esign_admin.post(f"/admin/envelopes/{env_id}/recipients/1/decline", json={"reason": "terms"})
    assert r.json()["status"] == "declined"
    deliveries = connect_receiver.wait_for(
        lambda ds: any(json.loads(b)["event"] == "envelope-declined" for _, b in ds))
    assert json.loads(deliveries[-1][1])["data"]["envelopeSummary"]["status"] == "declined"
    assert esign_admin.post(f"/admin/envelopes/{env_id}/sign").status_code == 400


def test_sandbox_sign_all_signs_only_that_workflows_open_envelopes(esign_server, esign_admin):
    settings, _ = esign_server
    wf = f"onboarding-{uuid.uuid4().hex[:6]}"
    mine = [_send(settings, f"{wf}:medical_director"), _send(settings, f"{wf}:cpa_TX")]
    other = _send(settings, f"{wf}x:medical_director")  # prefix of a different workflow id
    assert sorted(sandbox.sign_all(settings, wf)) == sorted(mine)
    statuses = {e["envelopeId"]: e["status"] for e in esign_admin.get("/admin/envelopes").json()["envelopes"]}
    assert [statuses[m] for m in mine] == ["completed", "completed"] and statuses[other] == "sent"
    assert sandbox.sign_all(settings, wf) == []
    with pytest.raises(ValueError, match="workflow_id"):
        sandbox.sign_all(settings, " ")


def test_api_calls_are_counted_per_account(esign_server, esign_admin):
    settings, _ = esign_server
    esign_admin.post("/admin/stats/reset").raise_for_status()
    _send(settings, f"wf-{uuid.uuid4().hex[:6]}:md")
    ops = esign_admin.get("/admin/stats").json()["accounts"][settings.docusign_account_id]["by_operation"]
    assert ops == {"GET /envelopes": 1, "POST /envelopes": 1}


def test_envelopes_survive_a_restart(tmp_path):
    settings = esign_settings(tmp_path)
    with running_esign_server(settings):
        adapter = ESignAdapter(settings)
        env_id = adapter.send_envelope("wf-restart:md", "Please sign", DOCS, SIGNERS, "http://127.0.0.1:9/hook")
        adapter.close()
    assert (settings.esign_dir / "state.json").exists()
    with running_esign_server(settings):
        # the old token died with the process: one 401, one renewal, then the stored envelope
        assert adapter.get_status(env_id) == "sent"
        assert adapter.token_requests == 2
        assert adapter.find_by_external_id("wf-restart:md") == env_id
        adapter.close()
