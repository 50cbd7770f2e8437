"""The HTTP API: sales start onboardings, humans answer, DocuSign Connect reports envelope events.

Every route is a thin call into ``api.service``; errors map to statuses in one place
(404 unknown id, 409 refused answer, 422 bad input listing every problem, 401 bad webhook HMAC).
Run with ``uvicorn api.app:app``; tests build their own app with ``create_app(client=..., settings=...)``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from http import HTTPStatus
from typing import Any, Literal

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import auth, codec, errors, pages, ratelimit, service
from api.idempotency import IdempotencyKeyMiddleware
from config import Settings, get_settings
from domain.codes import SlaStatus, Stage, normalize_workflow_id
from domain.intake import Intake, Problem, parse_intake
from domain.limits import CHART_COUNT_MAX
from domain.messages import AccountNumber
from domain.onboarding import OfferAnswer, OnboardingStatus
from esign.connect import verify_signature
from observability import api as observability

log = logging.getLogger("mdco.api")

NPI_PATTERN = r"^[0-9]{10}$"
ID_PATTERN = r"^[a-z0-9-]{3,80}$"  # onboarding-<clinic_key> or the bare clinic key
PHARMACY_PATTERN = r"^[A-Za-z0-9_.-]{1,80}$"

TAGS = [
    {"name": "onboardings", "description": "Start an onboarding from a sales intake, read its status, list them."},
    {"name": "answers", "description": "Physicians and pharmacies answer what the onboarding waits on."},
    {"name": "ops", "description": "Ops decisions: accept a flagged assessment, cancel."},
    {"name": "webhooks", "description": "DocuSign Connect deliveries (HMAC-signed)."},
    {"name": "health", "description": "Liveness."},
    {"name": "answer pages", "description": "Signed links from e-mails: physicians and pharmacies answer here."},
]


class TemporalUnavailable(Exception):
    """Temporal cannot be reached; the caller may retry (HTTP 503)."""


class ClientProvider:
    """One Temporal client per process, connected on first use (the app imports without a server)."""

    def __init__(self, settings: Settings, client: Client | None = None):
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    from mdco_temporal.client import connect

                    try:
                        self._client = await connect(self._settings)
                    except Exception as exc:  # connection refused, DNS, TLS ...
                        log.error("cannot connect to Temporal at %s: %s", self._settings.temporal_address,
                                  type(exc).__name__)
                        raise TemporalUnavailable(f"Temporal at {self._settings.temporal_address} is unreachable") \
                            from None
        return self._client


# ---------------------------------------------------------------- request / response bodies
class NpiBody(BaseModel):
    npi: str = Field(pattern=NPI_PATTERN, description="the physician's 10-digit NPI")


class ProtocolApprovalBody(NpiBody):
    sha256s: list[str] | None = Field(
        default=None, max_length=50,
        description="the SHA-256s of the protocol documents read (GET /onboardings/{id}/protocols); refused (409) "
                    "when they are not the current ones; omitted: the current ones, recorded in the audit")


class AssignBody(BaseModel):
    npi: str = Field(pattern=NPI_PATTERN, description="the physician's 10-digit NPI")
    reason: str = Field(min_length=1, max_length=1000, description="why; kept in the audit log")


class ReasonBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why; kept in the audit log")


class ChartCountBody(BaseModel):
    charts: int = Field(ge=0, le=CHART_COUNT_MAX, description="charts (patient encounters) the clinic had in the period")
    period_start: date | None = Field(default=None, description="first day, YYYY-MM-DD (default: the day the "
                                                                "clinic's last chart review opened)")
    period_end: date | None = Field(default=None, description="last day, YYYY-MM-DD, not after today (default today)")

    @field_validator("charts", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # lax pydantic would take "90"
            raise ValueError("must be a whole number")
        return value  # 90.0 is JSON's 90; 9.5 is refused as not a whole number

    @field_validator("period_start", "period_end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):  # lax pydantic would take 0 as 1970-01-01
            raise ValueError("must be a date YYYY-MM-DD")
        return value


class ChartCountAnswer(BaseModel):
    clinic_key: str
    period_start: date
    period_end: date
    charts: int
    previous: int | None = Field(description="the count this report replaced (None: the period is new)")
    status: Literal["reported", "replaced", "unchanged"]


class ConfirmBody(BaseModel):
    account_number: AccountNumber = Field(
        default="", description="the prescriber account number the pharmacy opened for the director")


class DeclineBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="why the pharmacy declines; told to ops")


class StartResponse(BaseModel):
    workflow_id: str
    status: str = Field(description="started | already_running | already_completed")


class ActionResponse(BaseModel):
    workflow_id: str
    result: str


class ConnectResponse(BaseModel):
    status: str = Field(description="signalled | ignored")
    envelope_id: str
    workflow_id: str = ""
    reason: str = ""


INTAKE_EXAMPLE = {
    "clinic_key": "glow-austin", "clinic_name": "Glow Aesthetics Austin LLC",
    "contact": {"name": "Dana Reyes", "email": "dana@glow.example", "phone": "+15125550100"},
    "states": ["TX", "OK"], "care_model": "hybrid",
    "services": ["neurotoxins", "dermal_fillers", "glp1_weight_loss", "testosterone_hrt"],
    "monthly_patients": 350, "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}],
    "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"}],
    "requested_start": "2026-12-15",
}


def _problems_response(problems: list[Problem]) -> JSONResponse:
    """422 problem details listing every problem (field path + reason)."""
    return errors.problem_response(422, errors.invalid_detail(problems), problems)


def _request_problems(exc: RequestValidationError) -> list[Problem]:
    """FastAPI's validation errors in the project's ``field`` + ``reason`` form (``body.`` dropped)."""
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "path", "query")]
        out.append(Problem(field=".".join(loc) or "(body)", reason=str(e.get("msg", "invalid"))))
    return out


def _json_type_problems(body: bytes) -> list[Problem]:
    """What the intake's lax validation would coerce (``0`` for a date, ``"350"`` for a number) but its
    JSON schema refuses: the same intake validated strictly against JSON's types."""
    from pydantic import ValidationError

    from domain.intake import NEW_INTAKE, problems_from

    try:
        Intake.model_validate_json(body, strict=True, context={NEW_INTAKE: True})
    except ValidationError as exc:
        return problems_from(exc)
    return []


