"""Answer pages as people use them: a real browser (Playwright driving Debian's chromium, never a
downloaded one) opens the links from the e-mails in the SMTP sink of the real embedded stack and clicks
decline, accept, protocol approval, a pharmacy's decline (the next qualifying one is asked) and
confirmation, and after launch the director's chart review and adverse-event acknowledgement; tampered,
replayed, expired and other directors' links are tried. Screenshots of every page are kept under ``<pytest tmp>/answer-pages`` (or
``$MDCO_TEST_ARTIFACTS/answer-pages``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api import links
from api.auth import auth_headers
from starter.demo import DEMO_DIR
from starter.humans import Mailbox
from tests.test_integration import mdco, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def mailed_links(settings, wf: str, action: str, timeout: float = 30.0) -> dict[str, str]:
    """``{party id: link}`` of the answer links for ``action`` mailed about ``wf`` (the newest of each)."""
    deadline = time.monotonic() + timeout
    mailbox = Mailbox(settings)
    while True:
        found = mailbox.links(wf, action)
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

        # the first pharmacy declines with a reason; the next qualifying one is asked; they confirm
        st = poll(api, wf, lambda s: s["stage"] == "pharmacy_coordination" and s["pharmacies"])
        packets = mailed_links(settings, wf, "pharmacy")
        assert len(packets) == len(st["pharmacies"])
        decliner_rx, url = sorted(packets.items())[0]
        # the director's credentials travel behind the signed link (the page), never in the mail body
        assert page.goto(url).status == 200
        shown = page.locator("dt:text-is('Licences') + dd").inner_text()
        licence_numbers = [held.split(" ", 1)[1] for held in shown.split(", ")]
        packet_mail = [m.read_text(errors="replace") for m in settings.mail_dir.glob("*.eml")]
        packet_mail = [body for body in packet_mail if "Prescriber packet" in body]
        assert licence_numbers and packet_mail
        assert not any(number in body for number in licence_numbers for body in packet_mail)
        page.get_by_role("button", name="Decline the request").click()  # no reason: refused, nothing changed
        page.wait_for_load_state()
        assert "Reason:" in page.inner_text("main")
        assert poll(api, wf, lambda s: s["pharmacies"])["pharmacies"][0]["status"] == "packet_sent"
        assert page.goto(url).status == 200
        page.get_by_label(re.compile("^Reason")).fill("We do not ship to Oklahoma")
        shoot(page, shots, "07-pharmacy-decline")
        page.get_by_role("button", name="Decline the request").click()
        page.wait_for_load_state()
        body = page.inner_text("main")
        assert f"declined by the pharmacy {decliner_rx}" in body and "We do not ship to Oklahoma" in body
        shoot(page, shots, "07-pharmacy-declined")
        st = poll(api, wf, lambda s: len(s["pharmacies"]) > len(packets))
        assert {p["pharmacy_id"]: p["status"] for p in st["pharmacies"]}[decliner_rx] == "declined"
        packets = {k: v for k, v in mailed_links(settings, wf, "pharmacy").items() if k != decliner_rx}
        assert len(packets) == len(st["pharmacies"]) - 1
        for i, (notice, url) in enumerate(sorted(packets.items())):
            assert page.goto(url).status == 200
            assert accepter in page.inner_text("main")
            if i == 0:  # no account number: refused with the field named, nothing changed
                page.get_by_role("button", name="Confirm the prescriber account").click()
                page.wait_for_load_state()
                assert "Prescriber account number:" in page.inner_text("main")
                assert page.goto(url).status == 200
            page.get_by_label(re.compile("^Prescriber account number")).fill(f"RX-{i}-4471")
            shoot(page, shots, f"07-pharmacy-{i}")
            page.get_by_role("button", name="Confirm the prescriber account").click()
            page.wait_for_load_state()
            assert "The prescriber account was confirmed by the pharmacy" in page.inner_text("main")
            shoot(page, shots, f"08-pharmacy-{i}-confirmed")
        st = poll(api, wf, lambda s: s["stage"] == "agreements")
        assert [p["status"] for p in st["pharmacies"] if p["pharmacy_id"] != decliner_rx] == ["confirmed"] * len(packets)
        assert sorted(p["account_number"] for p in st["pharmacies"] if p["pharmacy_id"] != decliner_rx) == [
            f"RX-{i}-4471" for i in range(len(packets))]

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


def run_async(coro):
    """Run ``coro`` to its end in a thread of its own: Playwright's sync API keeps an event loop running in
    this one while the module's browser is open."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def submit(page, button: str, fields: dict[str, str]) -> str:
    """Fill the labelled fields, press ``button``; the text of the page that follows."""
    for label, value in fields.items():
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()
    return page.inner_text("main")


