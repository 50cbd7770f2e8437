"""Operability on real processes: the worker's and the API's /metrics, the worker's /healthz and its
clean exit on SIGTERM, and `mdco up --detach` restarting only the service that died."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from api.auth import auth_headers
from observability.business import API_METRICS
from observability.worker import SDK_METRICS, WORKER_METRICS, WorkerTelemetry
from starter.stack import PROJECT_ROOT, SERVICES, recorded_pid, stack_env
from tests.stack_fixtures import FAST_ENV, free_ports, stack_settings

pytestmark = pytest.mark.integration

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", re.M)


def exposed(text: str) -> set[str]:
    """Series names with at least one sample in a Prometheus text exposition."""
    return {m.group(1) for m in SAMPLE.finditer(text)}


def mdco(env: dict, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s")


@pytest.fixture(scope="module")
def detached(tmp_path_factory):
    """The whole stack started as an operator does, `mdco up --detach`; `mdco down` at the end."""
    settings = stack_settings(tmp_path_factory.mktemp("obs-var"), temporal_ui=False)
    env = {**os.environ, **FAST_ENV, **stack_env(settings), "PYTHONPATH": str(PROJECT_ROOT)}
    try:
        up = mdco(env, "up", "--detach")
        assert up.returncode == 0, up.stderr + up.stdout
        yield settings, env
    finally:
        down = mdco(env, "down", timeout=120)
        assert down.returncode == 0, down.stderr
    assert all(recorded_pid(settings, name) is None for name in SERVICES)


def test_worker_serves_sdk_and_own_metrics_and_health(detached):
    settings, _ = detached
    base = f"http://127.0.0.1:{settings.worker_metrics_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    response = httpx.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    names = exposed(response.text)
    assert {"mdco_worker_up", "mdco_worker_polling", "temporal_worker_task_slots_available",
            "temporal_num_pollers"} <= names
    assert 'mdco_worker_polling{task_queue="mdco-onboarding"} 1.0' in response.text
    assert httpx.get(f"{base}/nope", timeout=5).status_code == 404


def test_api_serves_every_business_metric(detached):
    settings, _ = detached
    base = f"http://127.0.0.1:{settings.api_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # one request, so HTTP series exist
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401  # ops only
    response = httpx.get(f"{base}/metrics", timeout=10, headers=auth_headers(settings, "ops"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert set(API_METRICS) <= exposed(response.text), set(API_METRICS) - exposed(response.text)
    assert "mdco_visibility_up 1.0" in response.text
    assert 'mdco_onboardings_open{stage="matching"} 0.0' in response.text
    assert "mdco_workflows_stuck 0.0" in response.text


def test_up_after_a_crash_restarts_only_what_died(detached):
    settings, env = detached
    running = [name for name in SERVICES if name != "codec" or settings.temporal_ui]  # the codec serves the UI
    before = {name: recorded_pid(settings, name) for name in running}
    assert all(before.values()), before
    os.killpg(before["worker"], signal.SIGKILL)
    wait_for(lambda: recorded_pid(settings, "worker") is None, 10, "worker gone")
    up = mdco(env, "up", "--detach")
    assert up.returncode == 0, up.stderr + up.stdout
    after = {name: recorded_pid(settings, name) for name in running}
    assert after["worker"] not in (None, before["worker"])
    assert {k: v for k, v in after.items() if k != "worker"} == {k: v for k, v in before.items() if k != "worker"}
    assert httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/healthz", timeout=5).status_code == 200


def test_sigterm_stops_polling_and_exits_0(detached):
    settings, env = detached
    (port,) = free_ports(1)
    log = settings.var_dir / "log" / "worker-sigterm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "worker.py"], cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "MDCO_WORKER_METRICS_PORT": str(port), "MDCO_TASK_QUEUE": "obs-sigterm"})
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200, 30,
                 "worker healthy")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    lines = log.read_text().splitlines()
    assert any('"message": "worker stopped"' in line for line in lines)
    assert all(line.startswith("{") for line in lines if line.strip()), lines


# ---------------------------------------------------------------- SDK names, from a real scrape

_attempts: dict[str, int] = {}


@activity.defn(name="obs_flaky")
def obs_flaky(key: str) -> str:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@workflow.defn(name="ObsWorkflow")
class ObsWorkflow:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(obs_flaky, key, start_to_close_timeout=timedelta(seconds=10),
                                               retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))


async def test_every_named_sdk_and_worker_series_is_really_exposed(detached):
    settings, _ = detached
    (port,) = free_ports(1)
    telemetry = WorkerTelemetry("127.0.0.1", port, grace_s=1, task_queue="obs")
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                  runtime=telemetry.runtime())
    await telemetry.start()
    queue = f"obs-{uuid.uuid4().hex[:8]}"
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as executor:
            async with Worker(client, task_queue=queue, workflows=[ObsWorkflow], activities=[obs_flaky],
                              activity_executor=executor, interceptors=[telemetry.interceptor()],
                              workflow_runner=UnsandboxedWorkflowRunner()) as worker:
                telemetry.healthy = lambda: worker.is_running
                result = await client.execute_workflow(ObsWorkflow.run, queue, id=f"obs-{queue}", task_queue=queue)
                assert result == "ok"
                await asyncio.sleep(1.5)  # the core exporter publishes on its own cadence
                async with httpx.AsyncClient() as http:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await telemetry.stop()
    names = exposed(text)
    assert set(SDK_METRICS) <= names, sorted(set(SDK_METRICS) - names)
    assert set(WORKER_METRICS) <= names, sorted(set(WORKER_METRICS) - names)
    assert 'mdco_worker_activities_total{activity="obs_flaky",outcome="retryable_error"} 1.0' in text
    assert 'mdco_worker_activities_total{activity="obs_flaky",outcome="ok"} 1.0' in text
