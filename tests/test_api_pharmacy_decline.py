"""POST /onboardings/{id}/pharmacies/{pharmacy_id}/decline (ops role) over the real workflow on the
time-skipping server: refused when not awaited, the next qualifying pharmacy asked, the decline audited."""

from __future__ import annotations

import pytest

from api.auth import auth_headers
from tests.fake_activities import sample_intake
from tests.test_api import Api, api  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


async def test_ops_decline_for_a_pharmacy_asks_the_next_one(api: Api, unique_key):  # noqa: F811
    wf = f"onboarding-{unique_key}"
    assert (await api.http.post("/onboardings", json=sample_intake(unique_key))).status_code == 202
    npi = (await api.until(wf, lambda s: s["offers"]))["offers"][0]["npi"]
    assert (await api.http.post(f"/onboardings/{wf}/offers/{npi}/accept")).status_code == 200
    await api.until(wf, lambda s: s["stage"] == "protocol_setup" and s["protocols"])
    assert (await api.http.post(f"/onboardings/{wf}/protocols/approve", json={"npi": npi})).status_code == 200
    await api.until(wf, lambda s: s["stage"] == "pharmacy_coordination" and s["waiting_on"] == "pharmacy")

    path = f"/onboardings/{wf}/pharmacies/austin-rx/decline"
    sales = auth_headers(api.settings, "sales", "sam")
    assert (await api.http.post(path, json={"reason": "x"}, headers=sales)).status_code == 403
    assert (await api.http.post(path, json={"reason": ""})).status_code == 422
    r = await api.http.post(f"/onboardings/{wf}/pharmacies/other-rx/decline", json={"reason": "x"})
    assert r.status_code == 409 and "other-rx" in r.json()["detail"]

    olga = auth_headers(api.settings, "ops", "olga")
    r = await api.http.post(path, json={"reason": "does not ship to OK"}, headers=olga)
    assert r.status_code == 200 and r.json()["result"].startswith("declined")
    st = await api.until(wf, lambda s: any(p["pharmacy_id"] == "dallas-rx" for p in s["pharmacies"]))
    by_id = {p["pharmacy_id"]: p for p in st["pharmacies"]}
    assert by_id["austin-rx"]["status"] == "declined" and by_id["austin-rx"]["decline_reason"] == "does not ship to OK"
    (audit,) = [d for d in api.world.called("record_decision") if d.action == "pharmacy_declined"]
    assert audit.actor == "ops:olga for pharmacy:austin-rx" and audit.reason == "does not ship to OK"
    r = await api.http.post(path, json={"reason": "again"})
    assert r.status_code == 409 and "declined" in r.json()["detail"]
    assert (await api.http.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"})).status_code == 200