def clinic_under_oversight(settings) -> tuple[str, str, object]:
    """A launched clinic (Glow's intake, a fresh key) under a demo director, as the launch leaves it in the
    store; its key, the director's NPI and the oversight activities of the stack (its SMTP sink)."""
    from activities.onboarding import OnboardingActivities
    from activities.oversight import OversightActivities
    from domain.intake import Intake
    from store import onboardings, roster
    from store.db import engine_from_settings

    engine = engine_from_settings(settings)
    key = f"pages-ov-{uuid.uuid4().hex[:8]}"
    intake = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    intake["clinic_key"] = key
    onboardings.upsert_clinic(engine, Intake.model_validate(intake))
    npi = roster.list_physicians(engine, licensed_in=["TX", "OK"], trim_to_states=True)[0].npi
    now = datetime.now(timezone.utc)
    onboardings.record_onboarding(engine, f"onboarding-{key}", key, stage="launched", launched_at=now)
    onboardings.activate_clinic(engine, key, npi, now)
    return key, npi, OversightActivities(OnboardingActivities(settings, engine))


def test_the_director_reviews_charts_and_acknowledges_an_event_in_a_browser(seeded, page, shots):
    from domain.messages import ChartReviewRequest
    from mdco_temporal.client import connect
    from store import oversight

    settings, env = seeded
    key, npi, acts = clinic_under_oversight(settings)
    wf = f"oversight-{key}"
    due = datetime.now(timezone.utc) + timedelta(days=14)
    acts.open_chart_review(ChartReviewRequest(clinic_key=key, physician_npi=npi, cycle=1, sample_percent=10,
                                              due_at=due))
    review_id = f"{key}-cr-1"
    url = Mailbox(settings).link(wf, "review", npi, review_id)
    assert url, "the chart-review e-mail carries its answer link"

    # the chart review: counts that do not add up are refused (nothing changed), then submitted
    assert page.goto(url).status == 200
    assert page.get_by_role("heading", name="Chart review").is_visible()
    body = page.inner_text("main")
    assert "Glow Aesthetics Austin LLC" in body and review_id in body
    shoot(page, shots, "11-chart-review")
    refused = submit(page, "Submit the chart review", {"Charts reviewed": "3", "Charts with deficiencies": "5"})
    assert "more than the 3 charts reviewed" in refused
    assert oversight.get_review(acts.engine, review_id)["status"] == "open"
    assert page.goto(url).status == 200
    done = submit(page, "Submit the chart review", {"Charts reviewed": "12", "Charts with deficiencies": "1",
                                                    "Notes (optional)": "one chart lacks a good-faith exam note"})
    assert f"submitted (12 charts, 1 with deficiencies) by the physician with NPI {npi}" in done
    shoot(page, shots, "12-chart-review-submitted")
    review = oversight.get_review(acts.engine, review_id)
    assert (review["status"], review["submitted_by"], review["charts_reviewed"], review["deficiencies"]) == (
        "submitted", npi, 12, 1)
    assert [a["deficiencies"] for a in oversight.corrective_actions(acts.engine, key)] == [1]
    page.go_back()  # the form submitted again: the page says what was done, nothing changes
    page.wait_for_load_state()
    if page.get_by_role("button", name="Submit the chart review").count():
        page.get_by_role("button", name="Submit the chart review").click()
        page.wait_for_load_state()
    assert f"by the physician with NPI {npi}" in page.inner_text("main")
    assert oversight.get_review(acts.engine, review_id)["submitted_at"] == review["submitted_at"]

    # links bound to another director, or to a review of another clinic, or expired, lead nowhere
    oversight.open_review(acts.engine, f"{key}-cr-2", key, npi, 2, 10, datetime.now(timezone.utc), due)
    other = links.review_url(settings, key, f"{key}-cr-2", "1999999999", due)
    assert page.goto(other).status == 410 and "no longer this clinic's medical director" in page.inner_text("main")
    foreign = links.url(settings, "oversight-another-clinic", f"physician:{npi}", "review", due, f"{key}-cr-2")
    assert page.goto(foreign).status == 410
    expired = links.review_url(settings, key, f"{key}-cr-2", npi, datetime.now(timezone.utc) - timedelta(days=30))
    assert page.goto(expired).status == 410 and "operations have taken it over" in page.inner_text("main")
    token = url.rsplit("/", 1)[1]
    assert page.goto(f"{settings.api_base_url}/a/{token[:-4]}AAAA").status == 403

    # an adverse event the clinic reports (mdco events report): its director acknowledges it on the page
    event_id = json.loads(mdco(env, "events", "report", key, "--severity", "serious", "--summary",
                               "patient fainted after an IV infusion", "--json").stdout)["event_id"]
    url = Mailbox(settings).link(wf, "event", npi, event_id)
    assert url, "the adverse-event e-mail carries its answer link"
    assert page.goto(url).status == 200
    body = page.inner_text("main")
    assert "serious" in body and "patient fainted after an IV infusion" in body
    shoot(page, shots, "13-adverse-event")
    done = submit(page, "Acknowledge the event", {"Notes (optional)": "called the patient; recovered"})
    assert f"serious adverse event was acknowledged by the physician with NPI {npi}" in done
    shoot(page, shots, "14-adverse-event-acknowledged")
    event = oversight.get_event(acts.engine, event_id)
    assert (event["status"], event["acked_by"], event["ack_notes"]) == ("acknowledged", npi,
                                                                        "called the patient; recovered")

    async def watch_result() -> str:  # the event's watch heard it and ended without escalating
        client = await connect(settings)
        return await asyncio.wait_for(client.get_workflow_handle(f"adverse-event-{event_id}").result(), 60)

    assert run_async(watch_result()) == "acknowledged"
    assert page.goto(url).status == 200 and "acknowledged by the physician" in page.inner_text("main")


