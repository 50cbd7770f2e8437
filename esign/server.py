"""Local DocuSign-compatible server (``python -m esign.server``): OAuth JWT grant, the eSignature
REST v2.1 subset the adapter uses, Connect webhooks, and admin endpoints that stand in for the
humans who sign. HTTPS only, with its own CA, so the real ``docusign-esign`` SDK runs unchanged."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import random
import secrets
import time
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlencode

import jwt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from config import Settings
from esign import envelopes as lifecycle
from esign.certs import ServerMaterials, ensure_materials
from esign.connect import parse_timestamp
from esign.delivery import ConnectDispatcher
from esign.envelopes import DocuSignError
from esign.knobs import RUNTIME_KNOBS, ServerKnobs
from esign.pdf import build_pdf, html_to_text
from esign.state import EnvelopeStore, custom_field_value

log = logging.getLogger("esign.server")

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REST_PREFIX = "/restapi/v2.1/accounts/"


def _error(exc: DocuSignError) -> JSONResponse:
    return JSONResponse({"errorCode": exc.code, "message": exc.message}, exc.status, headers=exc.headers)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


class _Limiter:
    """DocuSign's hourly per-account limit (always reported) plus an optional burst limit."""

    def __init__(self, knobs: ServerKnobs):
        self.knobs = knobs
        self.hour: dict[str, tuple[int, int]] = {}  # account -> (window start, count)
        self.burst: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _bump(table: dict, account: str, window: int) -> tuple[int, int]:
        now = int(time.time())
        start, count = table.get(account, (now, 0))
        if now >= start + window:
            start, count = now, 0
        table[account] = (start, count + 1)
        return start + window, count + 1

    def check(self, account: str) -> dict[str, str]:
        limit = self.knobs.rate_limit_per_hour
        reset, used = self._bump(self.hour, account, 3600)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(reset),
        }
        if used > limit:
            raise DocuSignError(429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED",
                                f"The maximum number of hourly API invocations has been exceeded. Limit: {limit}.", headers)
        if self.knobs.burst_limit:
            b_reset, b_used = self._bump(self.burst, account, self.knobs.burst_window_s)
            if b_used > self.knobs.burst_limit:
                headers = {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(b_reset)}
                raise DocuSignError(429, "BURST_APIINVOCATION_LIMIT_EXCEEDED",
                                    f"The maximum number of burst API invocations has been exceeded. "
                                    f"Limit: {self.knobs.burst_limit} per {self.knobs.burst_window_s} s.", headers)
        return headers


