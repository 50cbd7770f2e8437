"""Answer pages as people use them: a real browser (Playwright driving Debian's chromium, never a
downloaded one) opens the links from the e-mails in the SMTP sink of the real embedded stack and clicks
decline, accept, protocol approval and pharmacy confirmation; tampered, replayed and expired links
are tried. Screenshots of every page are kept under ``<pytest tmp>/answer-pages`` (or
``$MDCO_TEST_ARTIFACTS/answer-pages``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api import links
from api.auth import auth_headers
from starter.demo import DEMO_DIR
from starter.smtp_sink import read_mailbox
from tests.test_integration import mdco, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LINK = re.compile(r"(https?://\S+/a/[A-Za-z0-9_.-]+)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def mailed_links(settings, wf: str, action: str, timeout: float = 30.0) -> dict[str, str]:
    """``{party id: link}`` of the answer links for ``action`` mailed about onboarding ``wf``."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for msg in read_mailbox(settings.mail_dir):
            for url in LINK.findall(msg.get_content()):
                link = links.read(settings, url.rsplit("/", 1)[1])
                if link.workflow_id == wf and link.action == action:
                    found[link.party_id] = url
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


@pytest.fixture(scope="module")
def seeded(stack):
    settings, env = stack
    mdco(env, "roster", "import", str(DEMO_DIR / "physicians.csv"))
    mdco(env, "pharmacies", "import", str(DEMO_DIR / "pharmacies.csv"))
    return settings, env


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    base = os.environ.get("MDCO_TEST_ARTIFACTS")
    folder = (Path(base) if base else tmp_path_factory.getbasetemp()) / "answer-pages"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)  # a phone
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def shoot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_people_answer_from_their_mails_in_a_browser(seeded, page, shots):
    settings, env = seeded
    key = f"pages-{uuid.uuid4().hex[:8]}"
    wf = f"onboarding-{key}"
    intake = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    intake["clinic_key"] = key
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings, "ops", "olga")) as api:
        sales = auth_headers(settings, "sales", "sam")
        assert api.post("/onboardings", json=intake, headers=sales).status_code == 202
        st = poll(api, wf, lambda s: sum(o["status"] == "open" for o in s["offers"]) >= 2)
        open_npis = [o["npi"] for o in st["offers"] if o["status"] == "open"]
        by_npi = mailed_links(settings, wf, "offer")
        assert set(open_npis) <= set(by_npi), (open_npis, list(by_npi))
        decliner, accepter = open_npis[0], open_npis[1]

        # decline, with a reason
        response = page.goto(by_npi[decliner])
        assert response.status == 200
        assert page.get_by_role("heading", name="Medical director offer").is_visible()
        body = page.inner_text("main")
        assert "Glow Aesthetics Austin LLC" in body and "TX, OK" in body and "Your share" in body
        assert "Chart review" in body
        shoot(page, shots, "01-offer")
        page.get_by_label("Reason (optional)").fill("Too far from my practice")
        page.get_by_role("button", name="Decline the offer").click()
        page.wait_for_load_state()
        assert "This offer was declined by the physician with NPI " + decliner in page.inner_text("main")
        shoot(page, shots, "02-offer-declined")

        # accept
        assert page.goto(by_npi[accepter]).status == 200
        page.get_by_role("button", name="Accept the offer").click()
        page.wait_for_load_state()
        assert "This offer was accepted by the physician with NPI " + accepter in page.inner_text("main")
        shoot(page, shots, "03-offer-accepted")
        # replayed: the browser goes back and submits the form again; it acts once, the page says what was done
        page.go_back()
        page.wait_for_load_state()
        if page.get_by_role("button", name="Accept the offer").count():
            page.get_by_role("button", name="Accept the offer").click()
            page.wait_for_load_state()
        assert "accepted by the physician with NPI " + accepter in page.inner_text("main")
        # opened again later: what was done and by whom
        assert page.goto(by_npi[accepter]).status == 200
        assert "accepted by the physician with NPI " + accepter in page.inner_text("main")

        st = poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["protocols"])
        assert st["physician_npi"] == accepter
        assert [o for o in st["offers"] if o["npi"] == accepter][-1]["status"] == "accepted"
        declined = [o for o in st["offers"] if o["npi"] == decliner][-1]
        assert declined["status"] == "declined"
        # the offers nobody answered are withdrawn: their links answer 410
        for npi, url in by_npi.items():
            if npi not in (decliner, accepter):
                gone = page.goto(url)
                assert gone.status == 410, npi
                shoot(page, shots, "04-offer-withdrawn")
                break

        # protocols: each with its SHA-256, then approve
        [protocols_link] = mailed_links(settings, wf, "protocols").values()
        assert page.goto(protocols_link).status == 200
        body = page.inner_text("main")
        for p in st["protocols"]:
            assert p["sha256"] in body
        page.get_by_text("Read the protocol").first.click()
        shoot(page, shots, "05-protocols")
        page.get_by_role("button", name=re.compile("Approve these")).click()
        page.wait_for_load_state()
        assert f"protocols were approved by the physician with NPI {accepter}" in page.inner_text("main")
        shoot(page, shots, "06-protocols-approved")
        shown = api.get(f"/onboardings/{wf}/protocols").json()  # the approval bound the documents the page showed
        assert sorted(p["sha256"] for p in shown) == sorted(p["sha256"] for p in st["protocols"])
        assert {p["status"] for p in shown} == {"approved"} and {p["approved_by"] for p in shown} == {accepter}

        # the protocol packet goes out as an envelope of its own: the director signs it (e-sign sandbox)
        poll(api, wf, lambda s: s["stage"] == "protocol_setup" and s["waiting_on"] == "signers")
        assert "signed" in mdco(env, "sandbox", "sign", wf).stdout

        # pharmacies confirm the prescriber account
        st = poll(api, wf, lambda s: s["stage"] == "pharmacy_coordination" and s["pharmacies"])
        packets = mailed_links(settings, wf, "pharmacy")
        assert len(packets) == len(st["pharmacies"])
        for i, (notice, url) in enumerate(sorted(packets.items())):
            assert page.goto(url).status == 200
            assert accepter in page.inner_text("main")
            shoot(page, shots, f"07-pharmacy-{i}")
            page.get_by_role("button", name="Confirm the prescriber account").click()
            page.wait_for_load_state()
            assert "The prescriber account was confirmed by the pharmacy" in page.inner_text("main")
            shoot(page, shots, f"08-pharmacy-{i}-confirmed")
        st = poll(api, wf, lambda s: s["stage"] == "agreements")
        assert all(p["status"] == "confirmed" for p in st["pharmacies"])

        # tampered and expired links
        token = protocols_link.rsplit("/", 1)[1]
        tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        assert page.goto(f"{settings.api_base_url}/a/{tampered}").status == 403
        assert "This link is not valid" in page.inner_text("main")
        shoot(page, shots, "09-tampered")
        expired = links.url(settings, wf, f"physician:{accepter}", "offer",
                            datetime.now(timezone.utc) - timedelta(minutes=1))
        # an expired link of a physician who never answered (a withdrawn offer, or nobody's when only two were out)
        other = [n for n in by_npi if n not in (decliner, accepter)] or ["1999999999"]
        stale = links.url(settings, wf, f"physician:{other[0]}", "offer",
                          datetime.now(timezone.utc) - timedelta(minutes=1))
        assert page.goto(expired).status == 200  # answered already: it still says what was done
        assert page.goto(stale).status == 410
        shoot(page, shots, "10-expired")

        assert api.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"}).status_code == 200


def test_forms_need_their_csrf_field_bodies_are_bounded_and_headers_are_set(seeded):
    settings, _ = seeded
    url = links.url(settings, "onboarding-nobody-here", "physician:1234567893", "offer",
                    datetime.now(timezone.utc) + timedelta(hours=1))
    with httpx.Client(timeout=15) as http:
        page = http.get(url)
        assert page.status_code == 410  # no such onboarding
        for name in ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"):
            assert name in page.headers, name
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in page.text and 'lang="en"' in page.text and "<h1>" in page.text
        forged = http.post(url, data={"csrf": "x" * 64, "decision": "accept"})
        assert forged.status_code == 403 and "could not be verified" in forged.text
        big = http.post(url, content=b"a=" + b"x" * (1024 * 1024 + 10),
                        headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        api = http.post(f"{settings.api_base_url}/onboardings", content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                        headers={**auth_headers(settings, "sales"), "content-type": "application/json"})
        assert api.status_code == 413
        signature = hashlib.sha256(b"").hexdigest()
        assert http.get(f"{settings.api_base_url}/a/{signature}").status_code == 403
