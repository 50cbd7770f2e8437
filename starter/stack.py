"""The embedded stack behind ``mdco up``/``down``/``demo`` and the integration tests: Temporal dev
server (+UI), local e-sign server, SMTP sink, API and worker, each a subprocess in its own process
group, logging to ``var/log/<name>.log`` and recorded in ``var/run/<name>.pid`` so ``mdco down``
can stop what ``mdco up --detach`` left running (and never a stranger that reused a pid). Starting
skips the services whose recorded process still runs (waiting until they are healthy), so ``mdco up``
after a crash restarts only what died."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from config import Settings
from starter.binaries import temporal_cli
from workflows.search_attributes import dev_server_flags

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("temporal", "codec", "esign", "smtp", "api", "worker")  # start order; stop is the reverse
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20


def prepare_secrets(settings: Settings) -> None:
    """The local token issuer's key, the answer links' secret and the payload key (var/auth/, 0600),
    made once here so the API, the worker, the codec listener and the CLI never race to create them."""
    from api import auth, links
    from mdco_temporal.client import payload_key_spec

    if auth.uses_local_issuer(settings):
        auth.local_signing_key(settings)
    links.link_secrets(settings)
    payload_key_spec(settings)  # payloads are always encrypted: MDCO_PAYLOAD_KEYS or var/auth/payload.key


class StackError(RuntimeError):
    """The stack cannot start (port taken, child died, not healthy in time) or cannot be stopped."""


@dataclass(frozen=True)
class PortUse:
    port: int
    label: str  # "API port"
    env_var: str  # "MDCO_API_PORT"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    log: Path


# ---------------------------------------------------------------- settings → what every child sees

def resolve(settings: Settings) -> Settings:
    """The same settings with an absolute ``var_dir`` and database URL: children run with another cwd."""
    var_dir = settings.var_dir.resolve()
    resolved = settings.model_copy(update={"var_dir": var_dir})
    return resolved.model_copy(update={"database_url": resolved.resolved_database_url})


def stack_env(settings: Settings) -> dict[str, str]:
    """``MDCO_*`` variables for every setting, so each child agrees on ports and paths."""
    settings = resolve(settings)
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:  # unset (e.g. MDCO_PHYSICIAN_SHARE_PERCENT: the pricing data's): children default too
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        env[f"MDCO_{name.upper()}"] = str(value)
    return env


def temporal_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.temporal_address.rpartition(":")
    if not host or not port.isdigit():
        raise StackError(f"MDCO_TEMPORAL_ADDRESS: {settings.temporal_address!r} is not HOST:PORT")
    return host, int(port)


def _dial_host(host: str) -> str:
    """Where to connect for a server bound to ``host`` (a wildcard bind answers on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def codec_endpoint(settings: Settings) -> str:
    from api.codec import ui_endpoint

    return ui_endpoint(settings)


def run_dir(settings: Settings) -> Path:
    return settings.run_dir


def log_dir(settings: Settings) -> Path:
    return settings.var_dir / "log"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


# ---------------------------------------------------------------- what each service runs

def service_argv(name: str, settings: Settings) -> list[str]:
    settings = resolve(settings)
    if name == "temporal":
        host, port = temporal_host_port(settings)
        argv = [temporal_cli(), "server", "start-dev", "--ip", host, "--port", str(port),
                "--ui-port", str(settings.temporal_ui_port), "--db-filename", str(settings.var_dir / "temporal.db"),
                "--namespace", settings.temporal_namespace, "--log-level", "warn"]
        argv += ["--ui-disable-news-fetch"] if settings.temporal_ui else ["--headless"]
        for pragma in filter(None, (p.strip() for p in settings.temporal_sqlite_pragmas.split(","))):
            argv += ["--sqlite-pragma", pragma]
        if settings.temporal_ui:  # the UI decrypts payloads through the loopback-only codec listener
            argv += ["--ui-codec-endpoint", codec_endpoint(settings)]
        return argv + dev_server_flags()
    if name == "codec":
        return [sys.executable, "-m", "api.codec", "--port", str(settings.codec_port)]
    if name == "esign":
        return [sys.executable, "-m", "esign.server", "--host", settings.esign_host,
                "--port", str(settings.esign_port), "--var-dir", str(settings.var_dir)]
    if name == "smtp":
        return [sys.executable, "-m", "starter.smtp_sink", "--host", settings.smtp_host,
                "--port", str(settings.smtp_port), "--dir", str(settings.mail_dir)]
    if name == "api":
        return [sys.executable, "-m", "uvicorn", "api.app:app", "--host", settings.api_host,
                "--port", str(settings.api_port)]
    if name == "worker":
        return [sys.executable, "worker.py"]
    raise StackError(f"unknown service {name!r} (known: {', '.join(SERVICES)})")


def service_ports(name: str, settings: Settings) -> list[PortUse]:
    if name == "temporal":
        ports = [PortUse(temporal_host_port(settings)[1], "Temporal port", "MDCO_TEMPORAL_ADDRESS")]
        if settings.temporal_ui:
            ports.append(PortUse(settings.temporal_ui_port, "Temporal UI port", "MDCO_TEMPORAL_UI_PORT"))
        return ports
    return {
        "codec": [PortUse(settings.codec_port, "Codec port", "MDCO_CODEC_PORT")],
        "esign": [PortUse(settings.esign_port, "E-sign port", "MDCO_ESIGN_PORT")],
        "smtp": [PortUse(settings.smtp_port, "SMTP port", "MDCO_SMTP_PORT")],
        "api": [PortUse(settings.api_port, "API port", "MDCO_API_PORT")],
        "worker": [PortUse(settings.worker_metrics_port, "Worker metrics port", "MDCO_WORKER_METRICS_PORT")],
    }.get(name, [])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on (or holds) ``host:port``; TIME_WAIT leftovers do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError:
            return True
    return False


def check_ports(settings: Settings, services: list[str]) -> None:
    """StackError naming the first taken port, its service and the variable that moves it."""
    seen: dict[int, str] = {}
    for name in services:
        for use in service_ports(name, settings):
            if use.port in seen:
                raise StackError(f"{use.label} {use.port} is also the {seen[use.port]} (set {use.env_var})")
            seen[use.port] = use.label
            if port_in_use(use.port):
                raise StackError(f"{use.label} {use.port} is already in use (set {use.env_var})")


# ---------------------------------------------------------------- processes

def _proc_cmdline(pid: int) -> list[str] | None:
    """The argv a live process was started with; None when it is gone or unreadable."""
    if Path("/proc/self").is_dir():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return raw.rstrip(b"\0").decode(errors="replace").split("\0") if raw else []
    out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else None  # no /proc (macOS): argv with spaces won't match


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _reap(pid: int) -> bool:
    """Collect our own exited child so it stops counting as alive; True once ``pid`` is no
    unreaped child of ours (collected now or before, or never ours)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _group_alive(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def terminate_group(pgid: int, grace: float = STOP_GRACE_S, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds, and wait until it is
    gone (our own leader collected too). ``proc``: the leader's Popen when it is our child."""
    reaped = (lambda: proc.poll() is not None) if proc is not None else (lambda: _reap(pgid))
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if reaped() and not _group_alive(pgid):
                return
            time.sleep(0.05)
    raise StackError(f"process group {pgid} still alive after SIGKILL")


def _write_pid(settings: Settings, name: str, pid: int, argv: list[str]) -> None:
    path = pid_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".cmdline").write_text(json.dumps(argv))
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _remove_pid(settings: Settings, name: str) -> None:
    path = pid_file(settings, name)
    for p in (path, path.with_suffix(".cmdline")):
        p.unlink(missing_ok=True)


