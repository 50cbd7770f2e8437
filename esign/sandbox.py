"""Helpers for the local e-sign server: start it as a subprocess, wait until it answers over
HTTPS, and play the signers (``mdco sandbox sign ID``) through its admin endpoints."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLOSED = ("completed", "voided", "declined")


def admin_base_url(settings: Settings) -> str:
    return f"https://{settings.esign_host}:{settings.esign_port}"


def admin_client(settings: Settings, timeout: float = 10.0) -> httpx.Client:
    """An httpx client on the local server's admin API, trusting its generated CA."""
    ctx = ssl.create_default_context(cafile=settings.resolved_docusign_ca_cert)
    return httpx.Client(base_url=admin_base_url(settings), verify=ctx, timeout=timeout)


def list_envelopes(settings: Settings, external_id_prefix: str) -> list[dict]:
    """Envelopes whose ``external_id`` starts with the prefix (admin view: id, status, external_id, kind)."""
    with admin_client(settings) as client:
        listing = client.get("/admin/envelopes", params={"external_id_prefix": external_id_prefix})
        listing.raise_for_status()
    return [{**env, "external_id": env.get("externalId") or env.get("external_id", "")}
            for env in listing.json()["envelopes"]]


def sign_all(settings: Settings, workflow_id: str) -> list[str]:
    """Every signer of the workflow's open envelopes signs; the ids of the envelopes signed."""
    if not workflow_id or not workflow_id.strip():
        raise ValueError("workflow_id: must be a non-empty workflow id")
    signed = []
    with admin_client(settings) as client:
        listing = client.get("/admin/envelopes", params={"external_id_prefix": f"{workflow_id}:"})
        listing.raise_for_status()
        for env in listing.json()["envelopes"]:
            if env["status"] in CLOSED:
                continue
            client.post(f"/admin/envelopes/{env['envelopeId']}/sign").raise_for_status()
            signed.append(env["envelopeId"])
    return signed


def start_server_subprocess(settings: Settings, env: dict[str, str] | None = None,
                            log_path: Path | None = None) -> subprocess.Popen:
    """``python -m esign.server`` for these settings; output goes to ``<var>/esign/server.log``."""
    settings.esign_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or settings.esign_dir / "server.log"
    child_env = {**os.environ, **(env or {}), "MDCO_DOCUSIGN_HMAC_KEYS": settings.docusign_hmac_keys,
                 "MDCO_DOCUSIGN_ACCOUNT_ID": settings.docusign_account_id,
                 "MDCO_DOCUSIGN_USER_ID": settings.docusign_user_id,
                 "MDCO_DOCUSIGN_INTEGRATION_KEY": settings.docusign_integration_key,
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "esign.server", "--host", settings.esign_host,
             "--port", str(settings.esign_port), "--var-dir", str(settings.var_dir)],
            cwd=PROJECT_ROOT, env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )


def wait_healthy(settings: Settings, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Block until ``GET /health`` answers 200 over HTTPS with our CA; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    ca = Path(settings.resolved_docusign_ca_cert)
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"e-sign server exited with code {proc.returncode}; see {settings.esign_dir / 'server.log'}")
        if ca.exists():
            try:
                with admin_client(settings, timeout=2.0) as client:
                    if client.get("/health").status_code == 200:
                        return
            except (httpx.HTTPError, OSError) as exc:  # not listening yet, or CA still being written
                last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"e-sign server at {admin_base_url(settings)} not healthy after {timeout:.0f} s ({last})")


def stop_server(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the server started by ``start_server_subprocess`` (and wait for it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
