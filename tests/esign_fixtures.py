"""Fixtures for a running local e-sign server (import into conftest: ``from tests.esign_fixtures import *``
or ``pytest_plugins = ["tests.esign_fixtures"]``)."""

from __future__ import annotations

import socket
import ssl
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from config import Settings
from esign.sandbox import admin_base_url, start_server_subprocess, stop_server, wait_healthy

TEST_HMAC_KEYS = "test-connect-key-one,test-connect-key-two"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def esign_settings(var_dir: Path, port: int | None = None, **overrides) -> Settings:
    return Settings(var_dir=var_dir, esign_host="127.0.0.1", esign_port=port or free_port(),
                    docusign_hmac_keys=TEST_HMAC_KEYS, **overrides)


@contextmanager
def running_esign_server(settings: Settings, env: dict[str, str] | None = None):
    """Start the server for ``settings``, yield its base URL, stop it afterwards."""
    proc = start_server_subprocess(settings, env)
    try:
        wait_healthy(settings, timeout=30, proc=proc)
        yield admin_base_url(settings)
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def esign_server(tmp_path_factory):
    """(settings, base_url) of one local e-sign server shared by the session (fast Connect retries)."""
    settings = esign_settings(tmp_path_factory.mktemp("esign-var"))
    with running_esign_server(settings, {"MDCO_ESIGN_CONNECT_BACKOFF_S": "0.1"}) as base_url:
        yield settings, base_url


@pytest.fixture
def esign_admin(esign_server):
    """An httpx client on the shared server's admin API; resets faults and stats around each test."""
    settings, base_url = esign_server
    with httpx.Client(base_url=base_url, verify=ssl.create_default_context(cafile=settings.resolved_docusign_ca_cert),
                      timeout=10) as client:
        reset = {"error_rate": 0.0, "latency_ms": 0, "duplicate_deliveries": False, "out_of_order": False,
                 "wrong_signature": False, "burst_limit": 0, "token_ttl_s": 3600}
        client.post("/admin/faults", json=reset).raise_for_status()
        yield client
        client.post("/admin/faults", json=reset).raise_for_status()


class ConnectReceiver:
    """A tiny HTTP endpoint that records Connect deliveries; answers ``fail_first`` 500s first."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self._cond = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._cond:
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    else:
                        receiver.deliveries.append((dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/docusign"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        """Wait until ``predicate(deliveries)`` is true; the deliveries so far."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.deliveries), timeout):
                raise AssertionError(f"Connect deliveries not as expected after {timeout} s: {len(self.deliveries)} received")
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def connect_receiver():
    receiver = ConnectReceiver()
    yield receiver
    receiver.close()
