"""The API's one error model: RFC 9457 problem details (``application/problem+json``).

Every JSON error the API answers (401, 403, 404, 409, 413, 422, 429, 503, ...) is
``{"type", "title", "status", "detail"}``; a 422 adds ``errors``, every problem as ``{"field", "reason"}``
(CONTRACT.md: "every problem listed (field path + reason)"). ``type`` is a URN per kind of problem,
the same for every route, so a client can branch on it. The ASGI middlewares (auth, idempotency key,
body size, rate limits, the codec listener) answer through :func:`send_problem`; the exception handlers
of ``api.app`` through :func:`problem_response`.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"

#: status -> the slug of its ``type`` (urn:mdco:problem:<slug>)
TYPES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "conflict", 410: "gone", 413: "body-too-large", 422: "invalid", 429: "rate-limited",
         500: "internal", 502: "upstream-failed", 503: "unavailable"}


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. `contact.email`, `services[1]`, "
                                   "`npi`, `Idempotency-Key (header)`, `(body)`")
    reason: str = Field(description="why it is refused")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="a URN naming the kind of problem, e.g. `urn:mdco:problem:not-found`")
    title: str = Field(description="short summary of the kind of problem (the same for every occurrence)")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong this time")
    errors: list[FieldProblem] | None = Field(default=None, description="422 only: every problem found")


def problem_type(status: int) -> str:
    return f"urn:mdco:problem:{TYPES.get(status, str(status))}"


def problem_body(status: int, detail: str, errors: Iterable[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": problem_type(status), "title": HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if errors is not None:
        body["errors"] = [e.model_dump() if isinstance(e, BaseModel) else dict(e) for e in errors]
    return body


def invalid_detail(problems: list) -> str:
    count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
    return f"The request is invalid: {count}, listed in errors."


def problem_response(status: int, detail: str, errors: Iterable[Any] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, errors), status_code=status, headers=headers,
                        media_type=MEDIA_TYPE)


async def send_problem(send: Callable, status: int, detail: str, errors: Iterable[Any] | None = None,
                       headers: list[tuple[bytes, bytes]] | tuple = ()) -> None:
    """Answer from an ASGI middleware (before the app is reached) with a problem."""
    body = json.dumps(problem_body(status, detail, errors)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- the OpenAPI document
DESCRIPTIONS = {401: "no valid bearer token (or, for the webhook, no valid HMAC)", 403: "the token lacks the role",
                404: "unknown id", 409: "refused in the onboarding's current state",
                413: "request body over 1 MiB", 422: "invalid input: every problem in `errors` (field + reason)",
                429: "rate limited; retry after `Retry-After` seconds", 502: "Temporal refused the call",
                503: "Temporal (or the worker) cannot answer now; retry later"}
NOT_FOUND_PARAMS = ("{workflow_id}", "{clinic_key}")
TEMPORAL_PREFIXES = ("/onboardings", "/clinics", "/webhooks")  # /a/ pages answer 503 in HTML


def _problem_content() -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document(schema: dict[str, Any], extra: Callable[[str, str, dict], Iterable[int]] = lambda *a: ()) -> dict:
    """Every operation's error answers as problem details: the ones a route declares, and per route
    413 (bodies), 422 (parameters, bodies), 404 (an id in the path), 503 (Temporal behind it), plus
    ``extra(method, path, operation)``. FastAPI's own validation-error schema is replaced."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["FieldProblem"] = FieldProblem.model_json_schema()
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components["Problem"].pop("$defs", None)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            wanted = set(extra(method.upper(), path, op))
            if method.upper() == "POST":
                wanted |= {413, 422}
            if op.get("security") or path.startswith("/a/"):
                wanted.add(429)
            if op.get("parameters"):
                wanted.add(422)
            if any(p in path for p in NOT_FOUND_PARAMS):
                wanted.add(404)
            if path.startswith(TEMPORAL_PREFIXES):
                wanted.add(503)
            for status in wanted:
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and "text/html" not in response.get("content", {}):
                    response["content"] = _problem_content()
                    if code == "422" and response.get("description") == "Validation Error":
                        response["description"] = DESCRIPTIONS[422]
    return schema