class EsignServer:
    """State and behaviour behind the routes; one per process."""

    def __init__(self, settings: Settings, knobs: ServerKnobs, materials: ServerMaterials):
        self.settings = settings
        self.knobs = knobs
        self.materials = materials
        self.jwt_public_key = materials.jwt_public.read_bytes()
        self.store = EnvelopeStore(settings.esign_dir / "state.json")
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.signing_links: dict[str, dict] = {}
        self.limiter = _Limiter(knobs)
        self.dispatcher = ConnectDispatcher(settings.hmac_keys, knobs, str(materials.ca_cert))
        self.calls: dict[str, dict[str, int]] = {}
        self.fault_rng = random.Random(knobs.fault_seed)
        self.injected_faults = 0
        self.oauth_counts = {"token_issued": 0, "token_rejected": 0, "userinfo": 0}

    # ------------------------------------------------------------------ helpers
    def count(self, account: str, operation: str) -> None:
        per = self.calls.setdefault(account, {})
        per[operation] = per.get(operation, 0) + 1

    def token_valid(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and expiry > time.time()

    def envelope(self, account: str, envelope_id: str) -> dict:
        env = self.store.get(envelope_id)
        if env is None or env["accountId"] != account:
            raise DocuSignError(404, "ENVELOPE_DOES_NOT_EXIST",
                                "The envelope specified either does not exist or you have no rights to it.")
        return env

    def commit(self, envelope: dict, events: list[tuple[str, str | None]]) -> None:
        self.store.put(envelope)
        self.dispatcher.emit(envelope, events)

    def combined_pdf(self, envelope: dict) -> bytes:
        sections = []
        for doc in envelope["documents"]:
            raw = base64.b64decode(doc["documentBase64"])
            if doc["fileExtension"] in ("html", "htm"):
                text = html_to_text(raw)
            elif doc["fileExtension"] == "txt":
                text = raw.decode("utf-8", "replace")
            else:
                text = (f"[{doc['fileExtension'].upper()} document of {len(raw)} bytes, "
                        f"sha256 {hashlib.sha256(raw).hexdigest()}]")
            sections.append((f"{doc['name']} (document {doc['documentId']})", text))
        lines = [
            f"Envelope Id: {envelope['envelopeId']}",
            f"Subject: {envelope['emailSubject']}",
            f"Status: {envelope['status']}",
            f"Created: {envelope['createdDateTime']}",
            f"Sent: {envelope.get('sentDateTime', '')}",
            f"Completed: {envelope.get('completedDateTime', '')}",
            "",
            "Signer events:",
        ]
        for s in envelope["recipients"]["signers"]:
            lines.append(f"  {s['name']} <{s['email']}> routing order {s['routingOrder']}: {s['status']}"
                         f" {s.get('signedDateTime') or s.get('declinedDateTime') or ''}")
        digest = hashlib.sha256(json.dumps(envelope["documents"], sort_keys=True).encode()).hexdigest()
        lines += ["", f"Document set sha256: {digest}", "Issued by the mdco local e-sign server."]
        sections.append(("Certificate of Completion", "\n".join(lines)))
        return build_pdf(sections)


def _is_local(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocuSignError(400, "INVALID_REQUEST_BODY", f"The request body is not valid JSON: {exc}") from None


def create_app(settings: Settings, knobs: ServerKnobs | None = None) -> FastAPI:
    knobs = knobs or ServerKnobs()
    materials = ensure_materials(settings.esign_dir)
    srv = EsignServer(settings, knobs, materials)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await srv.dispatcher.start()
        yield
        await srv.dispatcher.stop()

    app = FastAPI(title="mdco local e-sign server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.esign = srv

    @app.exception_handler(DocuSignError)
    async def _docusign_error(_request: Request, exc: DocuSignError):
        return _error(exc)

    @app.middleware("http")
    async def rest_guard(request: Request, call_next):
        """What DocuSign does before any REST handler: auth, accounting, limits (and our faults)."""
        path = request.url.path
        if path.startswith("/admin") and not _is_local(request):
            return JSONResponse({"errorCode": "FORBIDDEN", "message": "admin endpoints are local only"}, 403)
        if not path.startswith(REST_PREFIX):
            return await call_next(request)
        account = path[len(REST_PREFIX):].split("/", 1)[0]
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        srv.count(account, f"{request.method} {_operation(path)}")
        try:
            headers = srv.limiter.check(account)
            if not srv.token_valid(request):
                raise DocuSignError(401, "AUTHORIZATION_INVALID_TOKEN",
                                    "The access token provided is expired, revoked or malformed.", headers)
            if account != settings.docusign_account_id:
                raise DocuSignError(400, "USER_LACKS_MEMBERSHIP",
                                    "The UserID does not have a valid membership in this Account.", headers)
            if knobs.error_rate and srv.fault_rng.random() < knobs.error_rate:
                srv.injected_faults += 1
                if srv.fault_rng.random() < 0.5:
                    raise DocuSignError(500, "UNSPECIFIED_ERROR", "Injected fault: internal server error.", headers)
                busy = {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)}
                raise DocuSignError(429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED", "Injected fault: rate limited.", busy)
        except DocuSignError as exc:
            return _error(exc)
        response = await call_next(request)
        for name, value in headers.items():
            response.headers[name] = value
        return response

    # ------------------------------------------------------------------ OAuth
    @app.post("/oauth/token")
    async def oauth_token(request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_GRANT:
            srv.oauth_counts["token_rejected"] += 1
            return _oauth_error("unsupported_grant_type", "grant_type must be " + JWT_GRANT)
        if not form.get("assertion"):
            srv.oauth_counts["token_rejected"] += 1
            return _oauth_error("invalid_request", "assertion is required")
        audiences = [settings.resolved_docusign_oauth_host, f"127.0.0.1:{settings.esign_port}",
                     f"localhost:{settings.esign_port}"]
        try:
            claims = jwt.decode(form["assertion"], srv.jwt_public_key, algorithms=["RS256"], audience=audiences,
                                issuer=settings.docusign_integration_key, leeway=30,
                                options={"require": ["iss", "sub", "aud", "exp", "iat"]})
        except jwt.InvalidIssuerError:
            problem = "issuer_not_found"
        except jwt.ExpiredSignatureError:
            problem = "expired_grant"
        except jwt.InvalidAudienceError:
            problem = "invalid_audience"
        except jwt.InvalidSignatureError:
            problem = "no_valid_keys_or_signatures"
        except jwt.PyJWTError as exc:
            problem = f"invalid_assertion: {exc}"
        else:
            problem = ""
            if claims["sub"] != settings.docusign_user_id:
                problem = "user_not_found"
            elif "signature" not in str(claims.get("scope", "")).split():
                problem = "consent_required"
        if problem:
            srv.oauth_counts["token_rejected"] += 1
            return _oauth_error("invalid_grant", problem)
        token = secrets.token_urlsafe(32)
        srv.tokens[token] = time.time() + knobs.token_ttl_s
        srv.oauth_counts["token_issued"] += 1
        return {"access_token": token, "token_type": "Bearer", "expires_in": knobs.token_ttl_s,
                "scope": claims.get("scope", "signature")}

    @app.get("/oauth/userinfo")
    async def userinfo(request: Request):
        srv.oauth_counts["userinfo"] += 1
        if not srv.token_valid(request):
            return _oauth_error("invalid_request", "The access token provided is expired, revoked or malformed.", 401)
        return {
            "sub": settings.docusign_user_id,
            "name": "Local Sender",
            "given_name": "Local",
            "family_name": "Sender",
            "created": "2024-01-01T00:00:00.000",
            "email": "sender@esign.local",
            "accounts": [{
                "account_id": settings.docusign_account_id,
                "is_default": True,
                "account_name": "mdco local account",
                "base_uri": f"https://{settings.esign_host}:{settings.esign_port}",
            }],
        }

    # ------------------------------------------------------------------ REST v2.1
    base = "/restapi/v2.1/accounts/{account_id}"

    @app.post(base + "/envelopes", status_code=201)
    async def create_envelope(account_id: str, request: Request):
        if knobs.reject_envelopes:
            raise DocuSignError(400, "ACCOUNT_LACKS_PERMISSIONS",
                                "This Account lacks sufficient permissions (injected: envelopes rejected).")
        envelope, events = lifecycle.create_envelope(account_id, await _json_body(request))
        envelope["senderUserId"] = settings.docusign_user_id
        srv.commit(envelope, events)
        log.info("envelope %s created (%s)", envelope["envelopeId"], envelope["status"])
        return JSONResponse({"envelopeId": envelope["envelopeId"], "uri": envelope["envelopeUri"],
                             "statusDateTime": envelope["statusChangedDateTime"], "status": envelope["status"]}, 201)

    @app.get(base + "/envelopes")
    async def list_envelopes(account_id: str, request: Request):
        q = request.query_params
        ids = {i for i in (q.get("envelope_ids") or "").split(",") if i}
        if not ids and not q.get("from_date") and not q.get("transaction_ids"):
            raise DocuSignError(400, "INVALID_REQUEST_PARAMETER",
                                "The request contained at least one invalid parameter. "
                                "'from_date' must be set unless 'envelope_ids' or 'transaction_ids' are given.")
        since = until = None
        try:
            if q.get("from_date"):
                since = parse_timestamp(q["from_date"])
            if q.get("to_date"):
                until = parse_timestamp(q["to_date"])
        except ValueError:
            raise DocuSignError(400, "INVALID_REQUEST_PARAMETER",
                                "The request contained at least one invalid parameter. 'from_date'/'to_date' must be ISO dates.") from None
        statuses = {s.strip().lower() for s in (q.get("status") or "").split(",") if s.strip()} - {"any"}
        field_name = field_value = None
        if q.get("custom_field"):
            field_name, sep, field_value = q["custom_field"].partition("=")
            if not sep:
                raise DocuSignError(400, "INVALID_REQUEST_PARAMETER",
                                    "The request contained at least one invalid parameter. 'custom_field' must be name=value.")
        include = {i.strip() for i in (q.get("include") or "").split(",") if i.strip()}
        found = []
        for env in srv.store.all():
            changed = parse_timestamp(env["statusChangedDateTime"])
            if env["accountId"] != account_id or (ids and env["envelopeId"] not in ids):
                continue
            if (since and changed < since) or (until and changed > until):
                continue
            if statuses and env["status"] not in statuses:
                continue
            if field_name is not None and custom_field_value(env, field_name) != field_value:
                continue
            found.append(lifecycle.summary(env, include))
        start = int(q.get("start_position") or 0)
        count = int(q.get("count") or 100)
        page = found[start:start + count]
        return {"resultSetSize": str(len(page)), "totalSetSize": str(len(found)), "startPosition": str(start),
                "endPosition": str(start + max(len(page) - 1, 0)), "envelopes": page or None}

    @app.get(base + "/envelopes/{envelope_id}")
    async def get_envelope(account_id: str, envelope_id: str, request: Request):
        include = {i.strip() for i in (request.query_params.get("include") or "").split(",") if i.strip()}
        return lifecycle.summary(srv.envelope(account_id, envelope_id), include)

    @app.put(base + "/envelopes/{envelope_id}")
    async def update_envelope(account_id: str, envelope_id: str, request: Request):
        env = srv.envelope(account_id, envelope_id)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise DocuSignError(400, "INVALID_REQUEST_BODY", "The request body is missing or not a JSON object.")
        status = str(body.get("status") or "").lower()
        if status == "voided":
            reason = str(body.get("voidedReason") or "").strip()
            if not reason:
                raise DocuSignError(400, "INVALID_REQUEST_PARAMETER", "'voidedReason' is required to void an envelope.")
            if len(reason) > 200:
                raise DocuSignError(400, "INVALID_REQUEST_PARAMETER", "'voidedReason' is longer than 200 characters.")
            events = lifecycle.void(env, reason)
        elif status == "sent":
            events = lifecycle.send(env)
        elif not status:
            events = []
            if body.get("emailSubject"):
                env["emailSubject"] = str(body["emailSubject"])
        else:
            raise DocuSignError(400, "INVALID_REQUEST_PARAMETER", f"'status' cannot be changed to {status!r}.")
        srv.commit(env, events)
        return {"envelopeId": envelope_id}

    @app.get(base + "/envelopes/{envelope_id}/recipients")
    async def get_recipients(account_id: str, envelope_id: str, request: Request):
        tabs = request.query_params.get("include_tabs", "false").lower() == "true"
        return lifecycle.recipients_view(srv.envelope(account_id, envelope_id), tabs)

    @app.get(base + "/envelopes/{envelope_id}/documents/{document_id}")
    async def get_document(account_id: str, envelope_id: str, document_id: str):
        env = srv.envelope(account_id, envelope_id)
        if document_id in ("combined", "archive"):
            content = srv.combined_pdf(env)
        else:
            doc = next((d for d in env["documents"] if d["documentId"] == document_id), None)
            if doc is None:
                raise DocuSignError(404, "DOCUMENT_DOES_NOT_EXIST", "The document specified was not found.")
            content = srv.combined_pdf({**env, "documents": [doc]}) if doc["fileExtension"] != "pdf" \
                else base64.b64decode(doc["documentBase64"])
        return Response(content, media_type="application/pdf",
                        headers={"Content-Disposition": f'file; filename="{document_id}.pdf"'})

    @app.post(base + "/envelopes/{envelope_id}/views/recipient", status_code=201)
    async def recipient_view(account_id: str, envelope_id: str, request: Request):
        env = srv.envelope(account_id, envelope_id)
        body = await _json_body(request)
        if not isinstance(body, dict) or not body.get("returnUrl"):
            raise DocuSignError(400, "INVALID_REQUEST_PARAMETER", "'returnUrl' is required for a recipient view.")
        signer = None
        for s in env["recipients"]["signers"]:
            if body.get("recipientId") and s["recipientId"] == str(body["recipientId"]):
                signer = s
            elif s["email"].lower() == str(body.get("email", "")).lower() and s["name"] == body.get("userName") \
                    and (not body.get("clientUserId") or s.get("clientUserId") == body.get("clientUserId")):
                signer = s
            if signer:
                break
        if signer is None:
            raise DocuSignError(400, "UNKNOWN_ENVELOPE_RECIPIENT",
                                "The recipient you have identified is not a valid recipient of the specified envelope.")
        if env["status"] not in lifecycle.OPEN_STATUSES:
            raise DocuSignError(400, "ENVELOPE_INVALID_STATUS", f"The envelope is {env['status']}.")
        link = secrets.token_urlsafe(24)
        srv.signing_links[link] = {"envelopeId": envelope_id, "recipientId": signer["recipientId"],
                                   "returnUrl": str(body["returnUrl"]), "expires": time.time() + 300}
        return JSONResponse({"url": f"{str(request.base_url).rstrip('/')}/signing/{link}"}, 201)

    @app.get("/signing/{link}")
    async def signing_ceremony(link: str):
        info = srv.signing_links.pop(link, None)
        if info is None or info["expires"] < time.time():
            return HTMLResponse("<h1>This signing link has expired or was already used.</h1>", 404)
        env = srv.store.get(info["envelopeId"])
        try:
            events = lifecycle.sign(env, info["recipientId"])
        except DocuSignError as exc:
            return HTMLResponse(f"<h1>Cannot sign: {exc.message}</h1>", 409)
        srv.commit(env, events)
        sep = "&" if "?" in info["returnUrl"] else "?"
        return RedirectResponse(info["returnUrl"] + sep + urlencode({"event": "signing_complete"}), 303)

    # ------------------------------------------------------------------ admin (local only)
    @app.get("/health")
    async def health():
        return {"status": "ok", "envelopes": len(srv.store.envelopes), "pending_deliveries": srv.dispatcher.pending}

    @app.get("/admin/envelopes")
    async def admin_envelopes(external_id_prefix: str = ""):
        out = []
        for env in srv.store.all():
            ext = custom_field_value(env, "external_id") or ""
            if external_id_prefix and not ext.startswith(external_id_prefix):
                continue
            out.append({"envelopeId": env["envelopeId"], "status": env["status"], "externalId": ext or None,
                        "emailSubject": env["emailSubject"], "createdDateTime": env["createdDateTime"],
                        "recipients": [{"recipientId": s["recipientId"], "routingOrder": s["routingOrder"],
                                        "status": s["status"]} for s in env["recipients"]["signers"]]})
        return {"envelopes": out}

    def _admin_env(envelope_id: str) -> dict:
        env = srv.store.get(envelope_id)
        if env is None:
            raise DocuSignError(404, "ENVELOPE_DOES_NOT_EXIST", "The envelope specified does not exist.")
        return env

    @app.post("/admin/envelopes/{envelope_id}/sign")
    async def admin_sign_all(envelope_id: str):
        env = _admin_env(envelope_id)
        if env["status"] not in lifecycle.OPEN_STATUSES:
            raise DocuSignError(400, "ENVELOPE_INVALID_STATUS", f"The envelope is {env['status']}, not open for signing.")
        srv.commit(env, lifecycle.sign_all(env))
        return {"envelopeId": envelope_id, "status": env["status"]}

    @app.post("/admin/envelopes/{envelope_id}/recipients/{recipient_id}/{action}")
    async def admin_recipient(envelope_id: str, recipient_id: str, action: str, request: Request):
        env = _admin_env(envelope_id)
        if action == "sign":
            events = lifecycle.sign(env, recipient_id)
        elif action == "decline":
            body = await _json_body(request)
            reason = (body or {}).get("reason", "Declined by signer") if isinstance(body, dict) else "Declined by signer"
            events = lifecycle.decline(env, recipient_id, str(reason))
        elif action == "deliver":
            events = lifecycle.deliver(env, recipient_id)
        else:
            raise DocuSignError(404, "NOT_FOUND", f"Unknown recipient action {action!r}; use sign, decline or deliver.")
        srv.commit(env, events)
        return {"envelopeId": envelope_id, "status": env["status"]}

    @app.get("/admin/stats")
    async def admin_stats():
        accounts = {acc: {"total": sum(ops.values()), "by_operation": dict(ops)} for acc, ops in srv.calls.items()}
        return {"accounts": accounts, "oauth": dict(srv.oauth_counts), "envelopes": len(srv.store.envelopes),
                "injected_faults": srv.injected_faults,
                "pending_deliveries": srv.dispatcher.pending}

    @app.post("/admin/stats/reset")
    async def admin_stats_reset():
        srv.calls.clear()
        srv.injected_faults = 0
        srv.oauth_counts.update({k: 0 for k in srv.oauth_counts})
        return {"ok": True}

    @app.get("/admin/faults")
    async def get_faults():
        return knobs.faults()

    @app.post("/admin/faults")
    async def set_faults(request: Request):
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise DocuSignError(400, "INVALID_REQUEST_BODY", "Send a JSON object of fault knobs.")
        unknown = sorted(set(body) - set(RUNTIME_KNOBS))
        if unknown:
            raise DocuSignError(400, "INVALID_REQUEST_BODY", f"Unknown fault knobs {unknown}; known: {list(RUNTIME_KNOBS)}.")
        try:
            trial = knobs.model_copy()
            for name, value in body.items():
                setattr(trial, name, value)  # validate_assignment checks ranges before anything changes
        except ValueError as exc:
            raise DocuSignError(400, "INVALID_REQUEST_BODY", f"Bad fault knob value: {exc}") from None
        for name in body:
            setattr(knobs, name, getattr(trial, name))
        if "fault_seed" in body:
            srv.fault_rng.seed(knobs.fault_seed)
        return knobs.faults()

    @app.post("/admin/tokens/revoke")
    async def revoke_tokens():
        revoked = len(srv.tokens)
        srv.tokens.clear()
        return {"revoked": revoked}

    @app.get("/admin/connect/attempts")
    async def connect_attempts(envelope_id: str = ""):
        return {"attempts": [a for a in srv.dispatcher.attempts if not envelope_id or a["envelopeId"] == envelope_id]}

    return app


def _operation(path: str) -> str:
    """A route template for call counting: ids replaced so counts group by operation."""
    parts = path[len(REST_PREFIX):].split("/")[1:]
    named = []
    for i, part in enumerate(parts):
        prev = parts[i - 1] if i else ""
        named.append("{id}" if prev in ("envelopes", "documents", "recipients") else part)
    return "/" + "/".join(named)


def main(argv: list[str] | None = None) -> None:
    base = Settings()
    parser = argparse.ArgumentParser(prog="python -m esign.server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=base.esign_host, help="bind address (MDCO_ESIGN_HOST)")
    parser.add_argument("--port", type=int, default=base.esign_port, help="HTTPS port (MDCO_ESIGN_PORT)")
    parser.add_argument("--var-dir", default=str(base.var_dir), help="data directory (MDCO_VAR_DIR)")
    args = parser.parse_args(argv)
    settings = Settings(esign_host=args.host, esign_port=args.port, var_dir=args.var_dir)  # CLI beats env
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    m = app.state.esign.materials
    log.info("local e-sign server on https://%s:%d (CA %s)", args.host, args.port, m.ca_cert)
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=str(m.server_cert), ssl_keyfile=str(m.server_key),
                log_level="warning", access_log=False, timeout_graceful_shutdown=1)  # SDK keep-alive pools never close


if __name__ == "__main__":
    main()
