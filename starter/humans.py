"""Simulated humans: the one driver the demo, the benchmarks and the tests use to play ops, physicians,
pharmacies and signers through the public paths (the HTTP API with a bearer token, optionally the
``mdco`` CLI for ops' plan approval, and the local e-sign server's signing, whose HMAC-signed Connect
webhook reaches the API). With ``Humans(via_pages=True)`` (the demo) physicians and pharmacies answer as
people do: they open the link in their e-mail (read from the SMTP sink's mailbox), GET the answer page and
post its form with its CSRF field, like a browser without JavaScript; the benches keep the API (cheaper).

What each human does is decided by one pure function, :func:`next_actions` (status in, actions out);
two executors carry the actions out: :func:`act` (sync, one status at a time, for a test's own loop)
and :class:`Driver` (asyncio, one task per onboarding, all concurrent, for the demo and the benches).

    from starter.humans import Humans, drive_to_launch
    statuses = drive_to_launch(settings, intakes)                       # sync wrapper, all to ``launched``
    statuses = await Driver(settings, Humans(decline_first={wf})).run(intakes)
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import re
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import httpx

from api import links
from api.auth import auth_headers
from config import Settings

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
PLAN_REASON = "benchmark: blocking findings reviewed by ops"
OPEN_ENVELOPE = ("created", "sent", "delivered")


def launched(status: dict) -> bool:
    return status.get("stage") == "launched"


# ---------------------------------------------------------------- inputs
def demo_intakes(n: int, run_id: str) -> list[dict]:
    """``n`` demo intakes cycling through the shipped ones, each with a fresh clinic key."""
    shipped = [json.loads(p.read_text()) for p in sorted((DEMO_DIR / "intakes").glob("*.json"))]
    out = []
    for i in range(n):
        intake = dict(shipped[i % len(shipped)])
        intake["clinic_key"] = f"{intake['clinic_key']}-{run_id}-{i}"[:64]
        out.append(intake)
    return out


def load_demo_data(engine):
    """Upsert the shipped roster and pharmacies (re-import resets the demo's capacity counters);
    the two import summaries."""
    from domain.roster import parse_pharmacies, parse_physicians
    from store import roster

    physicians, errors = parse_physicians((DEMO_DIR / "physicians.csv").read_text(), "csv")
    pharmacies, errors2 = parse_pharmacies((DEMO_DIR / "pharmacies.csv").read_text(), "csv")
    if errors or errors2:
        raise RuntimeError(f"shipped demo data is invalid: {(errors + errors2)[:3]}")
    return roster.upsert_physicians(engine, physicians), roster.upsert_pharmacies(engine, pharmacies)


def seed_demo_data(settings: Settings):
    """The shipped roster and pharmacies (upserts: safe to repeat); the two import summaries."""
    from store.db import engine_from_settings

    engine = engine_from_settings(settings)
    try:
        return load_demo_data(engine)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- what the humans do
@dataclass
class Humans:
    """How the simulated humans behave.

    ``sign``: signers sign (``False``: nobody signs the agreements, the onboarding stays in ``agreements``;
    stage 3's protocol packet is signed either way)
    ``decline_first``: workflow ids whose first offered physician declines (the next one accepts).
    ``plan_via_cli``: ops approve a plan with blocking findings through ``mdco plan approve`` (a
    subprocess) instead of ``POST .../plan/approve``.
    ``decline_pharmacy``: workflow ids whose first asked pharmacy declines (``pharmacy_reason``); the
    onboarding then asks the next qualifying one.
    ``via_pages``: physicians and pharmacies answer through the answer pages linked from their e-mails."""

    sign: bool = True
    decline_first: set[str] = field(default_factory=set)
    plan_via_cli: bool = False
    plan_reason: str = PLAN_REASON
    decline_pharmacy: set[str] = field(default_factory=set)
    pharmacy_reason: str = "not opening prescriber accounts for new clinics this quarter"
    decline_reason: str = "my panel is full this quarter"
    via_pages: bool = False


@dataclass
class Memo:
    """What the humans of one onboarding already did (so nothing is done twice needlessly)."""

    done: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)
    declined_pharmacies: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Action:
    """One human answer: ``kind`` in plan | accept | decline | protocols | pharmacy | pharmacy_decline | sign;
    ``target`` the NPI, pharmacy id or envelope id (``""`` for the plan)."""

    kind: str
    target: str = ""


def next_actions(st: dict, memo: Memo, humans: Humans) -> list[Action]:
    """What the humans do now that the onboarding shows ``st`` (empty: nobody is asked)."""
    wf, stage, waiting = st.get("workflow_id", ""), st.get("stage"), st.get("waiting_on")
    if stage == "needs_assessment" and waiting == "ops" and "plan" not in memo.done:
        return [Action("plan")]
    if stage == "matching" and not st.get("physician_npi"):
        open_offers = [o["npi"] for o in st.get("offers", []) if o["status"] == "open"]
        if not open_offers:
            return []
        decline = wf in humans.decline_first and not memo.declined
        return [Action("decline" if decline else "accept", open_offers[0])]
    if stage == "protocol_setup" and waiting != "signers" and st.get("protocols") and "protocols" not in memo.done:
        return [Action("protocols", st["physician_npi"])]
    if stage == "pharmacy_coordination":
        asked = [p["pharmacy_id"] for p in st.get("pharmacies", [])
                 if p["status"] == "packet_sent" and p["pharmacy_id"] not in memo.done]
        if asked and wf in humans.decline_pharmacy and not memo.declined_pharmacies:
            return [Action("pharmacy_decline", asked[0])]
        return [Action("pharmacy", pid) for pid in asked]
    if waiting == "signers" and (stage == "protocol_setup" or stage == "agreements" and humans.sign):
        return [Action("sign", e["envelope_id"]) for e in st.get("envelopes", [])
                if e.get("current", True) and e["status"] in OPEN_ENVELOPE and e["envelope_id"] not in memo.done]
    return []


def _record(memo: Memo, action: Action, ok: bool) -> None:
    if action.kind == "decline":
        memo.declined.add(action.target)  # declined once, whatever the answer: the next offer is accepted
    elif action.kind == "pharmacy_decline":
        memo.declined_pharmacies.add(action.target)  # likewise: the others confirm
    elif ok:
        memo.done.add(action.target or action.kind)
        if action.kind == "protocols":
            memo.done.add("protocols")


def prescriber_account(wf: str, pharmacy_id: str) -> str:
    """The account number a simulated pharmacy opens for this onboarding's director (stable per pair)."""
    return "RX-" + hashlib.sha256(f"{wf}:{pharmacy_id}".encode()).hexdigest()[:10].upper()


def _request(action: Action, wf: str, humans: Humans) -> tuple[str, dict | None]:
    """The API call of an action (path, JSON body); not for ``sign`` or a CLI plan approval."""
    if action.kind == "plan":
        return f"/onboardings/{wf}/plan/approve", {"reason": humans.plan_reason}
    if action.kind in ("accept", "decline"):
        return f"/onboardings/{wf}/offers/{action.target}/{action.kind}", None
    if action.kind == "pharmacy_decline":
        return f"/onboardings/{wf}/pharmacies/{action.target}/decline", {"reason": humans.pharmacy_reason}
    if action.kind == "protocols":
        return f"/onboardings/{wf}/protocols/approve", {"npi": action.target}
    if action.kind == "pharmacy":
        return (f"/onboardings/{wf}/pharmacies/{action.target}/confirm",
                {"account_number": prescriber_account(wf, action.target)})
    raise ValueError(f"no API call for {action.kind}")


def _plan_cli(wf: str, reason: str) -> list[str]:
    return [sys.executable, "-m", "starter", "plan", "approve", wf, "--reason", reason]


def _retry_after(response: httpx.Response, cap: float = 5.0) -> float:
    try:
        return min(cap, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _signed(response: httpx.Response) -> bool:
    # 400 ENVELOPE_INVALID_STATUS: it is no longer open (signed before, voided, expired): nothing to do
    return response.status_code in (200, 400)


def act(api: httpx.Client, settings: Settings, st: dict, done: set[str] | Memo,
        humans: Humans | None = None) -> None:
    """What each human does when the onboarding shows ``st`` (every call safe to repeat); sync, one
    status at a time, for tests that run their own loop. ``done`` remembers what was done."""
    import subprocess

    from esign.sandbox import admin_client

    humans = humans or Humans()
    memo = done if isinstance(done, Memo) else Memo(done=done)
    wf = st["workflow_id"]
    for action in next_actions(st, memo, humans):
        if action.kind == "sign":
            with admin_client(settings, timeout=15) as admin:
                ok = _signed(admin.post(f"/admin/envelopes/{action.target}/sign"))
        elif action.kind == "plan" and humans.plan_via_cli:
            ok = subprocess.run(_plan_cli(wf, humans.plan_reason), capture_output=True).returncode == 0
        else:
            path, body = _request(action, wf, humans)
            ok = api.post(path, json=body).status_code == 200
        _record(memo, action, ok)
    if not isinstance(done, Memo):
        done |= memo.done


# ---------------------------------------------------------------- answer pages, as a browser without JavaScript
LINK = re.compile(r"https?://[^\s<>\"]+/a/[A-Za-z0-9_.-]+")
HIDDEN = re.compile(r'<input type="hidden" name="([A-Za-z0-9_]+)" value="([^"]*)">')
#: the page and form decision of each action a physician or pharmacy takes
PAGE_ANSWERS = {"accept": ("offer", "accept"), "decline": ("offer", "decline"), "protocols": ("protocols", "approve"),
                "pharmacy": ("pharmacy", "confirm"), "pharmacy_decline": ("pharmacy", "decline")}


class Mailbox:
    """The answer links in the SMTP sink's mailbox, by (workflow id, action, party id, ref); the newest
    link wins (a later offer round, a new packet). Reads only the messages it has not read yet, and none
    stored before ``since`` (a Unix time: earlier runs' mail)."""

    def __init__(self, settings: Settings, since: float = 0.0):
        self.settings, self.since = settings, since
        self._read: set[str] = set()
        self._links: dict[tuple[str, str, str, str], str] = {}

    def link(self, workflow_id: str, action: str, party_id: str, ref: str = "") -> str | None:
        self._scan()
        return self._links.get((workflow_id, action, party_id, ref))

    def links(self, workflow_id: str, action: str) -> dict[str, str]:
        """``{party id: link}`` of ``action`` for ``workflow_id``."""
        self._scan()
        return {k[2]: url for k, url in self._links.items() if k[:2] == (workflow_id, action)}

    def _scan(self) -> None:
        from email import policy
        from email.parser import BytesParser

        folder = self.settings.mail_dir
        if not folder.is_dir():
            return
        for path in sorted(p for p in folder.glob("*.eml") if p.name not in self._read):
            self._read.add(path.name)
            if self.since and path.stat().st_mtime < self.since:
                continue
            with open(path, "rb") as fh:
                message = BytesParser(policy=policy.default).parse(fh)
            for url in LINK.findall(message.get_content()):  # the mailer sends plain text
                try:
                    link = links.read(self.settings, url.rsplit("/", 1)[1])
                except links.LinkInvalid:
                    continue  # another stack's link (an old run under another secret)
                self._links[(link.workflow_id, link.action, link.party_id, link.ref)] = url


async def answer_page(url: str, decision: str, fields: dict[str, str] | None = None,
                      timeout: float = 30.0) -> bool | None:
    """Open an answer page and post its form with ``decision`` and ``fields`` (its hidden CSRF and other
    fields as served), in a browser of its own (a fresh cookie jar, like each person's own). True when done
    (or done already), False when the page refuses or the request is gone, None when to try again later
    (rate-limited, or not recorded just now)."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as browser:
        page = await browser.get(url)
        if page.status_code in (429, 503):
            return None
        if page.status_code != 200:
            return False
        form = {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}
        if "csrf" not in form:
            return True  # no form: the page says what was done already
        result = await browser.post(url, data={**form, **(fields or {}), "decision": decision})
        if result.status_code in (429, 503):
            return None
        return result.status_code == 200


# ---------------------------------------------------------------- the concurrent driver
@dataclass
class Tally:
    """What the driver did: requests by kind, and status polls."""

    polls: int = 0
    rate_limited: int = 0  # answers 429 (waited out, then asked again)
    transport_errors: int = 0  # requests that got no HTTP answer (asked again later)
    status_unavailable: int = 0  # status reads answered 503 (no worker answered the query in time)
    actions: dict[str, int] = field(default_factory=dict)
    answer_latency_s: list[float] = field(default_factory=list)  # action sent -> status shows it moved on


class Driver:
    """Plays the humans of many onboardings at once: one asyncio task per onboarding polls its status
    (quickly right after acting, backing off to ``poll_max_s`` while nobody is asked) and answers.

    ``on_status(wf, status)`` is called with every status read (the demo's live table); ``mail_since``: with
    ``via_pages``, the mailbox's messages older than this Unix time are not read (earlier runs')."""

    def __init__(self, settings: Settings, humans: Humans | None = None, *, poll_min_s: float = 0.05,
                 poll_max_s: float = 0.5, max_connections: int = 64, start_concurrency: int = 8,
                 on_status: Callable[[str, dict], None] | None = None, role: str = "ops", subject: str = "humans",
                 mail_since: float = 0.0):
        self.settings, self.humans = settings, humans or Humans()
        self.poll_min_s, self.poll_max_s = poll_min_s, poll_max_s
        self.max_connections, self.start_concurrency = max_connections, start_concurrency
        self.on_status, self.role, self.subject = on_status, role, subject
        self.statuses: dict[str, dict] = {}
        self.memos: dict[str, Memo] = {}
        self.tally = Tally()
        self.mailbox = Mailbox(settings, since=mail_since)

    def _clients(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        api = httpx.AsyncClient(base_url=self.settings.api_base_url, timeout=30, limits=limits,
                                headers=auth_headers(self.settings, self.role, self.subject))
        from esign.sandbox import admin_base_url

        ctx = ssl.create_default_context(cafile=self.settings.resolved_docusign_ca_cert)
        esign = httpx.AsyncClient(base_url=admin_base_url(self.settings), verify=ctx, timeout=30, limits=limits)
        return api, esign

    async def start(self, api: httpx.AsyncClient, intakes: Iterable[dict]) -> list[str]:
        """``POST /onboardings`` for each intake (``start_concurrency`` at a time); the workflow ids."""
        gate = asyncio.Semaphore(self.start_concurrency)

        async def one(intake: dict) -> str:
            async with gate:
                r = await api.post("/onboardings", json=intake)
                while r.status_code == 429:
                    self.tally.rate_limited += 1
                    await asyncio.sleep(_retry_after(r))
                    r = await api.post("/onboardings", json=intake)
            if r.status_code not in (200, 202):
                raise RuntimeError(f"starting {intake['clinic_key']} failed: {r.status_code} {r.text[:500]}")
            return r.json()["workflow_id"]

        return list(await asyncio.gather(*(one(i) for i in intakes)))

    async def run(self, intakes: Iterable[dict] = (), *, workflow_ids: Iterable[str] = (),
                  until: Callable[[dict], bool] = launched, timeout: float = 240.0) -> dict[str, dict]:
        """Start ``intakes`` (and follow ``workflow_ids`` already started), play every human until
        ``until`` holds for all; their last statuses. ``TimeoutError`` names the stuck ones."""
        api, esign = self._clients()
        async with api, esign:
            wfs = [*workflow_ids, *await self.start(api, intakes)]
            for wf in wfs:
                self.statuses.setdefault(wf, {})
                self.memos.setdefault(wf, Memo())
            tasks = [asyncio.create_task(self._follow(api, esign, wf, until)) for wf in wfs]
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            for t in done:
                t.result()  # re-raise a human's failure
        stuck = {wf: (s.get("stage"), s.get("waiting_on"), s.get("waiting_reason"))
                 for wf, s in self.statuses.items() if not (s and until(s))}
        if stuck:
            raise TimeoutError(f"not there after {timeout:.0f} s: {stuck}")
        return dict(self.statuses)

    async def _follow(self, api: httpx.AsyncClient, esign: httpx.AsyncClient, wf: str,
                      until: Callable[[dict], bool]) -> None:
        delay = self.poll_min_s
        memo = self.memos[wf]
        while True:
            try:
                r = await api.get(f"/onboardings/{wf}")
            except httpx.TransportError:  # the API restarting or stalled (chaos): ask again later
                self.tally.transport_errors += 1
                await asyncio.sleep(self.poll_max_s)
                continue
            self.tally.polls += 1
            if r.status_code == 429:  # rate-limited: wait as told (capped), then carry on
                self.tally.rate_limited += 1
                await asyncio.sleep(_retry_after(r))
                continue
            if r.status_code == 503:
                self.tally.status_unavailable += 1
            if r.status_code == 200:
                st = self.statuses[wf] = r.json()
                if self.on_status:
                    self.on_status(wf, st)
                if until(st):
                    return
                actions = next_actions(st, memo, self.humans)
                for action in actions:
                    ok = await self._do(api, esign, wf, action)
                    if ok is not None:  # None: not now (its e-mail has not arrived yet, or rate-limited)
                        _record(memo, action, ok)
                        self.tally.actions[action.kind] = self.tally.actions.get(action.kind, 0) + 1
                delay = self.poll_min_s if actions else min(self.poll_max_s, delay * 2)
            await asyncio.sleep(delay)

    async def _do(self, api: httpx.AsyncClient, esign: httpx.AsyncClient, wf: str, action: Action) -> bool | None:
        if self.humans.via_pages and action.kind in PAGE_ANSWERS:
            return await self._answer_page(wf, action)
        if action.kind == "sign":
            for attempt in range(5):  # admin calls are not fault-injected, but be robust
                try:
                    return _signed(await esign.post(f"/admin/envelopes/{action.target}/sign"))
                except httpx.TransportError:
                    await asyncio.sleep(0.5 * (attempt + 1))
            return False
        if action.kind == "plan" and self.humans.plan_via_cli:
            proc = await asyncio.create_subprocess_exec(*_plan_cli(wf, self.humans.plan_reason),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            _, stderr = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"mdco plan approve {wf} failed: {stderr.decode()[-500:]}")
            return True
        path, body = _request(action, wf, self.humans)
        try:
            r = await api.post(path, json=body)
        except httpx.TransportError:  # not answered: the next status read asks again
            self.tally.transport_errors += 1
            return False
        if r.status_code == 429:
            self.tally.rate_limited += 1
        return r.status_code == 200

    async def _answer_page(self, wf: str, action: Action) -> bool | None:
        page, decision = PAGE_ANSWERS[action.kind]
        url = self.mailbox.link(wf, page, action.target)
        if url is None:
            return None
        fields = {"decline": {"reason": self.humans.decline_reason},
                  "pharmacy_decline": {"reason": self.humans.pharmacy_reason},
                  "pharmacy": {"account_number": prescriber_account(wf, action.target)}}
        try:
            ok = await answer_page(url, decision, fields.get(action.kind))
        except httpx.TransportError:  # the API restarting or stalled: the next status read tries again
            self.tally.transport_errors += 1
            return None
        if ok is None:
            self.tally.rate_limited += 1  # 429, or 503 (nothing recorded): tried again later
        return ok


def drive_to_launch(settings: Settings, intakes: list[dict], timeout: float = 240.0, *,
                    until: Callable[[dict], bool] = launched, sign: bool = True,
                    humans: Humans | None = None) -> dict[str, dict]:
    """Start the onboardings and play every human until ``until`` holds for all (default: all
    ``launched``); their last statuses. ``sign=False``: nobody signs envelopes. Raises
    ``TimeoutError`` (with the stuck ones' stages) if they do not all get there in time."""
    humans = humans or Humans(sign=sign)
    return asyncio.run(Driver(settings, humans).run(intakes, until=until, timeout=timeout))

