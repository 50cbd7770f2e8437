"""The API's observability: request metrics and logs (an ASGI middleware), JSON logging once uvicorn
starts the app, and what ``GET /metrics`` renders (see ``observability.business``)."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config import Settings
from observability.business import BusinessMetrics
from observability.logging import configure_logging

log = logging.getLogger("mdco.api.http")
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})  # polled: logged at debug only
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: ``mdco_api_requests_total`` / ``mdco_api_request_duration_seconds`` by route
    template (never the raw path) and one log line per request, without the client's address."""

    def __init__(self, app, requests: Counter, duration: Histogram):
        self.app, self.requests, self.duration = app, requests, duration

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.monotonic()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = time.monotonic() - began
            method = scope.get("method", "")
            self.requests.labels(method=method, route=route, status=str(status["code"])).inc()
            self.duration.labels(method=method, route=route).observe(elapsed)
            level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
            log.log(level, "%s %s -> %s", method, route, status["code"],
                    extra={"method": method, "route": route, "status": status["code"],
                           "duration_ms": round(elapsed * 1000, 1)})


def install(app: FastAPI, settings: Settings) -> BusinessMetrics:
    """Request metrics/logs on ``app``, JSON logs from its start-up on, and the ``BusinessMetrics``
    that ``GET /metrics`` renders (kept as ``app.state.metrics``)."""
    from store.db import engine_from_settings

    registry = CollectorRegistry()
    requests = Counter("mdco_api_requests", "HTTP requests answered", ["method", "route", "status"],
                       registry=registry)
    duration = Histogram("mdco_api_request_duration_seconds", "HTTP request latency", ["method", "route"],
                         registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    app.add_middleware(RequestMetrics, requests=requests, duration=duration)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        configure_logging("api", settings.log_format, settings.log_level)  # only when served (not in tests)
        async with inner(a) as state:
            yield state

    app.router.lifespan_context = lifespan
    app.state.metrics = BusinessMetrics(lambda: engine_from_settings(settings), app.state.clients.get, registry)
    return app.state.metrics
