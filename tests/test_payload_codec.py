"""Payload encryption: contact details never rest in plain text in Temporal histories."""

from __future__ import annotations

import base64
import dataclasses
import stat
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from api.app import create_app
from api.auth import auth_headers
from config import Settings
from domain.intake import Intake
from domain.onboarding import OnboardingInput, OnboardingStatus
from mdco_temporal.client import converter_for_keys, payload_key_path, payload_key_spec
from mdco_temporal.codec import ENCODING, EncryptionCodec, codec_from_spec, new_key_spec, parse_keys
from tests.fake_activities import FakeWorld, sample_intake
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

pytestmark = pytest.mark.timeout(60)


async def test_round_trip_rotation_and_unknown_key():
    old, new = new_key_spec("k1"), new_key_spec("k2")
    plain = [Payload(metadata={"encoding": b"json/plain"}, data=b'{"email": "dana@glow.example"}')]
    sealed = await codec_from_spec(old).encode(plain)
    assert sealed[0].metadata["encoding"] == ENCODING and b"dana" not in sealed[0].data
    rotated = codec_from_spec(f"{new},{old}")  # new key first, old still decrypts
    assert await rotated.decode(sealed) == plain
    assert (await rotated.encode(plain))[0].metadata["encryption-key-id"] == b"k2"
    with pytest.raises(ValueError, match="unknown key id 'k1'"):
        await codec_from_spec(new).decode(sealed)
    assert await codec_from_spec(new).decode(plain) == plain  # unencrypted history still reads


@pytest.mark.parametrize("spec,message", [
    ("nokey", "expected keyid:base64key"),
    ("k1:***", "not base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
])
def test_bad_key_specs_name_the_entry(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_keys(spec)


async def test_history_holds_no_plain_pii_but_status_reads(time_env, task_queue, unique_key):
    codec = EncryptionCodec(parse_keys(new_key_spec()))
    sealed = Client(time_env.client.service_client, namespace=time_env.client.namespace,
                    data_converter=dataclasses.replace(pydantic_data_converter, payload_codec=codec))
    world = FakeWorld()
    async with Worker(sealed, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(4)):
        intake = Intake.model_validate(sample_intake(unique_key))
        handle = await sealed.start_workflow(OnboardingWorkflow.run, OnboardingInput(intake=intake),
                                             id=f"onboarding-{unique_key}", task_queue=task_queue)
        for _ in range(100):
            status = await handle.query(OnboardingWorkflow.status, result_type=OnboardingStatus)
            if status.offers:
                break
        assert status.offers and status.clinic_key == unique_key
        raw = (await time_env.client.get_workflow_handle(handle.id).fetch_history()).to_json()
        assert "dana@glow.example" not in raw and "Dana Reyes" not in raw
        assert base64.b64encode(ENCODING).decode() in raw
        await handle.terminate("test over")


async def test_ui_codec_endpoint_decodes_for_the_ui_origin_only(tmp_path):
    spec = new_key_spec()
    settings = Settings(var_dir=tmp_path, payload_keys=spec, temporal_ui_port=8233)
    app = create_app(client=None, settings=settings)
    body = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": base64.b64encode(b'{"x": 1}').decode()}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        assert (await http.post("/codec/decode", json=body)).status_code == 401  # never for anonymous callers
        http.headers.update(auth_headers(settings, "ops"))
        encoded = (await http.post("/codec/encode", json=body)).json()
        assert encoded["payloads"][0]["metadata"]["encoding"] == base64.b64encode(ENCODING).decode()
        decoded = (await http.post("/codec/decode", json=encoded)).json()
        assert decoded == body
        ok = await http.options("/codec/decode", headers={"Origin": "http://127.0.0.1:8233",
                                                          "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "http://127.0.0.1:8233"
        evil = await http.options("/codec/decode", headers={"Origin": "http://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in evil.headers
    # no MDCO_PAYLOAD_KEYS: encrypted all the same, with the key generated under var/auth (0600)
    default = Settings(var_dir=tmp_path / "default")
    default_app = create_app(client=None, settings=default)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=default_app), base_url="http://api",
                                 headers=auth_headers(default, "ops")) as http:
        encoded = (await http.post("/codec/encode", json=body)).json()
        assert encoded["payloads"][0]["metadata"]["encoding"] == base64.b64encode(ENCODING).decode()
        assert (await http.post("/codec/decode", json=encoded)).json() == body
    key = payload_key_path(default)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and payload_key_spec(default) == key.read_text().strip()
    assert converter_for_keys(payload_key_spec(default)).payload_codec is not None
    assert payload_key_spec(settings) == spec  # MDCO_PAYLOAD_KEYS rules when set
