"""The worker's metrics and health endpoint: ``http://127.0.0.1:$MDCO_WORKER_METRICS_PORT``.

How it is put together, and why:

* The Temporal SDK's metrics (``temporal_*``: polls, task slots, schedule-to-start latencies,
  activity failures ...) come from its Rust core, whose Prometheus exporter binds a port of its own.
  ``runtime()`` starts that exporter on a loopback-only port (``MDCO_WORKER_SDK_METRICS_PORT``, by
  default a free one chosen at start-up; a lost race for it is retried) and the client is connected
  with that runtime, so the SDK's metrics keep their native names, types and histogram buckets.
* The worker's own ``mdco_worker_*`` metrics live in a ``prometheus_client`` registry.
* One small asyncio HTTP server on ``MDCO_WORKER_METRICS_PORT`` answers ``GET /metrics`` with our
  registry followed by a scrape of the SDK exporter (the names are disjoint, so the concatenation is
  one valid exposition), and ``GET /healthz`` with 200 only while the worker runs and polls (503
  while it connects, after a fatal error and once SIGTERM started the shutdown). Readiness is thus
  the live process's state: nothing is left behind on disk when it crashes.

(The SDK's ``MetricBuffer`` would avoid the second port but means re-implementing the exposition of
every SDK metric; proxying one loopback scrape is less code and stays exactly what the SDK emits.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig, \
    TelemetryFilter
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger("mdco.worker")

#: ``mdco_*`` series the worker serves, as exposed (the dashboard's and README's names).
WORKER_METRICS = ("mdco_worker_up", "mdco_worker_polling", "mdco_worker_shutdown_grace_seconds",
                  "mdco_worker_activities_total", "mdco_worker_activities_in_flight",
                  "mdco_worker_activity_duration_seconds_bucket")

#: SDK series the dashboard and the README name, as exposed (checked against a real scrape by the tests).
SDK_METRICS = ("temporal_activity_execution_failed", "temporal_activity_execution_latency_bucket",
               "temporal_activity_schedule_to_start_latency_bucket", "temporal_activity_task_received",
               "temporal_workflow_task_schedule_to_start_latency_bucket",
               "temporal_workflow_task_execution_latency_bucket", "temporal_workflow_endtoend_latency_bucket",
               "temporal_worker_task_slots_available", "temporal_worker_task_slots_used",
               "temporal_workflow_task_queue_poll_succeed", "temporal_num_pollers", "temporal_long_request",
               "temporal_request", "temporal_workflow_completed", "temporal_sticky_cache_size")

SDK_BIND_ATTEMPTS = 5
SDK_SCRAPE_TIMEOUT_S = 3.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class WorkerTelemetry:
    """The worker's ``mdco_worker_*`` metrics, the SDK runtime and the HTTP server for both."""

    def __init__(self, host: str, port: int, sdk_port: int = 0, grace_s: float = 0.0, task_queue: str = ""):
        self.host, self.port, self.sdk_port = host, port, sdk_port
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"task_queue": task_queue}
        self.up = Gauge("mdco_worker_up", "1 while the worker process serves metrics", list(labels),
                        registry=self.registry).labels(**labels)
        self.polling = Gauge("mdco_worker_polling", "1 while the worker polls its task queue (= /healthz 200)",
                             list(labels), registry=self.registry).labels(**labels)
        self.grace = Gauge("mdco_worker_shutdown_grace_seconds", "how long SIGTERM lets running activities finish",
                           registry=self.registry)
        self.activities = Counter("mdco_worker_activities", "activity attempts finished, by outcome "
                                  "(ok | retryable_error | business_error | cancelled)", ["activity", "outcome"],
                                  registry=self.registry)
        self.in_flight = Gauge("mdco_worker_activities_in_flight", "activity attempts running now",
                               registry=self.registry)
        self.duration = Histogram("mdco_worker_activity_duration_seconds", "activity attempt wall time",
                                  ["activity"], registry=self.registry,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.up.set(1)
        self.grace.set(grace_s)
        self.healthy: Callable[[], bool] = lambda: False
        self._server: asyncio.AbstractServer | None = None
        self._http: httpx.AsyncClient | None = None

    # ---------------------------------------------------------------- SDK runtime
    def runtime(self) -> Runtime:
        """A Temporal runtime whose Prometheus exporter listens on loopback; its core logs go to the
        ``temporalio.core`` logger (so they are JSON lines too)."""
        logging_config = LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                                       forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))
        fixed = self.sdk_port != 0
        for attempt in range(1 if fixed else SDK_BIND_ATTEMPTS):
            port = self.sdk_port if fixed else free_port()
            try:
                runtime = Runtime(telemetry=TelemetryConfig(
                    logging=logging_config, metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}")))
            except ValueError as exc:  # "Address already in use": someone took the free port first
                if fixed or attempt == SDK_BIND_ATTEMPTS - 1:
                    raise
                log.warning("SDK metrics port %s taken (%s); trying another", port, exc)
                continue
            self.sdk_port = port
            return runtime
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- activity metrics
    def interceptor(self) -> Interceptor:
        return _ActivityMetrics(self)

    # ---------------------------------------------------------------- HTTP
    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=SDK_SCRAPE_TIMEOUT_S)
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("worker metrics and health at http://%s:%s/metrics", self.host, self.port)

    async def stop(self) -> None:
        self.polling.set(0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._http is not None:
            await self._http.aclose()

    async def metrics_text(self) -> bytes:
        self.polling.set(1 if self.healthy() else 0)
        own = generate_latest(self.registry)
        sdk = b""
        if self.sdk_port and self._http is not None:
            try:
                response = await self._http.get(f"http://127.0.0.1:{self.sdk_port}/metrics")
                sdk = response.content if response.status_code == 200 else b""
            except httpx.HTTPError as exc:
                log.warning("SDK metrics scrape failed: %s", type(exc).__name__)
        return own + (b"\n" if sdk and not own.endswith(b"\n") else b"") + sdk

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, _, rest = request.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            elif path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, await self.metrics_text()
            elif path == "/healthz":
                ok = self.healthy()
                status, ctype = (200 if ok else 503), "application/json"
                body = b'{"status": "ok"}\n' if ok else b'{"status": "unavailable"}\n'
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            writer.write(head + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
                ValueError):
            pass
        finally:
            writer.close()


class _ActivityMetrics(Interceptor):
    def __init__(self, telemetry: WorkerTelemetry):
        self.telemetry = telemetry

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next, self.telemetry)


class _ActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, telemetry: WorkerTelemetry):
        super().__init__(next)
        self.t = telemetry

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type  # the interceptor runs with the activity's context set
        began = time.monotonic()
        outcome = "ok"
        self.t.in_flight.inc()
        try:
            return await self.next.execute_activity(input)
        except CancelledError:
            outcome = "cancelled"
            raise
        except ApplicationError as err:
            outcome = "business_error" if err.non_retryable else "retryable_error"
            raise
        except BaseException:
            outcome = "retryable_error"
            raise
        finally:
            self.t.in_flight.dec()
            self.t.activities.labels(activity=name, outcome=outcome).inc()
            self.t.duration.labels(activity=name).observe(time.monotonic() - began)
