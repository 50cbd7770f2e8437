"""Rate limits (the ``limits`` library, moving windows): the answer pages per link token and per client
address, the token-protected API per token subject. Over a limit: 429 with ``Retry-After`` (seconds),
as problem details on the API and as a page on ``/a/``.

Configured with ``MDCO_RATE_LIMIT_LINK``, ``MDCO_RATE_LIMIT_CLIENT``, ``MDCO_RATE_LIMIT_SUBJECT``
(``limits`` notation, ``;`` between several: ``30/minute;5/second``) and ``MDCO_RATE_LIMIT_STORAGE``
(``async+memory://`` per process; ``async+redis://host:6379`` shares the counts between API replicas).
"""

from __future__ import annotations

import math
import time
from typing import Any, Awaitable, Callable

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from api import auth
from api.errors import send_problem

PAGES_PREFIX = "/a/"


def _items(setting: str, value: str) -> list[RateLimitItem]:
    try:
        return parse_many(value)
    except ValueError:
        raise ValueError(f"MDCO_RATE_LIMIT_{setting.upper()}: {value!r} is not a rate limit "
                         "(e.g. 30/minute or 30/minute;5/second)") from None


class RateLimits:
    def __init__(self, settings):
        self.link = _items("link", settings.rate_limit_link)
        self.client = _items("client", settings.rate_limit_client)
        self.subject = _items("subject", settings.rate_limit_subject)
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))

    async def retry_after(self, *keys: tuple[str, str, list[RateLimitItem]]) -> int | None:
        """Count one hit under each (kind, identity, limits); seconds to wait when one is exhausted."""
        for kind, identity, items in keys:
            for item in items:
                if not await self.limiter.hit(item, kind, identity):
                    stats = await self.limiter.get_window_stats(item, kind, identity)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        return None


class RateLimitMiddleware:
    """Inside ``api.auth.AuthMiddleware``: the caller's subject is known here for the API routes."""

    def __init__(self, app: Callable[..., Awaitable[Any]], limits: RateLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        wait = None
        if path.startswith(PAGES_PREFIX):
            address = (scope.get("client") or ("unknown",))[0]
            wait = await self.limits.retry_after(("link", path[len(PAGES_PREFIX):], self.limits.link),
                                                 ("client", address, self.limits.client))
            if wait is not None:
                await _page_too_many(scope, receive, send, wait)
                return
        elif (principal := auth.current_principal()) is not None:
            wait = await self.limits.retry_after(("subject", principal.subject, self.limits.subject))
            if wait is not None:
                await send_problem(send, 429, f"Too many requests for {principal.subject}; retry in {wait} s.",
                                   headers=[(b"retry-after", str(wait).encode())])
                return
        await self.app(scope, receive, send)


async def _page_too_many(scope: dict, receive: Callable, send: Callable, wait: int) -> None:
    from starlette.requests import Request

    from api.pages import _message

    response = _message(Request(scope, receive), 429, "Please wait a moment",
                        [f"This page was opened too often just now. Please try again in {wait} seconds.",
                         "Nothing was changed."], kind="error")
    response.headers["Retry-After"] = str(wait)
    await response(scope, receive, send)


def install(app, settings) -> RateLimits:
    """Call before ``api.auth.install`` (so this runs inside it, where the subject is known)."""
    limits = RateLimits(settings)
    app.add_middleware(RateLimitMiddleware, limits=limits)
    return limits
