"""``GET /clinics/{clinic_key}/audit-packet``: ops download the zip ``mdco audit-packet`` writes (the same
build function), manifest SHA-256s matching, corrective actions and MedWatch drafts in it; no token 401,
sales 403, an unknown clinic 404. SQLite and Postgres."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import date, timedelta

import httpx

from activities.medwatch import draft_medwatch
from api.app import create_app
from api.auth import auth_headers
from config import Settings
from store import oversight
from store.tables import now_utc
from tests.db_fixtures import npi_for
from tests.esign_fixtures import free_port
from tests.test_oversight_sweep import live_clinic


async def test_ops_download_the_audit_packet(engine, db_url, tmp_path):
    settings = Settings(var_dir=tmp_path, database_url=db_url, temporal_address=f"127.0.0.1:{free_port()}")
    key = live_clinic(engine, 41, licence_expires=date(2031, 1, 1))
    at = now_utc()
    oversight.open_review(engine, f"{key}-cr-1", key, npi_for(41), 1, 10, at, at + timedelta(days=14))
    action = oversight.submit_review(engine, f"{key}-cr-1", npi_for(41), 20, 2, "two charts without GFE",
                                     at)["corrective_action"]
    oversight.report_event(engine, f"{key}-ae-1", key, "serious", "syncope after injection", at, at + timedelta(hours=24))
    draft = draft_medwatch(engine, settings.documents_dir, f"{key}-ae-1")

    app = create_app(client=None, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        url = f"/clinics/{key}/audit-packet"
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers=auth_headers(settings, "sales"))).status_code == 403
        ops = auth_headers(settings, "ops")
        assert (await http.get("/clinics/no-such-clinic/audit-packet", headers=ops)).status_code == 404
        got = await http.get(url, headers=ops)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert f"audit-packet-{key}.zip" in got.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(got.content)) as z:
        assert z.testzip() is None
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        assert {f["path"] for f in manifest["files"]} == names - {"manifest.json"}
        for f in manifest["files"]:
            assert hashlib.sha256(z.read(f["path"])).hexdigest() == f["sha256"]
        (ca,) = json.loads(z.read("corrective_actions.json"))
        assert (ca["action_id"], ca["review_id"], ca["deficiencies"], ca["status"]) == (
            action["action_id"], f"{key}-cr-1", 2, "open")
        assert action["action_id"] in z.read("index.html").decode()
        medwatch = [n for n in names if n.startswith("medwatch/")]
        assert len(medwatch) == 1 and hashlib.sha256(z.read(medwatch[0])).hexdigest() == draft["medwatch_sha256"]