def _methods_of(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as RFC 9457 problem details (``api.errors``)."""
    simple = {service.NotFound: 404, service.Rejected: 409, service.Unauthorized: 401,
              TemporalUnavailable: 503, auth.AuthError: 401}

    async def _simple(_r: Request, exc: Exception):
        status = getattr(exc, "status", None) if isinstance(exc, auth.AuthError) else simple[type(exc)]
        return errors.problem_response(status, str(exc))

    for exc_type in simple:
        app.add_exception_handler(exc_type, _simple)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 400:  # a body FastAPI cannot parse: invalid input like any other
            return _problems_response([Problem(field="(body)", reason=detail)])
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(_methods_of(request))
        return errors.problem_response(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(service.Invalid)
    async def _invalid(_r: Request, exc: service.Invalid):
        return _problems_response(exc.problems)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError):
        return _problems_response(_request_problems(exc))

    @app.exception_handler(service.Unavailable)
    async def _no_answer(_r: Request, exc: service.Unavailable):
        return errors.problem_response(503, str(exc), headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _bug(_r: Request, exc: Exception):
        log.exception("unhandled %s", type(exc).__name__)
        return errors.problem_response(500, "Something went wrong on our side; nothing is known to have changed.")

    @app.exception_handler(RPCError)
    async def _rpc(_r: Request, exc: RPCError):
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return errors.problem_response(503, "Temporal is unavailable; retry later", headers={"Retry-After": "30"})
        log.error("Temporal call failed: %s %s", exc.status.name if exc.status else "?", type(exc).__name__)
        return errors.problem_response(502, "Temporal call failed")


def _intake_constraints(components: dict[str, Any]) -> None:
    """What the intake's validators enforce, said in JSON Schema where it can be (``domain/intake.py``
    checks them in code): USPS codes, no duplicates, phone and ZIP shapes, one-line names. The
    cross-field rules (locations and midlevels within the intake's states, product choices for requested
    services) cannot be; their 422 names the field."""
    from domain.codes import JURISDICTIONS
    from domain.intake import PHONE, ZIP

    state = {"type": "string", "enum": sorted(JURISDICTIONS)}
    banned = _forbidden_class()
    one_line = rf"^[^{banned}]*[^\s{banned}][^{banned}]*$"
    components["Intake"]["properties"]["states"].update(items=state, uniqueItems=True)
    components["Intake"]["properties"]["services"]["uniqueItems"] = True
    components["Contact"]["properties"]["phone"]["pattern"] = PHONE.pattern
    components["Location"]["properties"]["zip"]["pattern"] = ZIP.pattern
    for model in ("Location", "Midlevel"):
        components[model]["properties"]["state"] = {**state, "title": "State"}
    for model, fields in (("Intake", ("clinic_name",)), ("Contact", ("name",)), ("Location", ("city",)),
                          ("Midlevel", ("name", "license_number"))):
        for name in fields:
            components[model]["properties"][name]["pattern"] = one_line


def _forbidden_class() -> str:
    """The characters ``domain.limits.forbidden_character`` refuses in one-line names (the BMP's, and
    every surrogate), as the body of a regex character class."""
    from domain.limits import forbidden_character

    points = [c for c in range(0x10000) if 0xD800 <= c <= 0xDFFF or forbidden_character(chr(c))]
    ranges, start = [], points[0]
    for prev, cur in zip(points, points[1:] + [-1]):
        if cur != prev + 1:
            ranges.append(f"\\u{start:04x}" + (f"-\\u{prev:04x}" if prev != start else ""))
            start = cur
    return "".join(ranges)


def _intake_openapi(app: FastAPI) -> None:
    """Document the intake body with the real ``Intake`` schema (the route validates it itself,
    so that a 422 lists every problem in one answer)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes, tags=app.openapi_tags)
        intake = Intake.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(intake.pop("$defs", {}))
        components["Intake"] = intake
        _intake_constraints(components)
        post = schema["paths"]["/onboardings"]["post"]
        post["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Intake"}, "example": INTAKE_EXAMPLE}}}
        app.openapi_schema = errors.document(auth.document(schema))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# ---------------------------------------------------------------- the app