def recorded_pid(settings: Settings, name: str) -> int | None:
    """The pid ``var/run/<name>.pid`` names if that process is alive and runs what we started."""
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        expected = json.loads(path.with_suffix(".cmdline").read_text())
    except (OSError, ValueError):  # no record of the argv: it must be what these settings would run
        try:
            expected = service_argv(name, settings)
        except (StackError, FileNotFoundError):
            return None
    if not pid_alive(pid):
        return None
    return pid if _proc_cmdline(pid) == expected else None


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service's recorded pid and whether it still runs."""
    settings = resolve(settings)
    result = []
    for name in SERVICES:
        path = pid_file(settings, name)
        written = None
        if path.exists():
            try:
                written = int(path.read_text().split()[0])
            except (ValueError, IndexError):
                pass
        live = recorded_pid(settings, name)
        result.append(ServiceStatus(name, written, live is not None, log_dir(settings) / f"{name}.log"))
    return result


def down(settings: Settings, grace: float = STOP_GRACE_S) -> list[str]:
    """Stop what the pid files name (worker first, Temporal last); the names stopped. Stale files are removed."""
    settings = resolve(settings)
    stopped = []
    for name in reversed(SERVICES):
        if not pid_file(settings, name).exists():
            continue
        pid = recorded_pid(settings, name)
        if pid is not None:
            terminate_group(pid, stop_grace(settings, name, grace))
            stopped.append(name)
        _remove_pid(settings, name)
    return stopped


