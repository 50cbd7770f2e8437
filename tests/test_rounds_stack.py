"""A second offer round on the real stack: two Vermont physicians never answer; once both offers
expire the onboarding re-offers them (round 2) instead of waiting on the roster, and
`mdco match --explain` says which round each offer belongs to."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from api import service
from domain.identifiers import dea_with_check_digit, npi_with_check_digit
from domain.intake import Intake
from domain.onboarding import Timing
from mdco_temporal.client import connect
from tests.test_integration import DEMO_DIR, mdco

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def vermont_roster(path, count: int = 2) -> list[str]:
    npis = [npi_with_check_digit(f"{uuid.uuid4().int % 10**9:09d}") for _ in range(count)]
    rows = [f"{npi},Val{i},Green,MD,val{i}.{npi}@md.example,+18025550111,VT,VT:VT{i}123:2029-01-31,"
            f"VT:{dea_with_check_digit('AG', f'{123450 + i}')}:2028-06-30,neurotoxins;dermal_fillers,4,0,"
            "2028-12-31,family_medicine,false,"
            for i, npi in enumerate(npis)]
    path.write_text((DEMO_DIR / "physicians.csv").read_text().splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    return npis


async def test_silent_physicians_get_a_second_round_on_the_real_stack(stack, tmp_path):
    settings, env = stack
    npis = vermont_roster(tmp_path / "vt.csv")
    mdco(env, "roster", "import", str(tmp_path / "vt.csv"))
    key = f"vt-{uuid.uuid4().hex[:8]}"
    intake = Intake.model_validate({
        "clinic_key": key, "clinic_name": "Green Mountain Aesthetics",
        "contact": {"name": "Kim Park", "email": "kim@clinic.example", "phone": "+18025550100"},
        "states": ["VT"], "care_model": "on_site", "services": ["neurotoxins"], "monthly_patients": 80,
        "locations": [{"state": "VT", "city": "Burlington", "zip": "05401"}], "midlevels": [],
        "requested_start": "2026-12-15"})
    client = await connect(settings)
    started = await service.start_onboarding(client, settings, intake, offer_fanout=2,
                                             timing=Timing(offer_ttl=timedelta(seconds=3)))
    wf = started.workflow_id
    status = None
    for _ in range(200):
        status = await service.get_status(client, wf)
        # each silent physician is re-offered when their own offer expires (reoffer-at-expiry-v1): wait
        # until both round-2 offers are open, not only the first
        if {(o.npi, o.round) for o in status.offers if o.status == "open"} == {(n, 2) for n in npis}:
            break
        await asyncio.sleep(0.2)
    assert status is not None and status.offer_round == 2, status
    assert status.waiting_on == "physician"
    assert sorted({o.npi for o in status.offers}) == sorted(npis)  # the two silent physicians, asked again
    assert sorted((o.npi, o.round) for o in status.offers) == sorted([(n, r) for n in npis for r in (1, 2)])
    explained = mdco(env, "match", wf, "--explain").stdout
    assert "round 2" in explained and "offers so far" in explained
    assert mdco(env, "cancel", wf, "--reason", "test over").returncode == 0
