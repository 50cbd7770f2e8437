"""Tokens and roles: every route but the three public ones needs a valid bearer JWT with its role;
local issuer (key under var/, 0600, ``mdco token issue``) and any OIDC provider (JWKS, rotation)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.routing import APIRoute

from api import auth
from api.app import create_app
from config import Settings
from starter.stack import PROJECT_ROOT
from tests.esign_fixtures import free_port

pytestmark = pytest.mark.timeout(60)

SAMPLE_PARAMS = {"workflow_id": "onboarding-glow-austin", "npi": "1234567893", "pharmacy_id": "austin-rx",
                 "token": "x" * 40, "clinic_key": "glow-austin"}
PUBLIC = {("GET", "/healthz"), ("POST", "/webhooks/docusign"), ("GET", "/a/{token}"), ("POST", "/a/{token}")}


def every_route(app) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, the docs included."""
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                out.append((method, route.path))
    return out


def concrete(path: str) -> str:
    return path.format(**SAMPLE_PARAMS)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(var_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}")


@pytest.fixture
async def http(settings):
    app = create_app(client=None, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def expired_token(settings: Settings) -> str:
    now = int(time.time())
    return jwt.encode({"iss": auth.LOCAL_ISSUER, "aud": auth.DEFAULT_AUDIENCE, "sub": "late", "roles": ["ops"],
                       "iat": now - 7200, "exp": now - 3600}, auth.local_signing_key(settings), algorithm="ES256")


async def test_every_non_public_route_answers_401_without_a_valid_token(http, settings):
    routes = every_route(http.app)
    assert PUBLIC <= set(routes)
    guarded = [r for r in routes if r not in PUBLIC]
    assert {("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/metrics"), ("POST", "/onboardings"),
            ("POST", "/onboardings/{workflow_id}/offers/{npi}/accept")} <= set(guarded)
    foreign = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({"iss": auth.LOCAL_ISSUER, "aud": auth.DEFAULT_AUDIENCE, "sub": "mallory", "roles": ["ops"],
                         "exp": int(time.time()) + 600}, foreign, algorithm="ES256")
    wrong_audience = jwt.encode({"iss": auth.LOCAL_ISSUER, "aud": "someone-else", "sub": "a", "roles": ["ops"],
                                 "exp": int(time.time()) + 600}, auth.local_signing_key(settings), algorithm="ES256")
    bearer = {"garbage": "x.y.z", "forged": forged, "expired": expired_token(settings), "wrong audience": wrong_audience}
    bad = {"none": {}, "not bearer": {"Authorization": "Basic b3BzOm9wcw=="},
           **{why: {"Authorization": f"Bearer {token}"} for why, token in bearer.items()}}
    for method, path in guarded:
        for why, headers in bad.items():
            r = await http.request(method, concrete(path), headers=headers, json={})
            assert r.status_code == 401, (method, path, why, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # unknown paths do not tell an anonymous caller what exists
    assert (await http.get("/nope")).status_code == 401


async def test_sales_may_start_and_read_only(http, settings):
    sales = auth.auth_headers(settings, "sales", "sam")
    ops_only = [r for r in every_route(http.app) if r not in PUBLIC and r not in auth.SALES_ROUTES]
    for method, path in ops_only:
        r = await http.request(method, concrete(path), headers=sales, json={})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    for method, path in auth.SALES_ROUTES:  # past the check: Temporal is not running here, so 503
        r = await http.request(method, concrete(path), headers=sales, json={"clinic_key": "x"})
        assert r.status_code not in (401, 403), (method, path, r.text)
    no_role = jwt.encode({"iss": auth.LOCAL_ISSUER, "aud": auth.DEFAULT_AUDIENCE, "sub": "nobody",
                          "exp": int(time.time()) + 600}, auth.local_signing_key(settings), algorithm="ES256")
    assert (await http.get("/onboardings", headers={"Authorization": f"Bearer {no_role}"})).status_code == 403


async def test_ops_reach_docs_metrics_and_the_openapi_document_names_roles(http, settings):
    ops = auth.auth_headers(settings, "ops", "olga")
    assert (await http.get("/docs", headers=ops)).status_code == 200
    assert (await http.get("/healthz")).status_code == 200
    spec = (await http.get("/openapi.json", headers=ops)).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["paths"]["/a/{token}"]["get"]["security"] == []
    cancel = spec["paths"]["/onboardings/{workflow_id}/cancel"]["post"]
    assert cancel["security"] == [{"bearer": []}] and "Role: `ops`" in cancel["description"]
    assert {"401", "403"} <= set(cancel["responses"])
    assert "Role: `sales`" in spec["paths"]["/onboardings"]["post"]["description"]


def test_local_issuer_key_is_private_and_made_once_under_races(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda i: auth.issue_token(settings, "ops", f"u{i}"), range(16)))
    path = auth.local_key_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["issuer.pem"]  # no temporary file left behind
    verifier = auth.Verifier(settings)
    assert {verifier.verify(t).actor for t in tokens} == {f"ops:u{i}" for i in range(16)}


def test_durations_and_refusals():
    assert auth.parse_duration("90s") == timedelta(seconds=90)
    assert auth.parse_duration("8h") == timedelta(hours=8)
    assert auth.parse_duration("7d") == timedelta(days=7)
    for bad in ("", "0s", "31d", "1w", "-5m"):
        with pytest.raises(ValueError):
            auth.parse_duration(bad)


def mdco(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "starter", *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT_ROOT, timeout=60)


def test_mdco_token_issue_prints_a_token_the_api_accepts(tmp_path):
    env = {**os.environ, "MDCO_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(PROJECT_ROOT)}
    done = mdco(env, "token", "issue", "--role", "sales", "--subject", "sam", "--ttl", "30m")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    principal = auth.Verifier(Settings(var_dir=tmp_path / "var")).verify(token)
    assert principal.actor == "sales:sam" and principal.roles == {"sales"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 1790 <= claims["exp"] - claims["iat"] <= 1800
    assert mdco(env, "token", "issue", "--role", "admin").returncode == 2
    assert mdco(env, "token", "issue", "--role", "ops", "--ttl", "90d").returncode == 2
    oidc = {**env, "MDCO_AUTH_JWKS_URL": "http://127.0.0.1:9/jwks", "MDCO_AUTH_ISSUER": "https://idp.example"}
    refused = mdco(oidc, "token", "issue", "--role", "ops")
    assert refused.returncode == 2 and "OIDC" in refused.stderr


# ---------------------------------------------------------------- production: any OIDC provider
class Jwks:
    """A provider's JWKS endpoint on a free port; ``keys`` can be swapped (rotation)."""

    def __init__(self):
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.fetches += 1
                body = json.dumps({"keys": [owner.jwk(kid, key) for kid, key in owner.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {**data, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, **claims) -> str:
        base = {"iss": "https://idp.example/realms/mdco", "aud": "mdco-api", "sub": "olga@example.com",
                "exp": int(time.time()) + 600, "realm_access": {"roles": ["ops", "offline_access"]}}
        return jwt.encode({**base, **claims}, self.keys[kid], algorithm="RS256", headers={"kid": kid})


def hs256_by_hand(header: dict, claims: dict, key: bytes) -> str:
    """PyJWT refuses to HMAC with a public key, so an attacker's token is made by hand."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def provider():
    jwks = Jwks()
    yield jwks
    jwks.server.shutdown()
    jwks.server.server_close()


async def test_oidc_tokens_are_verified_against_the_providers_rotating_keys(provider, tmp_path, monkeypatch):
    monkeypatch.setattr(auth.Verifier, "JWKS_REFETCH_COOLDOWN_S", 0)
    provider.keys["k1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = Settings(var_dir=tmp_path, auth_jwks_url=provider.url, auth_issuer="https://idp.example/realms/mdco",
                        auth_audience="mdco-api", auth_roles_claim="realm_access.roles")
    app = create_app(client=None, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        ok = {"Authorization": f"Bearer {provider.token('k1')}"}
        assert (await http.get("/openapi.json", headers=ok)).status_code == 200
        assert (await http.get("/openapi.json", headers=ok)).status_code == 200
        assert provider.fetches == 1  # cached
        # the provider rotates: a new key with a new kid; the old one is gone
        provider.keys = {"k2": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        rotated = {"Authorization": f"Bearer {provider.token('k2')}"}
        assert (await http.get("/openapi.json", headers=rotated)).status_code == 200
        assert provider.fetches == 2
        for claims in ({"iss": "https://evil.example"}, {"aud": "other"}, {"exp": int(time.time()) - 3600}):
            r = await http.get("/openapi.json", headers={"Authorization": f"Bearer {provider.token('k2', **claims)}"})
            assert r.status_code == 401, claims
        sales = provider.token("k2", realm_access={"roles": ["sales"]})
        assert (await http.get("/metrics", headers={"Authorization": f"Bearer {sales}"})).status_code == 403
        # a local-issuer token means nothing once an OIDC provider is configured
        local = auth.issue_token(Settings(var_dir=tmp_path / "other"), "ops", "x")
        assert (await http.get("/openapi.json", headers={"Authorization": f"Bearer {local}"})).status_code == 401
        # HS256 signed with the public key (algorithm confusion) is refused
        pub = jwt.algorithms.RSAAlgorithm.to_jwk(provider.keys["k2"].public_key()).encode()
        confused = hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "k2"},
                                 {"iss": settings.auth_issuer, "aud": "mdco-api", "sub": "m",
                                  "exp": int(time.time()) + 60, "realm_access": {"roles": ["ops"]}}, pub)
        assert (await http.get("/openapi.json", headers={"Authorization": f"Bearer {confused}"})).status_code == 401


# ---------------------------------------------------------------- one error model: RFC 9457 problem details
def assert_problem(r: httpx.Response, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["type"] == f"urn:mdco:problem:{kind}" and body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_every_error_is_a_problem_document(http, settings):
    ops = auth.auth_headers(settings, "ops", "olga")
    assert_problem(await http.get("/onboardings"), 401, "unauthorized")
    assert_problem(await http.get("/metrics", headers=auth.auth_headers(settings, "sales")), 403, "forbidden")
    assert_problem(await http.get("/nope", headers=ops), 404, "not-found")
    assert_problem(await http.delete("/onboardings", headers=ops), 405, "method-not-allowed")
    big = await http.post("/onboardings", headers=ops, content=b"x" * (1024 * 1024 + 1))
    assert_problem(big, 413, "body-too-large")
    key = assert_problem(await http.post("/onboardings", headers={**ops, "Idempotency-Key": "no spaces"}, json={}),
                         422, "invalid")
    assert key["errors"][0]["field"] == "Idempotency-Key (header)"
    # Temporal is not running here (422s with Temporal up: tests/test_api.py)
    assert_problem(await http.get("/onboardings", headers=ops), 503, "unavailable")
    assert_problem(await http.post("/webhooks/docusign", content=b"{}"), 401, "unauthorized")


async def test_the_openapi_document_declares_problems_on_every_route(http, settings):
    spec = (await http.get("/openapi.json", headers=auth.auth_headers(settings, "ops"))).json()
    schemas = spec["components"]["schemas"]
    assert {"type", "title", "status", "detail"} <= set(schemas["Problem"]["required"])
    assert "HTTPValidationError" not in schemas
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = {int(c) for c in op["responses"] if c.isdigit()}
            if not path.startswith("/a/") and op["security"]:
                assert {401, 403} <= codes, (method, path)
            if method == "post":
                assert {413, 422} <= codes, (method, path)
            if "{workflow_id}" in path:
                assert {404, 422, 503} <= codes, (method, path)
            for code in codes - {303}:
                content = op["responses"][str(code)].get("content", {})
                if code >= 400 and "text/html" not in content:
                    assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, \
                        (method, path, code)
