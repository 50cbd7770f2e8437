"""The HTTP API over the real OnboardingWorkflow on the time-skipping server (fake activities)."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from api import service
from api.app import create_app
from api.auth import auth_headers
from config import Settings
from esign.connect import signature_headers
from tests.fake_activities import FakeWorld, sample_intake
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

pytestmark = pytest.mark.timeout(60)

HMAC_KEYS = ["connect-key-old", "connect-key-new"]
CONTRACT_FIELDS = {"workflow_id", "stage", "sla_status", "waiting_on", "physician_npi", "offers", "pharmacies",
                   "envelopes", "timeline"}


class Api:
    def __init__(self, http: httpx.AsyncClient, env, world: FakeWorld, settings: Settings):
        self.http, self.env, self.world, self.settings = http, env, world, settings

    async def until(self, wf_id: str, pred, timeout: float = 20.0) -> dict:
        """Poll ``GET /onboardings/{id}`` until ``pred(status_json)`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.http.get(f"/onboardings/{wf_id}")
            assert r.status_code == 200, r.text
            if pred(r.json()):
                return r.json()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met; last status: {json.dumps(r.json(), indent=1)}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def api(time_env, task_queue, tmp_path):
    world = FakeWorld()
    settings = Settings(task_queue=task_queue, docusign_hmac_keys=",".join(HMAC_KEYS), var_dir=tmp_path)
    app = create_app(client=time_env.client, settings=settings)
    async with Worker(time_env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers=auth_headers(settings, "ops", "api-test")) as http:
            yield Api(http, time_env, world, settings)


def connect_body(envelope_id: str, status: str, external_id: str | None, at: datetime) -> bytes:
    summary: dict = {"status": status, "recipients": {"signers": [
        {"recipientId": "1", "routingOrder": "1", "status": status, "name": "Dana Reyes", "email": "dana@glow.example"}]}}
    if external_id is not None:
        summary["customFields"] = {"textCustomFields": [{"name": "external_id", "value": external_id}]}
    return json.dumps({
        "event": f"envelope-{status}", "apiVersion": "v2.1", "retryCount": 0, "configurationId": "10000001",
        "generatedDateTime": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        "data": {"accountId": "acc", "envelopeId": envelope_id, "envelopeSummary": summary},
    }).encode()


async def test_invalid_intake_lists_every_problem_and_starts_nothing(api: Api, unique_key):
    bad = sample_intake(unique_key, states=["TX", "ZZ"], services=["neurotoxins", "botox"], monthly_patients=-1,
                        contact={"name": "Dana Reyes", "email": "not-an-email", "phone": "+15125550100"})
    r = await api.http.post("/onboardings", json=bad)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:mdco:problem:invalid" and problem["status"] == 422 and problem["title"]
    assert problem["detail"].startswith("The request is invalid")
    fields = {p["field"] for p in problem["errors"]}
    assert {"states", "services[1]", "monthly_patients", "contact.email"} <= fields, r.json()
    assert all(p["reason"] for p in problem["errors"])
    assert "not-an-email" not in r.text  # reasons only: contact data is not echoed back
    assert (await api.http.get(f"/onboardings/{unique_key}")).status_code == 404

    r = await api.http.post("/onboardings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "(body)"
    r = await api.http.post("/onboardings", json=["a list"])
    assert r.status_code == 422 and r.json()["errors"] == [{"field": "(intake)", "reason": "must be a JSON object"}]
    # valid once coerced ("350" for a number) but not as its JSON schema types it: refused, nothing started
    r = await api.http.post("/onboardings", json=sample_intake(unique_key, monthly_patients="350"))
    assert r.status_code == 422 and [p["field"] for p in r.json()["errors"]] == ["monthly_patients"], r.json()
    assert (await api.http.get(f"/onboardings/{unique_key}")).status_code == 404


async def test_bad_parameters_are_one_problem_document_listing_each(api: Api):
    r = await api.http.post("/onboardings/x/offers/12/accept")
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:mdco:problem:invalid" and problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == {"workflow_id", "npi"}
    assert all(e["reason"] for e in problem["errors"])
    r = await api.http.post("/onboardings/glow-austin/cancel", json={"reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"


async def test_repeated_start_status_answers_and_cancel(api: Api, unique_key):
    wf_id = f"onboarding-{unique_key}"
    r = await api.http.post("/onboardings", json=sample_intake(unique_key))
    assert r.status_code == 202 and r.json() == {"workflow_id": wf_id, "status": "started"}
    r = await api.http.post("/onboardings", json=sample_intake(unique_key))
    assert r.status_code == 200 and r.json() == {"workflow_id": wf_id, "status": "already_running"}

    st = await api.until(unique_key, lambda s: s["stage"] == "matching" and len(s["offers"]) == 3)
    assert CONTRACT_FIELDS <= set(st)
    assert st["workflow_id"] == wf_id and st["sla_status"] == "on_track" and st["waiting_on"] == "physician"
    assert st["physician_npi"] is None and {"npi", "status"} <= set(st["offers"][0])
    assert st["timeline"] and {"at", "stage", "event"} <= set(st["timeline"][0])
    desc = await api.env.client.get_workflow_handle(wf_id).describe()
    assert desc.typed_search_attributes is not None

    # wrong answers: refused by the workflow's validator (409), bad input (422), unknown ids (404)
    r = await api.http.post(f"/onboardings/{wf_id}/offers/1234567893/accept")
    assert r.status_code == 409 and "no offer was made to NPI 1234567893" in r.json()["detail"]
    r = await api.http.post(f"/onboardings/{wf_id}/offers/12345/accept")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "npi"
    r = await api.http.post(f"/onboardings/{wf_id}/protocols/approve", json={"npi": st["offers"][0]["npi"]})
    assert r.status_code == 409 and "no protocols await approval" in r.json()["detail"]
    r = await api.http.post(f"/onboardings/{wf_id}/pharmacies/austin-rx/confirm")
    assert r.status_code == 409 and "does not wait on pharmacy austin-rx" in r.json()["detail"]
    r = await api.http.post(f"/onboardings/{wf_id}/plan/approve", json={"reason": "looks fine"})
    assert r.status_code == 409 and "no assessment is waiting" in r.json()["detail"]
    missing = f"onboarding-nobody-{uuid.uuid4().hex[:8]}"
    assert (await api.http.get(f"/onboardings/{missing}")).status_code == 404
    r = await api.http.post(f"/onboardings/{missing}/offers/1000000001/accept")
    assert r.status_code == 404 and missing in r.json()["detail"]
    assert (await api.http.post(f"/onboardings/{missing}/cancel", json={"reason": "x"})).status_code == 404
    assert len(api.world.called("reserve_physician")) == 0  # refused answers changed nothing

    # a decline is recorded and the physician gets no second chance
    declined = st["offers"][1]["npi"]
    r = await api.http.post(f"/onboardings/{unique_key}/offers/{declined}/decline")
    assert r.status_code == 200 and r.json()["status"] == "declined"
    st = await api.until(wf_id, lambda s: any(o["npi"] == declined and o["status"] == "declined" for o in s["offers"]))
    r = await api.http.post(f"/onboardings/{wf_id}/offers/{declined}/accept")
    assert r.status_code == 409 and "is declined" in r.json()["detail"]

    r = await api.http.post(f"/onboardings/{wf_id}/cancel", json={"reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await api.http.post(f"/onboardings/{wf_id}/cancel", json={"reason": "deal fell through"})
    assert r.status_code == 200 and r.json() == {"workflow_id": wf_id, "result": "cancelling"}
    st = await api.until(wf_id, lambda s: s["stage"] == "cancelled")
    assert st["cancel_reason"] == "deal fell through"
    await api.env.client.get_workflow_handle(wf_id).result()

    # the clinic's onboarding is over: a repeated click neither restarts nor reopens it
    r = await api.http.post("/onboardings", json=sample_intake(unique_key))
    assert r.status_code == 200 and r.json() == {"workflow_id": wf_id, "status": "already_completed"}
    r = await api.http.post(f"/onboardings/{wf_id}/cancel", json={"reason": "again"})
    assert r.status_code == 409 and "completed" in r.json()["detail"]


async def test_walk_to_launch_through_http_with_signed_webhooks(api: Api, unique_key):
    wf_id = f"onboarding-{unique_key}"
    assert (await api.http.post("/onboardings", json=sample_intake(unique_key))).status_code == 202
    st = await api.until(wf_id, lambda s: s["stage"] == "matching" and s["offers"])
    npi = st["offers"][0]["npi"]

    r = await api.http.post(f"/onboardings/{wf_id}/offers/{npi}/accept")
    assert r.status_code == 200 and r.json()["accepted"] is True and r.json()["status"] == "accepted"
    st = await api.until(wf_id, lambda s: s["stage"] == "protocol_setup" and s["protocols"])
    assert st["physician_npi"] == npi and st["sla_status"] == "met"
    r = await api.http.post(f"/onboardings/{wf_id}/protocols/approve", json={"npi": "1000000004"})
    assert r.status_code == 409 and "only the matched medical director" in r.json()["detail"]
    r = await api.http.post(f"/onboardings/{wf_id}/protocols/approve", json={"npi": npi})
    assert r.status_code == 200 and r.json()["result"] == "approved"

    st = await api.until(wf_id, lambda s: s["stage"] == "pharmacy_coordination" and s["pharmacies"])
    assert [p["pharmacy_id"] for p in st["pharmacies"]] == ["austin-rx"] and st["pharmacies"][0]["status"]
    r = await api.http.post(f"/onboardings/{wf_id}/pharmacies/other-rx/confirm")
    assert r.status_code == 409 and "other-rx" in r.json()["detail"]
    r = await api.http.post(f"/onboardings/{wf_id}/pharmacies/austin-rx/confirm", json={"account_number": "a\x07b"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "account_number"  # nothing signalled
    assert (await api.http.get(f"/onboardings/{wf_id}")).json()["pharmacies"][0]["status"] == "packet_sent"
    r = await api.http.post(f"/onboardings/{wf_id}/pharmacies/austin-rx/confirm", json={"account_number": "ARX-5521"})
    assert r.status_code == 200 and r.json()["result"] == "confirmed"

    st = await api.until(wf_id, lambda s: s["stage"] == "agreements" and s["waiting_on"] == "signers")
    assert st["pharmacies"][0]["account_number"] == "ARX-5521"
    assert [e["status"] for e in st["envelopes"] if e["agreement_kind"] == "protocol_packet"] == ["completed"]
    envelopes = [e for e in st["envelopes"] if e["agreement_kind"] != "protocol_packet"]  # stage 5's
    assert {e["agreement_kind"] for e in envelopes} == {"medical_director", "collaborative_practice_TX"}
    assert all({"envelope_id", "agreement_kind", "status"} <= set(e) for e in envelopes)
    now = datetime.now(timezone.utc)
    first = envelopes[0]
    body = connect_body(first["envelope_id"], "completed", f"{wf_id}:{first['agreement_kind']}:v1", now)

    # forged or unsigned deliveries: 401 and the envelope does not move
    forged = signature_headers(body, ["not-our-key"])
    assert (await api.http.post("/webhooks/docusign", content=body, headers=forged)).status_code == 401
    assert (await api.http.post("/webhooks/docusign", content=body)).status_code == 401
    tampered = body.replace(b'"completed"', b'"declined"', 1)
    r = await api.http.post("/webhooks/docusign", content=tampered, headers=signature_headers(body, HMAC_KEYS))
    assert r.status_code == 401
    await asyncio.sleep(0.3)
    st = (await api.http.get(f"/onboardings/{wf_id}")).json()
    assert {e["envelope_id"]: e["status"] for e in st["envelopes"]}[first["envelope_id"]] == "sent"

    # signed with the rotated-in key only (header 1 carries it): accepted
    r = await api.http.post("/webhooks/docusign", content=body, headers=signature_headers(body, HMAC_KEYS[1:]))
    assert r.status_code == 200 and r.json()["status"] == "signalled" and r.json()["workflow_id"] == wf_id
    await api.until(wf_id, lambda s: any(e["envelope_id"] == first["envelope_id"] and e["status"] == "completed"
                                         for e in s["envelopes"]))
    # the same envelope status again (Connect sends one per recipient event too): acknowledged, not signalled
    again = connect_body(first["envelope_id"], "completed", f"{wf_id}:{first['agreement_kind']}:v1",
                         now + timedelta(milliseconds=5))
    r = await api.http.post("/webhooks/docusign", content=again, headers=signature_headers(again, HMAC_KEYS))
    assert r.status_code == 200 and r.json()["status"] == "ignored" and "already forwarded" in r.json()["reason"]
    for i, env in enumerate(envelopes[1:], 1):
        body = connect_body(env["envelope_id"], "completed", f"{wf_id}:{env['agreement_kind']}:v1",
                            now + timedelta(seconds=i))
        r = await api.http.post("/webhooks/docusign", content=body, headers=signature_headers(body, HMAC_KEYS))
        assert r.status_code == 200 and r.json()["status"] == "signalled"

    st = await api.until(wf_id, lambda s: s["stage"] == "launched")
    assert all(e["status"] == "completed" for e in st["envelopes"])
    assert st["oversight_workflow_id"] == f"oversight-{unique_key}"
    assert len(api.world.called("launch_clinic")) == 1
    await api.env.client.get_workflow_handle(st["oversight_workflow_id"]).terminate("test done")
    # a late duplicate for the closed onboarding is acknowledged and ignored, so DocuSign stops retrying
    await api.env.client.get_workflow_handle(wf_id).result()
    r = await api.http.post("/webhooks/docusign", content=body, headers=signature_headers(body, HMAC_KEYS))
    assert r.status_code == 200 and r.json()["status"] == "ignored" and r.json()["workflow_id"] == wf_id


async def test_webhook_for_foreign_or_unknown_envelopes_is_acknowledged(api: Api):
    now = datetime.now(timezone.utc)
    for external in (None, "crm-123:whatever", f"onboarding-nobody-{uuid.uuid4().hex[:8]}:medical_director:v1"):
        body = connect_body("env-foreign", "completed", external, now)
        r = await api.http.post("/webhooks/docusign", content=body, headers=signature_headers(body, HMAC_KEYS))
        assert r.status_code == 200 and r.json()["status"] == "ignored", (external, r.text)
    body = b'{"event": "envelope-completed"}'
    r = await api.http.post("/webhooks/docusign", content=body, headers=signature_headers(body, HMAC_KEYS))
    assert r.status_code == 422 and "data.envelopeId" in r.json()["errors"][0]["reason"]


async def test_list_filters_are_validated_before_querying(api: Api):
    r = await api.http.get("/onboardings", params={"stage": "matching' OR WorkflowType != '"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stage"
    r = await api.http.get("/onboardings", params={"sla": "late"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sla"
    assert service.build_list_query("matching", "at_risk") == (
        "WorkflowType = 'OnboardingWorkflow' AND OnboardingStage = 'matching' AND SlaStatus = 'at_risk'")
    assert service.build_list_query() == "WorkflowType = 'OnboardingWorkflow'"


async def test_list_from_visibility_when_the_server_supports_it(api: Api, unique_key):
    try:
        await service.list_onboardings(api.env.client)
    except RPCError as err:
        if err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.INVALID_ARGUMENT):
            pytest.skip(f"time-skipping server has no visibility queries ({err.status.name})")
        raise
    wf_id = f"onboarding-{unique_key}"
    assert (await api.http.post("/onboardings", json=sample_intake(unique_key))).status_code == 202
    await api.until(wf_id, lambda s: s["stage"] == "matching")
    for _ in range(50):
        rows = (await api.http.get("/onboardings", params={"stage": "matching"})).json()
        if any(r["workflow_id"] == wf_id for r in rows):
            break
        await asyncio.sleep(0.1)
    row = next(r for r in rows if r["workflow_id"] == wf_id)
    assert row["stage"] == "matching" and row["states"] == ["TX", "OK"] and row["status"] == "running"
    await api.http.post(f"/onboardings/{wf_id}/cancel", json={"reason": "test over"})


async def test_healthz_and_docs(api: Api):
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    spec = (await api.http.get("/openapi.json")).json()
    assert spec["paths"]["/onboardings"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Intake"}
    assert "Contact" in spec["components"]["schemas"]
    assert {t["name"] for t in spec["tags"]} >= {"onboardings", "answers", "ops", "webhooks"}


async def test_an_answer_nobody_processes_gets_503_not_a_hang(time_env, task_queue, tmp_path, unique_key,
                                                              monkeypatch):
    from datetime import timedelta

    from api import service

    monkeypatch.setattr(service, "UPDATE_TIMEOUT", timedelta(seconds=1))
    settings = Settings(task_queue=task_queue, var_dir=tmp_path)  # no worker polls this queue
    app = create_app(client=time_env.client, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers=auth_headers(settings)) as http:
        assert (await http.post("/onboardings", json=sample_intake(unique_key))).status_code == 202
        r = await http.post(f"/onboardings/onboarding-{unique_key}/offers/1234567893/accept")
        assert r.status_code == 503 and "is a worker running" in r.json()["detail"]
        assert r.headers["retry-after"] == "30"
    await time_env.client.get_workflow_handle(f"onboarding-{unique_key}").terminate("test over")


async def test_idempotency_key_makes_a_retried_answer_act_once(api: Api, unique_key):
    r = await api.http.post("/onboardings", json=sample_intake(unique_key))
    wf = r.json()["workflow_id"]
    st = await api.until(wf, lambda s: s["offers"])
    npi = st["offers"][0]["npi"]
    key = {"Idempotency-Key": f"decline-{uuid.uuid4().hex}"}
    first = await api.http.post(f"/onboardings/{wf}/offers/{npi}/decline", headers=key)
    again = await api.http.post(f"/onboardings/{wf}/offers/{npi}/decline", headers=key)  # the client retried
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert len([c for c in api.world.called("record_offer") if c.npi == npi and c.status == "declined"]) == 1
    fresh = await api.http.post(f"/onboardings/{wf}/offers/{npi}/decline", headers={"Idempotency-Key": "other"})
    assert fresh.status_code == 409  # a new request is validated again: the offer is already declined
    bad = await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "x"},
                              headers={"Idempotency-Key": "has spaces and ;"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Idempotency-Key (header)"
    assert (await api.http.get(f"/onboardings/{wf}")).json()["stage"] == "matching"  # the refused cancel did nothing
    await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"})


async def test_retry_route_refuses_an_onboarding_that_is_not_blocked(api: Api, unique_key):
    r = await api.http.post("/onboardings", json=sample_intake(unique_key))
    wf = r.json()["workflow_id"]
    await api.until(wf, lambda s: s["offers"])
    refused = await api.http.post(f"/onboardings/{wf}/retry", json={"reason": "try"})
    assert refused.status_code == 409 and "only a blocked onboarding" in refused.text
    assert (await api.http.post(f"/onboardings/{wf}/retry", json={})).status_code == 422
    await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"})


async def test_roles_and_the_tokens_subject_is_the_actor(api: Api, unique_key):
    sales = auth_headers(api.settings, "sales", "sam")
    r = await api.http.post("/onboardings", json=sample_intake(unique_key), headers=sales)
    assert r.status_code == 202
    wf = r.json()["workflow_id"]
    await api.until(wf, lambda s: s["offers"])
    assert (await api.http.get(f"/onboardings/{wf}", headers=sales)).status_code == 200
    assert (await api.http.get("/onboardings", headers=sales)).status_code not in (401, 403)  # no visibility here
    npi = (await api.http.get(f"/onboardings/{wf}")).json()["offers"][0]["npi"]
    for path, body in ((f"/onboardings/{wf}/cancel", {"reason": "no"}), (f"/onboardings/{wf}/offers/{npi}/accept", {}),
                       (f"/onboardings/{wf}/retry", {"reason": "no"})):
        assert (await api.http.post(path, json=body, headers=sales)).status_code == 403, path
    assert (await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "x"},
                                headers={"Authorization": "Bearer nope"})).status_code == 401
    olga = auth_headers(api.settings, "ops", "olga")
    assert (await api.http.post(f"/onboardings/{wf}/offers/{npi}/decline", headers=olga)).status_code == 200
    st = await api.until(wf, lambda s: any(o["status"] == "declined" for o in s["offers"]))
    assert "(ops:olga for the physician)" in st["offers"][0]["reason"]  # answered on the physician's behalf
    start = next(c for c in api.world.called("record_start") if c.workflow_id == wf)
    assert start.actor == "sales:sam"  # who started it is on the record
    assert (await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "clinic withdrew"},
                                headers=olga)).status_code == 200
    st = await api.until(wf, lambda s: s["stage"] == "cancelled")
    assert any("cancelled by ops:olga" in e["event"] for e in st["timeline"])
    (cancelled,) = [c for c in api.world.called("record_cancellation") if c.workflow_id == wf]
    assert cancelled.actor == "ops:olga"
