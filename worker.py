"""The Temporal worker: all workflows and activities of mdco-onboarding on one task queue.

Run as ``python worker.py``. It serves the SDK's and its own metrics at
``http://127.0.0.1:$MDCO_WORKER_METRICS_PORT/metrics`` and its readiness at ``/healthz`` (200 only
while it polls; ``mdco up`` waits for that), and logs one JSON object per line. On SIGTERM (or
SIGINT) it stops polling, lets running activities finish for ``MDCO_WORKER_SHUTDOWN_GRACE_S`` seconds
(cancelling them after that) and exits 0; a fatal worker error exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Sequence

from temporalio.client import Client
from temporalio.worker import Interceptor, PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.errors import BusinessFailureInterceptor
from activities.onboarding import OnboardingActivities
from activities.oversight import OversightActivities
from activities.reconcile import reconcile_registrations
from activities.replacement import ReplacementActivities
from config import Settings, get_settings
from mdco_temporal.client import STICKY_QUEUE_TIMEOUT, data_converter
from mdco_temporal.schedules import ensure_compliance_schedule, ensure_reconcile_schedule
from observability.logging import configure_logging
from observability.worker import WorkerTelemetry
from store.db import engine_from_settings
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow
from workflows.compliance import COMPLIANCE_WORKFLOWS

WORKFLOWS = [OnboardingWorkflow, OversightWorkflow, *COMPLIANCE_WORKFLOWS]
MAX_CONCURRENT_ACTIVITIES = 16  # the default of MDCO_WORKER_MAX_CONCURRENT_ACTIVITIES

log = logging.getLogger("mdco.worker")


def worker_tuning(settings: Settings) -> dict:
    """The ``Worker`` knobs from ``MDCO_WORKER_*`` (cache size, concurrent tasks, pollers, sandbox)."""
    runner = {}
    # off by default and best left off: passing the workflow modules through too lets workflow code call
    # datetime.now() unchecked and share module state between runs (BENCHMARKS.md, worker memory)
    if settings.worker_sandbox_passthrough_all:
        runner["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules())
    return dict(**runner, max_cached_workflows=settings.worker_max_cached_workflows,
                max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
                workflow_task_poller_behavior=_pollers(settings, settings.worker_workflow_task_pollers),
                activity_task_poller_behavior=_pollers(settings, settings.worker_activity_task_pollers))


def _pollers(settings: Settings, count: int) -> PollerBehaviorSimpleMaximum | PollerBehaviorAutoscaling:
    """``count`` pollers, or (autoscale) as many as the server's backlog feedback asks for, up to ``count``:
    with few fixed pollers a busy worker picks tasks up late (BENCHMARKS.md, answer latency)."""
    if settings.worker_pollers_autoscale:
        return PollerBehaviorAutoscaling(minimum=1, maximum=max(count, 2), initial=min(5, count))
    return PollerBehaviorSimpleMaximum(count)


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor,
                 interceptors: Sequence[Interceptor] = ()) -> Worker:
    onboarding = OnboardingActivities(settings, engine_from_settings(settings))
    oversight = OversightActivities(onboarding)
    reconcile_workflows, reconcile_activities = reconcile_registrations(onboarding, client)
    return Worker(client, task_queue=settings.task_queue, workflows=WORKFLOWS + reconcile_workflows,
                  activities=onboarding.all() + oversight.all() + reconcile_activities
                  + ReplacementActivities(onboarding, client).all(), activity_executor=executor,
                  **worker_tuning(settings),
                  interceptors=[*interceptors, BusinessFailureInterceptor()],
                  graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_s),
                  sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT)


async def main() -> int:
    settings = get_settings()
    configure_logging("worker", settings.log_format, settings.log_level)
    telemetry = WorkerTelemetry(settings.worker_metrics_host, settings.worker_metrics_port,
                                settings.worker_sdk_metrics_port, settings.worker_shutdown_grace_s,
                                settings.task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = telemetry.runtime()
    await telemetry.start()  # /healthz answers 503 until the worker polls
    try:
        client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                      data_converter=data_converter(settings), runtime=runtime)
        await ensure_reconcile_schedule(client, settings.task_queue)  # idempotent: one schedule per namespace
        await ensure_compliance_schedule(client, settings.task_queue)  # daily sweep, idempotent too
        # a thread for every activity slot, local ones included: an answer's local write never waits for a
        # thread held by a slow DocuSign call
        threads = settings.worker_max_concurrent_activities + settings.worker_max_concurrent_local_activities
        with ThreadPoolExecutor(max_workers=threads) as executor:
            worker = build_worker(client, settings, executor, [telemetry.interceptor()])
            running = asyncio.create_task(worker.run())
            telemetry.healthy = lambda: worker.is_running and not running.done() and not stop.is_set()
            stopping = asyncio.create_task(stop.wait())
            log.info("worker polling task queue %s", settings.task_queue, extra={"task_queue": settings.task_queue})
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                log.info("stop requested: no more polling; running activities get %.0f s to finish",
                         settings.worker_shutdown_grace_s)
                await worker.shutdown()
            stopping.cancel()
            try:
                await running
            except Exception:
                log.exception("worker failed")
                return 1
        log.info("worker stopped")
        return 0
    finally:
        await telemetry.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
