"""Idempotency keys for answers and ops actions: a retried request never acts twice.

The caller's key (HTTP ``Idempotency-Key`` header; the CLI makes one per invocation) becomes the
Temporal update id, so the server runs an update with a given id once per workflow run and answers a
repeat with the first outcome. The key lives in a context variable, so ``api.service`` reads it
without every function growing a parameter.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any, Awaitable, Callable

HEADER = "idempotency-key"
MAX_LENGTH = 200
_ALLOWED = re.compile(r"^[A-Za-z0-9._:~+/=-]+$")

_current: ContextVar[str | None] = ContextVar("idempotency_key", default=None)


def current_key() -> str | None:
    return _current.get()


def use_key(key: str | None) -> None:
    """Set the key for the calls made from here on in this context (CLI: once per invocation)."""
    _current.set(key)


def new_key() -> str:
    return uuid.uuid4().hex


def update_id(update_name: str) -> str | None:
    """The update id for ``update_name``: the same key used for another action stays distinct."""
    key = _current.get()
    return f"{update_name}:{key}" if key else None


def key_problem(value: str) -> str | None:
    """Why a header value cannot be a key (None when it can)."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters, not {len(value)}"
    if not _ALLOWED.match(value):
        return "may hold only letters, digits and . _ : ~ + / = -"
    return None


class IdempotencyKeyMiddleware:
    """ASGI middleware: a valid ``Idempotency-Key`` header is made current for the request; an
    invalid one is refused with 422 naming the header and the reason, before anything acts."""

    def __init__(self, app: Callable[..., Awaitable[Any]]):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k.decode("latin-1").lower() == HEADER), None)
        if raw is None:
            token = _current.set(None)
        else:
            value = raw.decode("latin-1")
            problem = key_problem(value)
            if problem is not None:
                await _refuse(send, problem)
                return
            token = _current.set(value)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)


async def _refuse(send: Callable, reason: str) -> None:
    from api.errors import invalid_detail, send_problem

    problems = [{"field": "Idempotency-Key (header)", "reason": reason}]
    await send_problem(send, 422, invalid_detail(problems), problems)
