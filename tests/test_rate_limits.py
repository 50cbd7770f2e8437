"""Rate limits: the answer pages per link token and per client address, the token-protected API per
subject; 429 with Retry-After; configurable (``MDCO_RATE_LIMIT_*``)."""

from __future__ import annotations

import httpx
import pytest

from api import auth
from api.app import create_app
from config import Settings
from tests.esign_fixtures import free_port

pytestmark = pytest.mark.timeout(60)

TOKEN_A, TOKEN_B = "a" * 40, "b" * 40  # not signed: the page answers 403, but only after the limit


def settings_for(tmp_path, **limits) -> Settings:
    return Settings(var_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}", **limits)


def client_from(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://api")


def retry_after(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 60
    return wait


async def test_answer_pages_are_limited_per_link_and_per_address(tmp_path):
    app = create_app(client=None, settings=settings_for(tmp_path, rate_limit_link="3/minute",
                                                         rate_limit_client="5/minute"))
    async with client_from(app, "198.51.100.7") as alice, client_from(app, "203.0.113.9") as bob:
        for _ in range(3):
            assert (await alice.get(f"/a/{TOKEN_A}")).status_code == 403
        limited = await alice.get(f"/a/{TOKEN_A}")
        retry_after(limited)
        assert limited.headers["content-type"].startswith("text/html") and "try again in" in limited.text
        assert limited.headers["x-frame-options"] == "DENY"  # the guards still add their headers
        # the same link from elsewhere: the link's own budget is spent
        retry_after(await bob.post(f"/a/{TOKEN_A}", data={"decision": "accept"}))
        # another link from the first address: two more, then the address's budget is spent
        assert (await alice.get(f"/a/{TOKEN_B}")).status_code == 403
        assert (await alice.get(f"/a/{TOKEN_B}")).status_code == 403
        retry_after(await alice.get(f"/a/{TOKEN_B}"))
        assert (await bob.get(f"/a/{'c' * 40}")).status_code == 403  # another address, another link: fine
        assert (await alice.get("/healthz")).status_code == 200  # public routes are not counted


async def test_the_token_api_is_limited_per_subject(tmp_path):
    settings = settings_for(tmp_path, rate_limit_subject="4/minute")
    app = create_app(client=None, settings=settings)
    alice, bob = auth.auth_headers(settings, "ops", "alice"), auth.auth_headers(settings, "ops", "bob")
    async with client_from(app, "198.51.100.7") as http:
        for _ in range(4):
            assert (await http.get("/openapi.json", headers=alice)).status_code == 200
        limited = await http.get("/openapi.json", headers=alice)
        retry_after(limited)
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.json()["type"] == "urn:mdco:problem:rate-limited" and limited.json()["status"] == 429
        # a fresh token of the same subject does not reset the count; another subject has its own
        retry_after(await http.get("/openapi.json", headers=auth.auth_headers(settings, "ops", "alice")))
        assert (await http.get("/openapi.json", headers=bob)).status_code == 200
        # callers without a valid token are refused before they are counted (401, never 429)
        for _ in range(6):
            assert (await http.get("/openapi.json")).status_code == 401
        spec = (await http.get("/openapi.json", headers=bob)).json()
    assert "429" in spec["paths"]["/onboardings"]["post"]["responses"]
    assert "429" in spec["paths"]["/a/{token}"]["get"]["responses"]
    assert "429" not in spec["paths"]["/healthz"]["get"]["responses"]


def test_limits_are_configurable_and_checked_at_start(tmp_path):
    with pytest.raises(ValueError, match="MDCO_RATE_LIMIT_LINK"):
        create_app(client=None, settings=settings_for(tmp_path, rate_limit_link="lots"))
    assert Settings(_env_file=None).rate_limit_subject  # defaults exist
