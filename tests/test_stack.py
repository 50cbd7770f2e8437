"""The embedded stack: SMTP sink, port checks, start/health/stop of real subprocesses, ``down`` by pid files."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from starter import stack as stack_mod
from starter.smtp_sink import read_mailbox, start_sink, wait_for_mail
from starter.stack import Stack, StackError, down, pid_file, service_argv, stack_env, status, terminate_group
from tests.stack_fixtures import free_ports, stack_settings
from workflows import search_attributes as sa

SUBSET = ["temporal", "esign", "smtp"]


def _message(to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "onboarding@medicaldirector.example"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"body of {subject}")
    return msg


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------- SMTP sink

def test_sink_keeps_each_message_as_eml_in_arrival_order(tmp_path):
    (port,) = free_ports(1)
    controller = start_sink("127.0.0.1", port, tmp_path / "mail")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.send_message(_message("clinic@glow.example", "first"),
                              to_addrs=["clinic@glow.example", "ops@medicaldirector.example"])
            smtp.send_message(_message("md@md.example", "second"))
    finally:
        controller.stop()
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"] and files[0].name < files[1].name
    messages = read_mailbox(tmp_path / "mail")
    assert [m["Subject"] for m in messages] == ["first", "second"]
    assert messages[0]["X-Envelope-To"] == "clinic@glow.example, ops@medicaldirector.example"  # BCC visible
    assert messages[1].get_content().strip() == "body of second"


def test_mailbox_ignores_partial_files_and_missing_dirs(tmp_path):
    assert read_mailbox(tmp_path / "absent") == []
    (tmp_path / ".20260101T000000000000Z-000001-1.eml.tmp").write_bytes(b"Subject: half\r\n")
    assert read_mailbox(tmp_path) == []
    with pytest.raises(TimeoutError, match="0 messages"):
        wait_for_mail(tmp_path, lambda msgs: len(msgs) > 0, timeout=0.2)


# ---------------------------------------------------------------- commands and environment

def test_children_get_absolute_paths_and_every_port(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = stack_settings(Path("var"), temporal_ui=False)
    env = stack_env(settings)
    assert env["MDCO_VAR_DIR"] == str(tmp_path / "var")
    assert env["MDCO_DATABASE_URL"].startswith("sqlite:///")
    assert env["MDCO_API_PORT"] == str(settings.api_port) and env["MDCO_TEMPORAL_UI"] == "0"
    argv = service_argv("temporal", settings)
    assert "--headless" in argv and "--ui-disable-news-fetch" not in argv
    assert argv[argv.index("--port") + 1] == settings.temporal_address.rsplit(":", 1)[1]
    registered = {argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "--search-attribute"}
    assert registered == {key.name for key in sa.ALL}
    assert "--headless" not in service_argv("temporal", stack_settings(tmp_path, temporal_ui=True))
    pragmas = [argv[i + 1] for i, a in enumerate(argv) if a == "--sqlite-pragma"]
    assert pragmas == ["journal_mode=wal", "synchronous=normal"]  # the dev server's file in WAL mode
    bare = service_argv("temporal", stack_settings(tmp_path, temporal_ui=False, temporal_sqlite_pragmas=""))
    assert "--sqlite-pragma" not in bare


@pytest.mark.parametrize("service, field, label, variable", [
    ("api", "api_port", "API port", "MDCO_API_PORT"),
    ("smtp", "smtp_port", "SMTP port", "MDCO_SMTP_PORT"),
    ("esign", "esign_port", "E-sign port", "MDCO_ESIGN_PORT"),
    ("temporal", "temporal_ui_port", "Temporal UI port", "MDCO_TEMPORAL_UI_PORT"),
    ("temporal", "temporal_address", "Temporal port", "MDCO_TEMPORAL_ADDRESS"),
    ("worker", "worker_metrics_port", "Worker metrics port", "MDCO_WORKER_METRICS_PORT"),
])
def test_port_in_use_names_port_and_variable_and_starts_nothing(tmp_path, service, field, label, variable):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        value = f"127.0.0.1:{port}" if field == "temporal_address" else port
        settings = stack_settings(tmp_path, **{field: value})
        with pytest.raises(StackError) as err:
            Stack(settings, services=[service]).start(detach=True)
    assert str(err.value) == f"{label} {port} is already in use (set {variable})"
    assert not pid_file(settings, service).exists()


def test_same_port_for_two_services_is_refused(tmp_path):
    settings = stack_settings(tmp_path)
    settings = settings.model_copy(update={"smtp_port": settings.esign_port})
    with pytest.raises(StackError, match=f"SMTP port {settings.esign_port} is also the E-sign port"):
        Stack(settings, services=["esign", "smtp"]).start(detach=True)


def test_unknown_service_is_refused(tmp_path):
    with pytest.raises(StackError, match="unknown mailhog"):
        Stack(stack_settings(tmp_path), services=["smtp", "mailhog"])


# ---------------------------------------------------------------- real processes

@pytest.mark.integration
def test_subset_starts_healthy_and_down_stops_every_process(tmp_path):
    settings = stack_settings(tmp_path / "var")
    started = Stack(settings, services=SUBSET)
    started.start(detach=True)
    pids = started.pids()
    try:
        assert set(pids) == set(SUBSET)
        assert [s.name for s in status(settings) if s.running] == SUBSET
        urls = started.urls()
        assert urls["temporal_ui"] == f"http://127.0.0.1:{settings.temporal_ui_port}"
        assert httpx.get(urls["temporal_ui"], timeout=5).status_code == 200

        ca = ssl.create_default_context(cafile=started.settings.resolved_docusign_ca_cert)
        assert httpx.get(f"{urls['esign']}/health", verify=ca, timeout=5).status_code == 200

        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=5) as smtp:
            smtp.send_message(_message("clinic@glow.example", "through the stack"))
        mail = wait_for_mail(started.settings.mail_dir, lambda msgs: len(msgs) == 1, timeout=5)
        assert mail[0]["Subject"] == "through the stack"

        listed = subprocess.run(
            [service_argv("temporal", settings)[0], "operator", "search-attribute", "list",
             "--address", settings.temporal_address, "--namespace", settings.temporal_namespace],
            capture_output=True, text=True, timeout=20, check=True).stdout
        assert all(key.name in listed for key in sa.ALL)

        again = Stack(settings, services=["smtp"])  # `mdco up` again: starts nothing that runs
        again.start(detach=True)
        assert again.pids() == {} and again.adopted == ["smtp"]
    finally:
        stopped = down(settings)  # a fresh reader of the pid files, as `mdco down` is
    assert stopped == list(reversed(SUBSET))
    assert all(_gone(pid) for pid in pids.values())
    assert not any(pid_file(settings, name).exists() for name in SUBSET)
    assert not any(s.running for s in status(settings))
    assert down(settings) == []


def test_child_dying_at_start_up_is_reported_with_its_log(tmp_path, monkeypatch):
    real = service_argv
    monkeypatch.setattr(stack_mod, "service_argv", lambda name, s: (
        [sys.executable, "-c", "import sys; print('bad smtp config: port list'); sys.exit(3)"]
        if name == "smtp" else real(name, s)))
    settings = stack_settings(tmp_path)
    with pytest.raises(StackError) as err:
        Stack(settings, services=["smtp"]).start(detach=True)
    assert "smtp exited with code 3" in str(err.value) and "bad smtp config: port list" in str(err.value)
    assert not pid_file(settings, "smtp").exists()


def test_down_leaves_a_process_that_reused_the_pid_alone(tmp_path):
    settings = stack_settings(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        pid_file(settings, "smtp").parent.mkdir(parents=True)
        pid_file(settings, "smtp").write_text(f"{stranger.pid}\n")  # no .cmdline: compared to the smtp argv
        pid_file(settings, "api").write_text("999999999\n")  # a pid that cannot exist
        assert down(settings) == []
        assert stranger.poll() is None
        assert not pid_file(settings, "smtp").exists() and not pid_file(settings, "api").exists()
    finally:
        stranger.kill()
        stranger.wait()


FOREGROUND = """
from config import Settings
from starter.stack import Stack
stack = Stack(Settings(), services=["smtp"])
try:
    stack.start(detach=False)
    print(stack.pids()["smtp"], flush=True)
    stack.wait()
except KeyboardInterrupt:
    pass
finally:
    stack.stop()
"""


def test_sigterm_to_a_foreground_stack_stops_its_children(tmp_path):
    settings = stack_settings(tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", FOREGROUND], cwd=stack_mod.PROJECT_ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, **stack_env(settings)})
    try:
        smtp_pid = int(owner.stdout.readline())
        assert not _gone(smtp_pid)
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(15) == 0
    finally:
        owner.kill()
        owner.wait()
        leftovers = down(settings)  # only does something when the owner failed to stop its child
    assert leftovers == [] and _gone(smtp_pid) and not pid_file(settings, "smtp").exists()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    began = time.monotonic()
    terminate_group(proc.pid, grace=0.5, proc=proc)
    assert proc.wait(1) == -9 and 0.4 < time.monotonic() - began < 5


@pytest.mark.integration
def test_full_stack_fixture_is_healthy(stack):
    settings, env = stack
    assert httpx.get(f"http://127.0.0.1:{settings.api_port}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/healthz", timeout=5).status_code == 200
    assert env["MDCO_TEMPORAL_ADDRESS"] == settings.temporal_address
