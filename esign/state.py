"""Envelope state of the local e-sign server: plain DocuSign-shaped dicts kept in memory and
written atomically to ``<var>/esign/state.json`` after every change, so a restart keeps them."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path


def docusign_now() -> str:
    """Now, formatted the way DocuSign does (UTC, 7 fractional digits, ``Z``)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"


class EnvelopeStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.envelopes: dict[str, dict] = {}
        if path.exists():
            data = json.loads(path.read_text("utf-8"))
            self.envelopes = data.get("envelopes", {})

    def get(self, envelope_id: str) -> dict | None:
        return self.envelopes.get(envelope_id)

    def put(self, envelope: dict) -> None:
        self.envelopes[envelope["envelopeId"]] = envelope
        self.save()

    def all(self) -> list[dict]:
        return sorted(self.envelopes.values(), key=lambda e: e["createdDateTime"])

    def save(self) -> None:
        with self._lock:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"envelopes": self.envelopes}), "utf-8")
            os.replace(tmp, self.path)


def custom_field_value(envelope: dict, name: str) -> str | None:
    fields = envelope.get("customFields", {})
    for field in fields.get("textCustomFields", []) + fields.get("listCustomFields", []):
        if field.get("name") == name:
            return field.get("value")
    return None