def test_the_retainer_share_comes_from_the_pricing_data_unless_configured():
    from pydantic import ValidationError

    from api.pages import physician_share_percent
    from config import Settings
    from domain.rules import price_table

    assert physician_share_percent(Settings(physician_share_percent=None)) == price_table().physician_share_percent == 60
    assert physician_share_percent(Settings(physician_share_percent=55)) == 55
    with pytest.raises(ValidationError, match="physician_share_percent"):
        Settings(physician_share_percent=101)


def test_the_simulated_humans_answer_on_the_pages_from_their_mails(seeded):
    """``Humans(via_pages=True)`` (what ``mdco demo`` plays): offers, protocols and pharmacy requests
    answered on the pages, so the audit names the physicians and pharmacies themselves (the API mode
    records ops acting on their behalf); the first physician and the first pharmacy decline with reasons."""
    from starter.humans import Driver, Humans
    from store import audit
    from store.db import engine_from_settings

    settings, _ = seeded
    key = f"pages-humans-{uuid.uuid4().hex[:8]}"
    wf = f"onboarding-{key}"
    intake = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    intake["clinic_key"] = key
    humans = Humans(via_pages=True, decline_first={wf}, decline_pharmacy={wf})
    driver = Driver(settings, humans, subject="pages-test", mail_since=time.time() - 1)
    st = run_async(driver.run([intake], until=lambda s: s["stage"] == "agreements", timeout=240))[wf]
    assert [o["reason"] for o in st["offers"] if o["status"] == "declined"] == [humans.decline_reason]
    declined = [p for p in st["pharmacies"] if p["status"] == "declined"]
    assert [p["decline_reason"] for p in declined] == [humans.pharmacy_reason]
    assert {p["status"] for p in st["pharmacies"] if p not in declined} == {"confirmed"}
    actors = {e["action"]: e["actor"] for e in audit.list_audit(engine_from_settings(settings), wf)}
    assert actors["offer_declined"].startswith("physician:") and actors["offer_accepted"] == f"physician:{st['physician_npi']}"
    assert actors["protocols_approved"] == f"physician:{st['physician_npi']}"
    assert actors["pharmacy_declined"] == f"pharmacy:{declined[0]['pharmacy_id']}"
    assert actors["pharmacy_confirmed"].startswith("pharmacy:")
    assert driver.tally.actions["pharmacy_decline"] == 1 and driver.tally.actions["decline"] == 1
    with httpx.Client(base_url=settings.api_base_url, timeout=30, headers=auth_headers(settings, "ops", "olga")) as api:
        assert api.post(f"/onboardings/{wf}/cancel", json={"reason": "test over"}).status_code == 200
