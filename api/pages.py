"""Answer pages: what a physician or a pharmacy opens from the link in their e-mail.

``GET /a/<token>`` shows the request (an offer; the protocols with each SHA-256; a prescriber-account
request, confirmed or declined with a reason; after launch, the director's chart review and adverse-event
acknowledgement) with a form, ``POST /a/<token>`` acts through the same service calls as the API (the same
update validators) or, for a review or an event, the same store calls as ``mdco reviews submit`` and
``mdco events ack``, with an idempotency key derived from the link so a double submit acts once.
Opened again after the answer, the page says what was done and by whom; a tampered link gets a 403
page, an expired or withdrawn one a 410 page naming whom to contact. Server-rendered (Jinja2), no
JavaScript, readable on a phone. CSRF: a random cookie per browser and a form field that is an HMAC
of it and the link.

Also here: the guards every response passes (:class:`GuardMiddleware`): bodies over 1 MiB get 413,
security headers (CSP, nosniff, frame deny, no referrer, HSTS when served over TLS).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, Path as PathParam, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api import links, service
from api.errors import MEDIA_TYPE as PROBLEM_TYPE, send_problem
from api.idempotency import use_key
from domain import limits
from domain.codes import Stage, oversight_id_for

log = logging.getLogger("mdco.api.pages")

MAX_BODY = 1024 * 1024
CSRF_COOKIE = "mdco_csrf"
TOKEN_PATTERN = r"^[A-Za-z0-9_.-]{10,1000}$"
DONE_WAIT_S = 10.0  # after a signal (pharmacy) the page waits this long for the status to show it

_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


class FormError(Exception):
    """A form field the page cannot use (HTTP 422, nothing changed); the message names the field."""


@dataclass
class Outcome:
    """What a link leads to now: ``open`` (show the form), ``done`` (answered) or ``gone`` (410)."""

    state: str
    title: str
    lines: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- who did it, in words
def _who(actor: str) -> str:
    kind, _, ident = actor.partition(":")
    if kind == "physician":
        return f"the physician with NPI {ident}"
    if kind == "pharmacy":
        return f"the pharmacy {ident}"
    if kind == "ops":
        return f"Medical Director Co. operations ({ident}) on your behalf"
    return actor


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value or "")


def _find_audit(entries: list[dict], action: str, pred: Callable[[dict], bool] = lambda e: True) -> dict | None:
    hits = [e for e in entries if e["action"] == action and pred(e)]
    return hits[-1] if hits else None


def _done(title: str, what: str, entry: dict | None, fallback_actor: str) -> Outcome:
    actor = entry["actor"] if entry else fallback_actor
    at = f" on {_when(entry['at'])}" if entry else ""
    return Outcome("done", title, [f"{what} by {_who(actor)}{at}.", "Nothing more is needed from you here."])


# ---------------------------------------------------------------- the state behind a link
class PageData:
    def __init__(self, request: Request, link: links.Link):
        self.request, self.link = request, link
        self.settings = request.app.state.settings

    async def client(self):
        return await self.request.app.state.clients.get()

    async def db(self, fn: Callable, *args) -> Any:
        from store.db import engine_from_settings

        return await asyncio.to_thread(lambda: fn(engine_from_settings(self.settings), *args))

    async def outcome(self) -> Outcome:
        if self.link.action in links.REF_ACTIONS:
            return await self._oversight()
        try:
            status = await service.get_status(await self.client(), self.link.workflow_id)
        except service.NotFound:
            return Outcome("gone", "This request no longer exists", ["The onboarding it belonged to is gone."])
        return await {"offer": self._offer, "protocols": self._protocols,
                      "pharmacy": self._pharmacy}[self.link.action](status)

    async def _audit(self) -> list[dict]:
        from store import audit

        return await self.db(audit.list_audit, self.link.workflow_id)

    async def _clinic(self, status) -> dict:
        from store import onboardings

        return await self.db(onboardings.get_clinic, status.clinic_key) or {"name": status.clinic_key}

    def _closed(self, status, title: str) -> Outcome | None:
        if status.stage == Stage.cancelled:
            return Outcome("gone", title, ["The clinic's onboarding was cancelled, so this request was withdrawn."])
        return None

    async def _offer(self, status) -> Outcome:
        from store import onboardings

        npi = self.link.party_id
        mine = [o for o in status.offers if o.npi == npi]
        offer = mine[-1] if mine else None
        title = "Medical director offer"
        if offer is None:
            return Outcome("gone", title, ["There is no offer to you in this onboarding."])
        if offer.status in ("accepted", "declined"):
            entry = _find_audit(await self._audit(), f"offer_{offer.status}",
                                lambda e: (e.get("detail") or {}).get("npi") == npi)
            return _done(title, f"This offer was {offer.status}", entry, f"physician:{npi}")
        closed = self._closed(status, title)
        if closed:
            return closed
        if offer.status == "lost":
            return Outcome("gone", title, ["Another physician accepted this clinic first, so the offer was withdrawn."])
        if offer.status == "withdrawn":
            return Outcome("gone", title, ["This offer was withdrawn."])
        if offer.status == "expired" or self.link.expired or offer.status != "open":
            return Outcome("gone", title, [f"This offer expired at {_when(offer.expires_at)}."])
        clinic = await self._clinic(status)
        plan = await self.db(onboardings.get_plan, self.link.workflow_id)
        retainer = plan.quote.monthly_usd if plan else (status.quote_monthly_usd or 0)
        share_percent = physician_share_percent(self.settings)
        return Outcome("open", title, context=dict(
            clinic_name=clinic.get("name"), states=clinic.get("states", []), services=clinic.get("services", []),
            care_model=clinic.get("care_model", ""), monthly_patients=clinic.get("monthly_patients", ""),
            oversight_mode=plan.oversight_mode if plan else "", oversight_reason=plan.oversight_reason if plan else "",
            chart_percent=plan.chart_review.percent if plan else "", chart_cadence=plan.chart_review.cadence_days
            if plan else "", dea_states=plan.dea_required_states if plan else [], retainer=retainer,
            share=None if share_percent is None else retainer * share_percent // 100, share_percent=share_percent,
            expires_at=_when(offer.expires_at), expires_at_iso=offer.expires_at.isoformat()))

    async def _protocols(self, status) -> Outcome:
        from store import onboardings

        npi = self.link.party_id
        title = "Protocols for your approval"
        docs = await self.db(onboardings.protocol_documents, self.link.workflow_id)
        if docs and all(d["approved_at"] for d in docs) and all(d["approved_by"] == npi for d in docs):
            entry = _find_audit(await self._audit(), "protocols_approved")
            return _done(title, f"These {len(docs)} protocols were approved", entry, f"physician:{npi}")
        closed = self._closed(status, title)
        if closed:
            return closed
        if status.physician_npi != npi:
            return Outcome("gone", title, ["You are no longer this clinic's medical director, so nothing is "
                                           "asked of you here."])
        if status.stage != Stage.protocol_setup or not docs or self.link.expired:
            return Outcome("gone", title, ["This approval is no longer open."])
        clinic = await self._clinic(status)
        return Outcome("open", title, context=dict(clinic_name=clinic.get("name"), protocols=docs,
                                                   digest=_protocols_digest(docs)))

    async def _oversight(self) -> Outcome:
        """A chart review or an adverse event (the record the link names) of a clinic under oversight."""
        from store import onboardings, oversight

        review = self.link.action == "review"
        title, thing = ("Chart review", "chart review") if review else ("Adverse event acknowledgement",
                                                                       "adverse event")
        row = await self.db(oversight.get_review if review else oversight.get_event, self.link.ref)
        if row is None or oversight_id_for(row["clinic_key"]) != self.link.workflow_id:
            return Outcome("gone", title, [f"There is no such {thing}."])
        by, at = (row["submitted_by"], row["submitted_at"]) if review else (row["acked_by"], row["acked_at"])
        if at is not None:
            what = (f"This chart review was submitted ({row['charts_reviewed']} charts, {row['deficiencies']} with "
                    "deficiencies)") if review else f"This {row['severity']} adverse event was acknowledged"
            return _done(title, what, {"actor": f"physician:{by}", "at": at}, "")
        clinic = await self.db(onboardings.get_clinic, row["clinic_key"]) or {}
        if clinic.get("status") != "active":
            return Outcome("gone", title, ["This clinic is no longer under oversight, so this request was withdrawn."])
        if clinic.get("physician_npi") != self.link.party_id:
            return Outcome("gone", title, ["You are no longer this clinic's medical director, so nothing is asked of "
                                           "you here."])
        due = row["due_at"] if review else row["ack_due_at"]
        if self.link.expired:
            return Outcome("gone", title, [f"This {thing} was due at {_when(due)}; operations have taken it over."])
        return Outcome("open", title, context=dict(clinic_name=clinic.get("name"), record=row, due_at=_when(due),
                                                   due_at_iso=due.isoformat(), reported_at=_when(row.get("reported_at"))))

    async def _pharmacy(self, status) -> Outcome:
        from store import roster

        pharmacy_id = self.link.party_id
        title = "Prescriber account request"
        assignment = next((p for p in status.pharmacies if p.pharmacy_id == pharmacy_id), None)
        if assignment is None:
            return Outcome("gone", title, ["This onboarding no longer asks your pharmacy for an account."])
        if assignment.status in ("confirmed", "declined"):
            entry = _find_audit(await self._audit(), f"pharmacy_{assignment.status}",
                                lambda e: e["actor"].endswith(f"pharmacy:{pharmacy_id}"))
            what = "The prescriber account was confirmed" if assignment.status == "confirmed" else \
                "The prescriber account request was declined"
            done = _done(title, what, entry, f"pharmacy:{pharmacy_id}")
            if assignment.status == "declined" and assignment.decline_reason:
                done.lines.insert(1, f"Reason given: {assignment.decline_reason}")
            return done
        closed = self._closed(status, title)
        if closed:
            return closed
        if status.stage != Stage.pharmacy_coordination or self.link.expired:
            return Outcome("gone", title, ["This request is no longer open."])
        clinic = await self._clinic(status)
        physician = await self.db(roster.get_physician, status.physician_npi) if status.physician_npi else None
        return Outcome("open", title, context=dict(
            clinic_name=clinic.get("name"), pharmacy_name=assignment.name or pharmacy_id,
            pharmacy_kind=assignment.kind.value, services=[s.value for s in assignment.services],
            physician_name=physician.display_name if physician else "", physician_npi=status.physician_npi,
            licenses=[f"{lic.state} {lic.number}" for lic in physician.licenses] if physician else [],
            dea=[f"{d.state} {d.number}" for d in physician.dea] if physician else []))

    async def act(self, form: dict[str, str]) -> str | None:
        """Carry out the form's decision; returns an error to show (None when done). ``FormError``: a field
        the page cannot use."""
        decision = form.get("decision", "")
        use_key(self.link.idempotency_key)  # this request's update id: a double submit acts once
        wf, party = self.link.workflow_id, self.link.party_id
        if self.link.action in ("review", "event"):
            return await self._act_oversight(decision, form)
        client = await self.client()
        if self.link.action == "offer" and decision in ("accept", "decline"):
            answer = await service.answer_offer(client, wf, party, decision == "accept",
                                                reason=str(form.get("reason", ""))[:1000])
            return None if answer.accepted or decision == "decline" else answer.message
        if self.link.action == "protocols" and decision == "approve":
            from store import onboardings

            docs = await self.db(onboardings.protocol_documents, wf)
            if form.get("sha256") != _protocols_digest(docs):
                return "The protocols changed since you opened this page; please read them again."
            # the digest matched: these are the documents the page showed; the approval is bound to them
            await service.approve_protocols(client, wf, party, sha256s=[d["sha256"] for d in docs])
            return None
        if self.link.action == "pharmacy" and decision == "confirm":
            account = form.get("account_number", "").strip()
            if not account or len(account) > limits.ACCOUNT_NUMBER_MAX or not account.isprintable():
                raise FormError("Prescriber account number: enter the account your pharmacy opened "
                                f"(at most {limits.ACCOUNT_NUMBER_MAX} characters).")
            await service.confirm_pharmacy(client, wf, party, account_number=account)
            return None
        if self.link.action == "pharmacy" and decision == "decline":
            reason = form.get("reason", "").strip()
            if not reason or len(reason) > 500:
                raise FormError("Reason: say in at most 500 characters why your pharmacy declines.")
            await service.decline_pharmacy(client, wf, party, reason)
            return None
        return "Please choose one of the buttons on the page."

    async def _act_oversight(self, decision: str, form: dict[str, str]) -> str | None:
        """The director submits the chart review or acknowledges the event: the same store calls as
        ``mdco reviews submit`` / ``mdco events ack`` (only the clinic's director; a repeat answers the first)."""
        from store import oversight
        from store.common import NotFound
        from store.tables import now_utc

        notes = form.get("notes", "").strip()
        if len(notes) > 2000:
            raise FormError("Notes: at most 2,000 characters.")
        try:
            if self.link.action == "review" and decision == "submit":
                charts, deficiencies = _count(form, "charts", "Charts reviewed"), \
                    _count(form, "deficiencies", "Charts with deficiencies")
                await self.db(oversight.submit_review, self.link.ref, self.link.party_id, charts, deficiencies,
                              notes, now_utc())
                return None
            if self.link.action == "event" and decision == "acknowledge":
                await self.db(oversight.ack_event, self.link.ref, self.link.party_id, notes, now_utc())
                await service.stop_event_watch(await self.client(), self.link.ref)
                return None
        except NotFound as exc:
            return str(exc)
        except oversight.Refused as exc:  # not the clinic's director, or submitted before with other counts
            raise service.Rejected(str(exc)) from None
        except ValueError as exc:  # counts that do not add up
            raise FormError(str(exc)) from None
        return "Please choose one of the buttons on the page."


def _count(form: dict[str, str], name: str, label: str) -> int:
    raw = form.get(name, "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise FormError(f"{label}: enter a whole number (0 or more).")
    return int(raw)


def physician_share_percent(settings) -> int | None:
    """The director's share of the retainer: ``MDCO_PHYSICIAN_SHARE_PERCENT`` if set, else the pricing data's."""
    from domain.rules import price_table

    configured = settings.physician_share_percent
    return configured if configured is not None else price_table().physician_share_percent


def _protocols_digest(docs: list[dict]) -> str:
    return hashlib.sha256("\n".join(f"{d['service']}:{d['sha256']}" for d in docs).encode()).hexdigest()


# ---------------------------------------------------------------- CSRF
def _csrf_value(settings, cookie: str, token: str) -> str:
    key = links.link_secrets(settings)[0].encode()
    return hmac.new(key, f"csrf|{cookie}|{token}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(settings, cookie: str | None, token: str, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(_csrf_value(settings, cookie, token), submitted)


# ---------------------------------------------------------------- rendering
def _render(request: Request, template: str, status_code: int, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _templates.get_template(template).render(nonce=nonce, contact=request.app.state.settings.ops_email,
                                                    **context)
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'")
    response.headers["Cache-Control"] = "no-store"
    return response


def _message(request: Request, status_code: int, title: str, lines: list[str], kind: str = "info") -> HTMLResponse:
    return _render(request, "message.html", status_code, title=title, lines=lines, kind=kind)


def _forbidden(request: Request, reason: str) -> HTMLResponse:
    return _message(request, 403, "This link is not valid",
                    [reason, "Please open the link exactly as it arrived in your e-mail."], kind="error")


def _outcome_page(request: Request, outcome: Outcome, link: links.Link, token: str) -> HTMLResponse:
    if outcome.state == "done":
        return _message(request, 200, outcome.title, outcome.lines, kind="done")
    if outcome.state == "gone":
        return _message(request, 410, outcome.title, outcome.lines + [
            "If you think this is a mistake, write to us at the address below."], kind="gone")
    settings = request.app.state.settings
    cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = _render(request, f"{link.action}.html", 200, title=outcome.title, action=f"/a/{token}",
                       csrf=_csrf_value(settings, cookie, token), **outcome.context)
    response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/a/",
                        secure=request.url.scheme == "https", max_age=7 * 86400)
    return response


def _read_link(request: Request, token: str) -> links.Link | HTMLResponse:
    try:
        return links.read(request.app.state.settings, token)
    except links.LinkInvalid as exc:
        log.info("answer link refused: %s", exc)
        return _forbidden(request, str(exc).capitalize() + ".")


def install(app: FastAPI, settings) -> None:
    """Mount ``GET``/``POST /a/{token}`` (public: the signed link is the credential)."""

    token_path = PathParam(pattern=TOKEN_PATTERN, description="the signed link from the e-mail")
    html = {"content": {"text/html": {}}}

    @app.get("/a/{token}", tags=["answer pages"], response_class=HTMLResponse,
             summary="The page behind an e-mailed answer link",
             responses={200: html, 403: {"description": "tampered link", **html},
                        410: {"description": "expired or withdrawn request", **html},
                        429: {"description": "opened too often (per link, per address); see Retry-After", **html}})
    async def answer_page(request: Request, token: str = token_path) -> HTMLResponse:
        link = _read_link(request, token)
        if isinstance(link, HTMLResponse):
            return link
        return _outcome_page(request, await PageData(request, link).outcome(), link, token)

    @app.post("/a/{token}", tags=["answer pages"], response_class=HTMLResponse,
              summary="Answer from the page (form POST with its CSRF field)",
              responses={303: {"description": "done; the page shows what was done"},
                         403: {"description": "tampered link or missing CSRF field", **html},
                         409: {"description": "the onboarding refused the answer", **html},
                         422: {"description": "a form field it cannot use (an HTML page naming it), or a token "
                                              "that is not one (problem details); nothing changed",
                               "content": {"text/html": {}, PROBLEM_TYPE: {
                                   "schema": {"$ref": "#/components/schemas/Problem"}}}},
                         410: {"description": "expired or withdrawn request", **html},
                         413: {"description": "body over 1 MiB"},
                         429: {"description": "too many answers (per link, per address); see Retry-After", **html},
                         503: {"description": "the answer could not be recorded now; nothing changed", **html}})
    async def answer_submit(request: Request, token: str = token_path) -> Response:
        link = _read_link(request, token)
        if isinstance(link, HTMLResponse):
            return link
        body = await request.body()
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}
        if not _csrf_ok(settings, request.cookies.get(CSRF_COOKIE), token, form.get("csrf")):
            return _forbidden(request, "This form could not be verified (it may have come from another site, "
                                       "or your browser blocks cookies).")
        data = PageData(request, link)
        outcome = await data.outcome()
        if outcome.state != "open":
            return _outcome_page(request, outcome, link, token) if outcome.state == "gone" else \
                RedirectResponse(f"/a/{token}", status_code=303)
        try:
            problem = await data.act(form)
        except FormError as exc:
            return _message(request, 422, outcome.title, [str(exc), "Nothing was changed; go back to correct it."],
                            kind="error")
        except service.Rejected as exc:
            problem = str(exc)
        except service.Unavailable:
            return _message(request, 503, "Please try again in a minute",
                            ["We could not record your answer just now. Nothing was changed."], kind="error")
        if problem:
            return _message(request, 409, outcome.title, [problem], kind="error")
        await _until_done(data)
        return RedirectResponse(f"/a/{token}", status_code=303)


async def _until_done(data: PageData) -> None:
    """A pharmacy's confirmation is a signal: wait (briefly) until the status shows it."""
    deadline = asyncio.get_running_loop().time() + DONE_WAIT_S
    while (await data.outcome()).state == "open" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- guards on every response
class BodyTooLarge(Exception):
    pass


DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


class GuardMiddleware:
    """413 for bodies over ``MAX_BODY`` (declared or streamed), and security headers on every answer."""

    def __init__(self, app: Callable[..., Awaitable[Any]], max_body: int = MAX_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, send)
            return
        started = False
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": _with_security_headers(scope, list(message.get("headers", [])))}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, send)

    async def _too_large(self, scope: dict, send: Callable) -> None:
        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_security_headers(scope, message["headers"])}
            await send(message)

        await send_problem(with_headers, 413, f"The request body is over {self.max_body} bytes.",
                           headers=[(b"connection", b"close")])


def _with_security_headers(scope: dict, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in headers}
    wanted = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
              (b"referrer-policy", b"no-referrer")]
    if scope.get("path") not in DOCS_PATHS:  # Swagger UI loads its script and styles from a CDN
        wanted.append((b"content-security-policy", DEFAULT_CSP.encode()))
    if scope.get("scheme") == "https":
        wanted.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers + [(k, v) for k, v in wanted if k not in present]


def install_guards(app: FastAPI) -> None:
    app.add_middleware(GuardMiddleware)
