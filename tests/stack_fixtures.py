"""The full embedded stack (Temporal dev server, e-sign, SMTP sink, API, worker) on free ports, for
integration tests: ``def test_x(stack): settings, env = stack``. Loaded by ``tests/conftest.py``."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from config import Settings
from starter.stack import PROJECT_ROOT, Stack, stack_env

FAST_ENV = {"MDCO_ESIGN_CONNECT_BACKOFF_S": "0.1"}  # Connect retries in tenths of a second


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (all held open together, so none repeats)."""
    with ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def stack_settings(var_dir: Path, **overrides) -> Settings:
    """Settings with every port free (the worker's metrics port too) and data (SQLite included) under
    ``var_dir``."""
    temporal, ui, api, esign, smtp, worker_metrics, codec = free_ports(7)
    values = dict(var_dir=var_dir, temporal_address=f"127.0.0.1:{temporal}", temporal_ui_port=ui, codec_port=codec,
                  api_port=api, esign_port=esign, smtp_port=smtp, worker_metrics_port=worker_metrics,
                  database_url=f"sqlite:///{(var_dir / 'mdco.db').resolve()}")
    return Settings(**{**values, **overrides})


def missing_stack_parts() -> list[str]:
    return [part for part in ("worker.py", "api/app.py") if not (PROJECT_ROOT / part).exists()]


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory):
    """The ``Stack`` object itself (to restart or kill a service in crash tests)."""
    missing = missing_stack_parts()
    if missing:
        pytest.skip(f"full stack needs {', '.join(missing)}")
    settings = stack_settings(tmp_path_factory.mktemp("stack-var"))
    running = Stack(settings, env=FAST_ENV)
    running.start(detach=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(running_stack):
    """``(settings, env)`` of one running full stack shared by the session; ``env`` is what a CLI
    subprocess needs to talk to it (the caller's environment plus every resolved ``MDCO_*``)."""
    yield running_stack.settings, {**os.environ, **FAST_ENV, **stack_env(running_stack.settings)}
