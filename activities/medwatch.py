"""Write the draft FDA MedWatch 3500 summary of a serious or sentinel adverse event into the clinic's
records (``<documents_dir>/<clinic_key>/medwatch-3500-<event_id>.md``) and store its SHA-256 on the event.

Idempotent: a draft already written with the stored SHA-256 is kept as it is (the medical director may be
completing it elsewhere; the stored file is the record); a missing one is written again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import Engine

from activities.onboarding import write_document
from domain import medwatch
from store import onboardings, oversight
from store.common import NotFound


def draft_medwatch(engine: Engine, documents_dir: Path, event_id: str) -> dict | None:
    """The event row with ``medwatch_path``/``medwatch_sha256`` set, or None for a minor event."""
    event = oversight.get_event(engine, event_id)
    if event is None:
        raise NotFound(f"event {event_id}: no such adverse event")
    if event["severity"] not in medwatch.DRAFT_SEVERITIES:
        return None
    stored = Path(event["medwatch_path"]) if event.get("medwatch_path") else None
    if stored is not None and stored.exists() and \
            hashlib.sha256(stored.read_bytes()).hexdigest() == event.get("medwatch_sha256"):
        return event
    clinic = onboardings.get_clinic(engine, event["clinic_key"]) or {}
    content = medwatch.render(event, clinic).encode()
    path, sha = write_document(documents_dir / event["clinic_key"], medwatch.file_name(event_id), content)
    return oversight.record_medwatch(engine, event_id, str(path), sha)


__all__ = ["draft_medwatch"]