def _id_path() -> Any:
    return Path(pattern=ID_PATTERN, description="onboarding-<clinic_key> or the bare clinic_key")


def create_app(client: Client | None = None, settings: Settings | None = None) -> FastAPI:
    """The API; ``client`` is injected by tests, otherwise connected lazily from ``settings``."""
    settings = settings or get_settings()
    app = FastAPI(title="mdco-onboarding", version="0.1.0", openapi_tags=TAGS,
                  description="Onboard clinics onto a supervising medical director, durably, on Temporal.")
    app.state.settings = settings
    app.state.clients = ClientProvider(settings, client)
    app.add_middleware(IdempotencyKeyMiddleware)
    _install_error_handlers(app)
    observability.install(app, settings)

    async def temporal(request: Request) -> Client:
        return await request.app.state.clients.get()

    async def metrics_access(request: Request) -> None:
        """Who may read /metrics: ops (``api.auth.AuthMiddleware`` checks the bearer token's role)."""

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (mdco_* business and HTTP metrics)",
             response_class=Response, dependencies=[Depends(metrics_access)])
    async def metrics(request: Request) -> Response:
        return Response(await request.app.state.metrics.render(), media_type=observability.METRICS_CONTENT_TYPE)

    @app.get("/healthz", tags=["health"], summary="Liveness (does not call Temporal)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/onboardings", tags=["onboardings"], status_code=202, response_model=StartResponse,
              summary="Start a clinic's onboarding from a sales intake",
              responses={200: {"model": StartResponse, "description": "already running or completed"},
                         422: {"description": "every problem with the intake, as field + reason"}})
    async def start(request: Request, client: Client = Depends(temporal)) -> JSONResponse:
        try:
            data = await request.json()
        except ValueError:
            return _problems_response([Problem(field="(body)", reason="must be a JSON object (intake)")])
        intake, problems = parse_intake(data)
        if intake is None:
            return _problems_response(problems)
        wrong_types = _json_type_problems(await request.body())
        if wrong_types:
            return _problems_response(wrong_types)
        result = await service.start_onboarding(client, settings, intake, started_by=auth.current_actor())
        code = 202 if result.status == "started" else 200
        return JSONResponse(status_code=code, content={"workflow_id": result.workflow_id, "status": result.status})

    @app.get("/onboardings", tags=["onboardings"], summary="List onboardings (Temporal visibility)")
    async def list_(stage: Stage | None = None, sla: SlaStatus | None = None,
                    client: Client = Depends(temporal)) -> list[dict]:
        return await service.list_onboardings(client, stage=stage.value if stage else None,
                                              sla=sla.value if sla else None)

    @app.get("/onboardings/{workflow_id}", tags=["onboardings"], response_model=OnboardingStatus,
             summary="An onboarding's live status", responses={
                 404: {"description": "unknown id"},
                 503: {"description": "no worker answered the status query within 5 s (a restart); retry"}})
    async def status(workflow_id: str = _id_path(), client: Client = Depends(temporal)) -> OnboardingStatus:
        return await service.get_status(client, workflow_id)

    async def _offer(workflow_id: str, npi: str, accept: bool, client: Client) -> OfferAnswer:
        return await service.answer_offer(client, workflow_id, npi, accept, on_behalf_of=auth.current_actor())

    @app.post("/onboardings/{workflow_id}/offers/{npi}/accept", tags=["answers"], response_model=OfferAnswer,
              summary="The offered physician accepts (first accept wins)",
              responses={404: {"description": "unknown id"}, 409: {"description": "no open offer to this NPI"}})
    async def accept_offer(workflow_id: str = _id_path(), npi: str = Path(pattern=NPI_PATTERN),
                           client: Client = Depends(temporal)) -> OfferAnswer:
        return await _offer(workflow_id, npi, True, client)

    @app.post("/onboardings/{workflow_id}/offers/{npi}/decline", tags=["answers"], response_model=OfferAnswer,
              summary="The offered physician declines",
              responses={404: {"description": "unknown id"}, 409: {"description": "no open offer to this NPI"}})
    async def decline_offer(workflow_id: str = _id_path(), npi: str = Path(pattern=NPI_PATTERN),
                            client: Client = Depends(temporal)) -> OfferAnswer:
        return await _offer(workflow_id, npi, False, client)

    @app.post("/onboardings/{workflow_id}/protocols/approve", tags=["answers"], response_model=ActionResponse,
              summary="The matched medical director approves the protocols",
              responses={404: {"description": "unknown id"}, 409: {"description": "nothing to approve / wrong NPI"}})
    async def approve_protocols(body: ProtocolApprovalBody, workflow_id: str = _id_path(),
                                client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.approve_protocols(client, workflow_id, body.npi, on_behalf_of=auth.current_actor(),
                                                 sha256s=body.sha256s)
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.get("/onboardings/{workflow_id}/protocols", tags=["ops"],
             summary="The protocols prepared for the onboarding: document, SHA-256, status and content (CONTRACT)",
             responses={404: {"description": "unknown id"}})
    async def show_protocols(workflow_id: str = _id_path()) -> list[dict]:
        from store.db import engine_from_settings

        return await asyncio.to_thread(service.protocols_shown, engine_from_settings(settings), workflow_id)

    @app.post("/onboardings/{workflow_id}/pharmacies/{pharmacy_id}/confirm", tags=["answers"],
              response_model=ActionResponse, summary="A pharmacy confirms the prescriber account",
              responses={404: {"description": "unknown id"}, 409: {"description": "pharmacy not awaited"}})
    async def confirm_pharmacy(body: ConfirmBody | None = None, workflow_id: str = _id_path(),
                               pharmacy_id: str = Path(pattern=PHARMACY_PATTERN),
                               client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.confirm_pharmacy(client, workflow_id, pharmacy_id, on_behalf_of=auth.current_actor(),
                                                account_number=body.account_number if body else "")
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.post("/onboardings/{workflow_id}/pharmacies/{pharmacy_id}/decline", tags=["ops"],
              response_model=ActionResponse,
              summary="A pharmacy turns the prescriber account down (ops record it); the next qualifying one is asked",
              responses={404: {"description": "unknown id"}, 409: {"description": "pharmacy not awaited"}})
    async def decline_pharmacy(body: DeclineBody, workflow_id: str = _id_path(),
                               pharmacy_id: str = Path(pattern=PHARMACY_PATTERN),
                               client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.decline_pharmacy(client, workflow_id, pharmacy_id, body.reason,
                                                on_behalf_of=auth.current_actor())
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.post("/onboardings/{workflow_id}/plan/approve", tags=["ops"], response_model=ActionResponse,
              summary="Ops accept an assessment that has blocking findings",
              responses={404: {"description": "unknown id"}, 409: {"description": "no assessment awaits review"}})
    async def approve_plan(body: ReasonBody, workflow_id: str = _id_path(),
                           client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.review_plan(client, workflow_id, body.reason, actor=auth.current_actor())
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.post("/onboardings/{workflow_id}/physician/assign", tags=["ops"], response_model=OfferAnswer,
              summary="Ops assign a physician by hand (eligibility re-checked, capacity taken)",
              responses={404: {"description": "unknown id"}, 409: {"description": "not eligible / not matching"}})
    async def assign_physician(body: AssignBody, workflow_id: str = _id_path(),
                               client: Client = Depends(temporal)) -> OfferAnswer:
        return await service.assign_physician(client, workflow_id, body.npi, body.reason,
                                              actor=auth.current_actor())

    @app.post("/onboardings/{workflow_id}/agreements/resend", tags=["ops"], response_model=ActionResponse,
              summary="Ops resend declined or expired agreements",
              responses={404: {"description": "unknown id"}, 409: {"description": "nothing to resend"}})
    async def resend_agreements(body: ReasonBody, workflow_id: str = _id_path(),
                                client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.resend_agreements(client, workflow_id, body.reason, actor=auth.current_actor())
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.post("/clinics/{clinic_key}/replace", tags=["ops"], status_code=202, response_model=StartResponse,
              summary="Ops replace a live clinic's medical director (a replacement placement, 12/24 h SLA)",
              responses={200: {"description": "a replacement is already under way"},
                         404: {"description": "unknown clinic"}, 409: {"description": "clinic not live"}})
    async def replace_director(body: ReasonBody, clinic_key: str = Path(pattern=r"^[a-z0-9-]{3,64}$"),
                               client: Client = Depends(temporal)) -> JSONResponse:
        from store.db import engine_from_settings

        result = await service.start_replacement(client, settings, engine_from_settings(settings), clinic_key,
                                                 body.reason, actor=auth.current_actor())
        return JSONResponse(status_code=202 if result.status == "started" else 200,
                            content={"workflow_id": result.workflow_id, "status": result.status})

    @app.post("/clinics/{clinic_key}/chart-counts", tags=["ops"], response_model=ChartCountAnswer,
              summary="The clinic's chart count for a period (default: its current chart-review cycle); the next "
                      "chart review samples the plan's percentage of it. A re-report of the period replaces it",
              responses={404: {"description": "unknown clinic"}, 409: {"description": "clinic not under oversight"}})
    async def report_chart_count(body: ChartCountBody,
                                 clinic_key: str = Path(pattern=r"^[a-z0-9-]{3,64}$")) -> ChartCountAnswer:
        from store.db import engine_from_settings

        actor = auth.own_clinic_actor(clinic_key)  # ops, or the clinic's own token
        row = await asyncio.to_thread(service.report_chart_count, engine_from_settings(settings), clinic_key,
                                      body.charts, body.period_start, body.period_end, actor=actor)
        return ChartCountAnswer(**{k: row[k] for k in ("clinic_key", "period_start", "period_end", "charts",
                                                       "previous", "status")})

    @app.get("/clinics/{clinic_key}/audit-packet", tags=["ops"], response_class=Response,
             summary="The clinic's inspection-ready audit packet (zip: manifest.json with SHA-256s, index.html, ...)",
             responses={200: {"description": "the packet, as `mdco audit-packet` writes it",
                              "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                        404: {"description": "unknown clinic"}})
    async def audit_packet(clinic_key: str = Path(pattern=r"^[a-z0-9-]{3,64}$")) -> Response:
        from store.db import engine_from_settings

        data = await asyncio.to_thread(service.audit_packet, engine_from_settings(settings), clinic_key)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="audit-packet-{clinic_key}.zip"'})

    @app.post("/onboardings/{workflow_id}/retry", tags=["ops"], response_model=ActionResponse,
              summary="Ops retry a blocked onboarding from the step that failed",
              responses={404: {"description": "unknown id"}, 409: {"description": "not blocked"}})
    async def retry(body: ReasonBody, workflow_id: str = _id_path(),
                    client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.retry(client, workflow_id, body.reason, actor=auth.current_actor())
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    @app.post("/onboardings/{workflow_id}/cancel", tags=["ops"], response_model=ActionResponse,
              summary="Ops cancel the onboarding (capacity, offers and envelopes are released)",
              responses={404: {"description": "unknown id"}, 409: {"description": "already launched/cancelled"}})
    async def cancel(body: ReasonBody, workflow_id: str = _id_path(),
                     client: Client = Depends(temporal)) -> ActionResponse:
        result = await service.cancel(client, workflow_id, body.reason, actor=auth.current_actor())
        return ActionResponse(workflow_id=normalize_workflow_id(workflow_id), result=result)

    codec.install(app, settings)  # the Temporal UI's remote codec (ops token; production: the UI's token)

    @app.post("/webhooks/docusign", tags=["webhooks"], response_model=ConnectResponse,
              summary="DocuSign Connect (JSON SIM); requires a valid X-DocuSign-Signature-N HMAC",
              responses={401: {"description": "no valid HMAC signature; nothing happens"}})
    async def docusign_connect(request: Request) -> ConnectResponse:
        body = await request.body()
        # checked before Temporal is touched, so a forged delivery costs nothing
        if not verify_signature(body, request.headers, settings.hmac_keys):
            raise service.Unauthorized("no X-DocuSign-Signature-N header matches the body")
        client = await request.app.state.clients.get()
        outcome = await service.handle_connect(client, settings, body, request.headers)
        return ConnectResponse(status=outcome.status, envelope_id=outcome.envelope_id,
                               workflow_id=outcome.workflow_id, reason=outcome.reason)

    pages.install(app, settings)  # GET/POST /a/<token>: the answer pages behind signed links
    _intake_openapi(app)
    ratelimit.install(app, settings)  # per link and client address on /a/, per token subject elsewhere
    auth.install(app, settings)  # bearer JWT + role on every route but /healthz, the webhook and /a/
    pages.install_guards(app)  # outermost: 413 over 1 MiB, security headers on every answer
    return app


app = create_app()
