"""Structured logs: one JSON object per line, the same shape in the worker and the API.

Each line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, plus ``workflow_id``,
``run_id``, ``activity`` and ``stage`` when known, and ``exc`` for a traceback. Temporal's loggers
carry the execution in ``extra`` (``temporal_activity`` from ``activity.logger``, ``temporal_workflow``
from ``workflow.logger``); a plain logger used inside a running activity gets it from the activity
context. Only the fields in ``EXTRA_FIELDS`` are ever copied from a record's ``extra``: whatever else a
caller attaches (a contact's name, e-mail or phone) is dropped, and e-mail addresses and phone numbers
in the message text itself are masked as a second line of defence. Logs never carry PII.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

#: ``extra`` keys copied to the JSON line (values must be scalars); everything else is dropped.
EXTRA_FIELDS = ("workflow_id", "run_id", "activity", "stage", "attempt", "task_queue", "workflow_type",
                "sla_status", "method", "route", "status", "duration_ms", "service")
_SCALARS = (str, int, float, bool)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# +1 512 555 0100, (512) 555-0100, 512-555-0100, 512.555.0100 (a bare 10-digit NPI is no phone)
_PHONE = re.compile(r"(?:\+\d[\d\s().-]{7,}\d|\(\d{3}\)\s*\d{3}[\s.-]\d{4}|\b\d{3}[.-]\d{3}[.-]\d{4}\b)")
_HANDLER_MARK = "_mdco_observability"


def redact(text: str) -> str:
    """``text`` with e-mail addresses and phone numbers masked."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


def _temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    """workflow_id / run_id / activity from Temporal's ``extra`` or, failing that, the activity context."""
    out: dict[str, Any] = {}
    wf = getattr(record, "temporal_workflow", None)
    if isinstance(wf, dict):
        out.update(workflow_id=wf.get("workflow_id"), run_id=wf.get("run_id"),
                   workflow_type=wf.get("workflow_type"))
    act = getattr(record, "temporal_activity", None)
    if not isinstance(act, dict):
        act = _current_activity()
    if act:
        out.update(workflow_id=act.get("workflow_id"), run_id=act.get("workflow_run_id"),
                   activity=act.get("activity_type"), attempt=act.get("attempt"))
    return {k: v for k, v in out.items() if v is not None}


def _current_activity() -> dict[str, Any] | None:
    try:
        from temporalio import activity

        if activity.in_activity():
            info = activity.info()
            return {"workflow_id": info.workflow_id, "workflow_run_id": info.workflow_run_id,
                    "activity_type": info.activity_type, "attempt": info.attempt}
    except Exception:  # noqa: BLE001 - never let logging fail
        pass
    return None


class JsonFormatter(logging.Formatter):
    """A record as one JSON line of whitelisted fields (see the module doc)."""

    def __init__(self, service: str = ""):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self.service:
            line["service"] = self.service
        line.update(_temporal_fields(record))
        for key in EXTRA_FIELDS:
            value = record.__dict__.get(key)
            if isinstance(value, _SCALARS) and key not in line:
                line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal (``MDCO_LOG_FORMAT=text``); the same masking as the JSON lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(service: str, log_format: str = "json", level: str = "INFO") -> None:
    """Route every logger through one stderr handler with our formatter (idempotent).

    uvicorn's loggers propagate to it too; its access log is silenced because the API's middleware
    logs each request (route template, status, duration) without the client's address."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per scrape of the SDK exporter otherwise
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
