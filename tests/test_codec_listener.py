"""The Temporal UI's codec, on real processes: the public API's ``/codec`` never decodes for an anonymous
caller; the embedded stack serves its UI on a loopback-only listener (``codec`` service, pointed at by
the dev server's ``--ui-codec-endpoint``); payloads are encrypted by default with a key under var/ that
the worker, the API, the listener and every CLI process share."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from api.auth import auth_headers
from api.codec import ui_origins
from mdco_temporal.client import payload_key_path
from mdco_temporal.codec import ENCODING
from starter.demo import DEMO_DIR
from starter.stack import PROJECT_ROOT, Stack, codec_endpoint, service_argv
from tests.stack_fixtures import stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLAIN = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                       "data": base64.b64encode(b'{"email": "dana@clinic.example"}').decode()}]}
ENCRYPTED = base64.b64encode(ENCODING).decode()


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on for ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_ui_listener_decodes_for_loopback_only_and_the_public_codec_needs_a_token(tmp_path):
    settings = stack_settings(tmp_path / "var")
    with Stack(settings, services=["codec", "api"]) as running:
        key = payload_key_path(running.settings)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600  # made by `mdco up`, like the token key

        public = f"http://127.0.0.1:{settings.api_port}/codec"
        anonymous = httpx.post(f"{public}/decode", json=PLAIN, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        sales = httpx.post(f"{public}/decode", json=PLAIN, headers=auth_headers(settings, "sales"), timeout=10)
        assert sales.status_code == 403
        sealed = httpx.post(f"{public}/encode", json=PLAIN, headers=auth_headers(settings, "ops"), timeout=10)
        assert sealed.status_code == 200 and sealed.json()["payloads"][0]["metadata"]["encoding"] == ENCRYPTED
        assert b"dana" not in base64.b64decode(sealed.json()["payloads"][0]["data"])

        # the UI's listener: same key (another process, same var/), no token, loopback only
        endpoint = codec_endpoint(settings)
        assert endpoint == f"http://127.0.0.1:{settings.codec_port}/codec"
        ui = ui_origins(settings)[0]
        decoded = httpx.post(f"{endpoint}/decode", json=sealed.json(), headers={"Origin": ui}, timeout=10)
        assert decoded.status_code == 200 and decoded.json() == PLAIN
        assert decoded.headers["access-control-allow-origin"] == ui
        preflight = httpx.options(f"{endpoint}/decode", headers={
            "Origin": ui, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"}, timeout=10)
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ui
        evil = httpx.post(f"{endpoint}/decode", json=sealed.json(), headers={"Origin": "http://evil.example"},
                          timeout=10)
        assert evil.status_code == 403 and "dana" not in evil.text
        assert evil.json()["type"] == "urn:mdco:problem:forbidden"
        rebound = httpx.post(f"{endpoint}/decode", json=sealed.json(), headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 403 and "dana" not in rebound.text
        assert listening_addresses(settings.codec_port) == {"0100007F"}  # 127.0.0.1, nothing else

    argv = service_argv("temporal", settings)
    assert argv[argv.index("--ui-codec-endpoint") + 1] == endpoint


def test_the_dev_servers_ui_is_pointed_at_the_loopback_codec(tmp_path):
    settings = stack_settings(tmp_path / "var")
    with Stack(settings, services=["temporal"]):
        ui = httpx.get(f"http://127.0.0.1:{settings.temporal_ui_port}/api/v1/settings", timeout=10).json()
    assert ui["Codec"]["Endpoint"] == codec_endpoint(settings)


def test_a_history_written_by_the_embedded_stack_holds_no_plaintext_intake_pii(stack, tmp_path):
    settings, env = stack
    key = f"pii-{uuid.uuid4().hex[:8]}"
    intake = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text()) | {"clinic_key": key}
    path = tmp_path / "intake.json"
    path.write_text(json.dumps(intake))
    started = subprocess.run([sys.executable, "-m", "starter", "onboard", str(path), "--json"], env=env,
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    workflow_id = json.loads(started.stdout)["workflow_id"]

    async def raw_history() -> str:  # what Temporal stores, read without any key
        plain = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
        return (await plain.get_workflow_handle(workflow_id).fetch_history()).to_json()

    import asyncio

    raw = asyncio.run(raw_history())
    for pii in ("dana@clinic.example", "Dana Reyes", "+15125550100", "Sam Lee", "AP123456"):
        assert pii not in raw
    assert ENCRYPTED in raw

    status = subprocess.run([sys.executable, "-m", "starter", "status", workflow_id, "--json"], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["workflow_id"] == workflow_id, status.stderr

    # what the UI shows: the start event's input, decoded through the loopback listener
    event = json.loads(raw)["events"][0]["workflowExecutionStartedEventAttributes"]["input"]
    shown = httpx.post(f"{codec_endpoint(settings)}/decode", json=event, timeout=10).json()
    text = base64.b64decode(shown["payloads"][0]["data"]).decode()
    assert "dana@clinic.example" in text and key in text
    subprocess.run([sys.executable, "-m", "starter", "cancel", workflow_id, "--reason", "test over"], env=env,
                   cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