def stop_grace(settings: Settings, name: str, grace: float) -> float:
    """Seconds between SIGTERM and SIGKILL: the worker gets its activity grace period and a margin."""
    return max(grace, settings.worker_shutdown_grace_s + 5.0) if name == "worker" else grace


# ---------------------------------------------------------------- health checks

def _run_async(coro):
    """Run a coroutine to completion on a private loop (the caller may itself be inside a loop)."""
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _temporal_ready(settings: Settings) -> None:
    from mdco_temporal.client import connect, ensure_search_attributes

    async def attempt():
        client = await asyncio.wait_for(connect(settings), 5)
        await asyncio.wait_for(ensure_search_attributes(client), 5)

    _run_async(attempt())


def _codec_ready(settings: Settings) -> None:
    response = httpx.get(f"http://127.0.0.1:{settings.codec_port}/healthz", timeout=2)
    if response.status_code != 200:
        raise OSError(f"codec /healthz answered {response.status_code}")


def _esign_ready(settings: Settings) -> None:
    from esign.sandbox import wait_healthy

    wait_healthy(settings, timeout=1.0)


def _smtp_ready(settings: Settings) -> None:
    with smtplib.SMTP(_dial_host(settings.smtp_host), settings.smtp_port, timeout=2) as smtp:
        code, _ = smtp.ehlo()
        if code != 250:
            raise OSError(f"EHLO answered {code}")


def _api_ready(settings: Settings) -> None:
    response = httpx.get(f"http://{_dial_host(settings.api_host)}:{settings.api_port}/healthz", timeout=2)
    if response.status_code != 200:
        raise OSError(f"/healthz answered {response.status_code}")


def _worker_ready(settings: Settings) -> None:
    """The worker's own /healthz: 200 only while it polls (its live state, nothing left on disk)."""
    url = f"http://{_dial_host(settings.worker_metrics_host)}:{settings.worker_metrics_port}/healthz"
    response = httpx.get(url, timeout=2)
    if response.status_code != 200:
        raise OSError(f"worker /healthz answered {response.status_code}")


HEALTH: dict[str, Callable[[Settings], None]] = {
    "temporal": _temporal_ready, "codec": _codec_ready, "esign": _esign_ready, "smtp": _smtp_ready,
    "api": _api_ready, "worker": _worker_ready,
}
TIMEOUT_S = {"temporal": 60.0, "codec": 30.0, "esign": 30.0, "smtp": 15.0, "api": 30.0, "worker": 60.0}


# ---------------------------------------------------------------- the stack

