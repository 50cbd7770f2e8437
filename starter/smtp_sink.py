"""Local SMTP sink for the embedded stack (``python -m starter.smtp_sink``): every message the
mailer sends is kept as an ``.eml`` file, so the demo and the tests can read what a clinic,
physician or pharmacy would have received without any mail leaving the machine."""

from __future__ import annotations

import argparse
import email.policy
import itertools
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller

log = logging.getLogger("starter.smtp_sink")

SUFFIX = ".eml"


class MailboxHandler:
    """aiosmtpd handler: one file per message, written atomically (tmp file, then rename)."""

    def __init__(self, mail_dir: Path):
        self.mail_dir = Path(mail_dir)
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def _next_name(self) -> str:
        # UTC timestamp first so names sort by arrival; the counter breaks ties, the pid separates restarts
        with self._lock:
            n = next(self._counter)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{stamp}-{n:06d}-{os.getpid()}{SUFFIX}"

    def store(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        """Write one message (envelope sender/recipients as X-Envelope-* headers: BCCs stay visible)."""
        header = (f"X-Envelope-From: {mail_from}\r\nX-Envelope-To: {', '.join(rcpt_tos)}\r\n").encode()
        name = self._next_name()
        final = self.mail_dir / name
        tmp = self.mail_dir / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(header + content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        log.info("stored message %s (%d bytes, %d recipients)", name, len(content), len(rcpt_tos))  # no addresses: PII
        return final

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd hook name
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.store(envelope.mail_from, list(envelope.rcpt_tos), content)
        return "250 Message accepted for delivery"


def start_sink(host: str, port: int, mail_dir: Path) -> Controller:
    """A running sink (aiosmtpd controller thread); call ``.stop()`` when done."""
    controller = Controller(MailboxHandler(mail_dir), hostname=host, port=port, enable_SMTPUTF8=True)
    controller.start()
    return controller


def read_mailbox(mail_dir: Path | str) -> list[EmailMessage]:
    """Every stored message, oldest first (an absent directory is an empty mailbox)."""
    directory = Path(mail_dir)
    if not directory.is_dir():
        return []
    parser = BytesParser(policy=email.policy.default)
    messages = []
    for path in sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")):
        with open(path, "rb") as fh:
            messages.append(parser.parse(fh))
    return messages


def wait_for_mail(mail_dir: Path | str, predicate: Callable[[list[EmailMessage]], bool],
                  timeout: float = 10.0) -> list[EmailMessage]:
    """Poll the mailbox until ``predicate(messages)`` holds; TimeoutError (with the count) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_mailbox(mail_dir)
        if predicate(messages):
            return messages
        if time.monotonic() >= deadline:
            raise TimeoutError(f"mailbox {mail_dir}: condition not met after {timeout:.0f} s ({len(messages)} messages)")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    from config import Settings

    base = Settings()
    parser = argparse.ArgumentParser(prog="python -m starter.smtp_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=base.smtp_host, help="bind address (MDCO_SMTP_HOST)")
    parser.add_argument("--port", type=int, default=base.smtp_port, help="SMTP port (MDCO_SMTP_PORT)")
    parser.add_argument("--dir", default=str(base.mail_dir), help="where .eml files go (MDCO_VAR_DIR/mail)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller = start_sink(args.host, args.port, Path(args.dir))
    log.info("SMTP sink on %s:%d writing to %s", args.host, args.port, args.dir)
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
