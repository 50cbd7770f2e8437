"""Plain SMTP delivery (a local sink in the embedded stack, a relay in production)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from config import Settings


class Mailer:
    def __init__(self, settings: Settings, timeout: float = 10.0):
        self._settings = settings
        self._timeout = timeout

    def send(self, to: list[str], subject: str, body: str, *, message_id_key: str = "") -> None:
        """Send one text message; ``message_id_key`` becomes a stable Message-ID for de-duplication."""
        msg = EmailMessage()
        msg["From"] = self._settings.mail_from
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        if message_id_key:
            msg["Message-ID"] = f"<{message_id_key.replace(' ', '-')}@mdco-onboarding>"
        msg.set_content(body)
        with smtplib.SMTP(self._settings.smtp_host, self._settings.smtp_port, timeout=self._timeout) as smtp:
            smtp.send_message(msg)