class Stack:
    """Start the selected services in order, each healthy before the next; stop them in reverse."""

    def __init__(self, settings: Settings, services: list[str] | tuple[str, ...] | None = None,
                 env: dict[str, str] | None = None, grace: float = STOP_GRACE_S):
        self.settings = resolve(settings)
        chosen = list(services) if services is not None else \
            [s for s in SERVICES if s != "codec" or self.settings.temporal_ui]  # the codec serves the UI
        unknown = [s for s in chosen if s not in SERVICES]
        if unknown:
            raise StackError(f"services: unknown {', '.join(unknown)} (known: {', '.join(SERVICES)})")
        self.services = [s for s in SERVICES if s in chosen]  # always in dependency order
        self.env = {**os.environ, **(env or {}), **stack_env(self.settings),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        self.grace = grace
        self.procs: dict[str, subprocess.Popen] = {}
        self.adopted: list[str] = []  # already running when start() was called; left alone by stop()
        self._atexit = False
        self._saved_handlers: dict[int, object] = {}

    # -- lifecycle
    def start(self, detach: bool = False) -> None:
        """Start every service and wait until each is healthy. ``detach=False``: the caller will
        ``wait()``/``stop()`` (and they are stopped at interpreter exit at the latest)."""
        if self.procs:
            raise StackError("this stack is already started")
        self.adopted = self._already_running()
        check_ports(self.settings, [s for s in self.services if s not in self.adopted])
        for directory in (run_dir(self.settings), log_dir(self.settings), self.settings.mail_dir):
            directory.mkdir(parents=True, exist_ok=True)
        prepare_secrets(self.settings)
        if not detach:
            self._own_the_children()
        try:
            for name in self.services:
                if name in self.adopted:
                    self._wait_healthy(name, None, log_dir(self.settings) / f"{name}.log", None)
                else:
                    self._start_one(name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM each service's process group (reverse order), SIGKILL after the grace period."""
        errors = []
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            try:
                terminate_group(proc.pid, stop_grace(self.settings, name, self.grace), proc)
                proc.wait(5)
            except (StackError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{name}: {exc}")
            if recorded_pid(self.settings, name) in (None, proc.pid):
                _remove_pid(self.settings, name)
        while self._saved_handlers:
            sig, handler = self._saved_handlers.popitem()
            signal.signal(sig, handler)
        if errors:
            raise StackError("could not stop " + "; ".join(errors))

    def wait(self, poll: float = 0.5) -> str:
        """Block until one service exits; its name (Ctrl-C raises KeyboardInterrupt to the caller)."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    return name
            time.sleep(poll)

    def __enter__(self) -> "Stack":
        if not self.procs:
            self.start(detach=False)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- information
    def urls(self) -> dict[str, str]:
        s = self.settings
        host, port = temporal_host_port(s)
        urls: dict[str, str] = {}
        if "temporal" in self.services:
            urls["temporal"] = s.temporal_address
            if s.temporal_ui:
                urls["temporal_ui"] = f"http://{_dial_host(host)}:{s.temporal_ui_port}"
        if "codec" in self.services:
            urls["codec"] = codec_endpoint(s)
        if "api" in self.services:
            base = f"http://{_dial_host(s.api_host)}:{s.api_port}"
            urls["api"] = base
            urls["api_docs"] = f"{base}/docs"
        if "esign" in self.services:
            urls["esign"] = f"https://{_dial_host(s.esign_host)}:{s.esign_port}"
        if "smtp" in self.services:
            urls["smtp"] = f"smtp://{_dial_host(s.smtp_host)}:{s.smtp_port}"
            urls["mailbox"] = str(s.mail_dir)
        return urls

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    # -- internals
    def _own_the_children(self) -> None:
        """Attached mode: the children go when we go, at interpreter exit or on SIGTERM/SIGHUP (which
        raise KeyboardInterrupt, as Ctrl-C does, so the caller's ``finally: stop()`` runs)."""
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        if threading.current_thread() is threading.main_thread():
            def interrupt(signum, frame):
                raise KeyboardInterrupt(signal.Signals(signum).name)

            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._saved_handlers.setdefault(sig, signal.signal(sig, interrupt))

    def _already_running(self) -> list[str]:
        """The selected services whose recorded process still runs; stale pid files are removed."""
        running = []
        for name in self.services:
            if recorded_pid(self.settings, name) is not None:
                running.append(name)
            elif pid_file(self.settings, name).exists():
                _remove_pid(self.settings, name)  # stale: its process is gone or is someone else's
        return running

    def restart(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Stop one service with ``sig`` (SIGKILL simulates a crash) and start it again; the new pid."""
        proc = self.procs.pop(name, None)
        if proc is None:
            raise StackError(f"{name} is not running in this stack")
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(10)
        _remove_pid(self.settings, name)
        self._start_one(name)
        return self.procs[name].pid

    def _start_one(self, name: str) -> None:
        argv = service_argv(name, self.settings)
        log_path = log_dir(self.settings) / f"{name}.log"
        with open(log_path, "ab") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            offset = log.tell()
            proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        _write_pid(self.settings, name, proc.pid, argv)
        self._wait_healthy(name, proc, log_path, offset)

    def _wait_healthy(self, name: str, proc: subprocess.Popen | None, log_path: Path, offset: int | None) -> None:
        """Until ``name`` answers its health check; ``proc`` None: one already running (adopted)."""
        timeout = TIMEOUT_S[name]
        deadline = time.monotonic() + timeout
        last = "no answer"
        if offset is None:
            offset = log_path.stat().st_size if log_path.exists() else 0
        while True:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode} during start-up; "
                                 f"last lines of {log_path}:\n{_tail(log_path, offset)}")
            try:
                HEALTH[name](self.settings)
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet; keep the reason for the timeout message
                last = f"{type(exc).__name__}: {exc}"[:300]
            if time.monotonic() >= deadline:
                raise StackError(f"{name} not healthy after {timeout:.0f} s ({last}); "
                                 f"last lines of {log_path}:\n{_tail(log_path, offset)}")
            time.sleep(0.2)


def _tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"
