"""The draft FDA MedWatch 3500 (voluntary report) summary of a serious or sentinel adverse event.

Pure: the sections of Form FDA 3500 (A patient, B adverse event or product problem, C product
availability, D suspect products, E suspect medical device, F other medical products, G reporter) as
data filled only from what the event report and the clinic record hold; everything else is left for
the medical director to complete (``TO_COMPLETE``). It is a draft kept in the clinic's records: nothing
here files anything with the FDA.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

#: Severities that get a draft (a minor event does not).
DRAFT_SEVERITIES = frozenset({"serious", "sentinel"})
TO_COMPLETE = "(to be completed by the reporter)"
FORM = "FDA 3500 (MedWatch voluntary report)"


def _date(value: datetime | str | None) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)[:10] if value else TO_COMPLETE


def sections(event: dict[str, Any], clinic: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The form's sections as data, from ``event`` (an adverse_events row) and ``clinic`` (its clinic)."""
    return {
        "A. Patient information": {
            "A.1 Patient identifier": TO_COMPLETE,
            "A.2 Age / date of birth": TO_COMPLETE,
            "A.3 Sex": TO_COMPLETE,
            "A.4 Weight": TO_COMPLETE,
        },
        "B. Adverse event, product problem": {
            "B.1 Check all that apply": "Adverse event",
            "B.2 Outcome attributed to adverse event": TO_COMPLETE,
            "B.3 Date of event": TO_COMPLETE,
            "B.4 Date of this report": TO_COMPLETE,
            "B.5 Describe event or problem": event["summary"],
            "B.6 Relevant tests / laboratory data": TO_COMPLETE,
            "B.7 Other relevant history": TO_COMPLETE,
        },
        "C. Product availability": {"C.1 Product available for evaluation": TO_COMPLETE},
        "D. Suspect products": {"D.1 Name, strength, manufacturer": TO_COMPLETE},
        "E. Suspect medical device": {"E.1 Brand name": TO_COMPLETE},
        "F. Other (concomitant) medical products": {"F.1 Products and therapy dates": TO_COMPLETE},
        "G. Reporter": {
            "G.1 Name, address, phone, e-mail": TO_COMPLETE,
            "G.2 Health professional": "Yes (medical director)",
            "Clinic": f"{clinic.get('name') or event['clinic_key']} ({event['clinic_key']})",
            "Medical director NPI": str(clinic.get("physician_npi") or TO_COMPLETE),
        },
    }


def render(event: dict[str, Any], clinic: dict[str, Any]) -> str:
    """The draft as Markdown: the clinic's internal record header, then every section's fields."""
    if event["severity"] not in DRAFT_SEVERITIES:
        raise ValueError(f"event {event['event_id']}: a {event['severity']} event gets no MedWatch draft")
    lines = [
        f"# DRAFT {FORM} summary",
        "",
        "Draft kept in the clinic's records; not submitted. The medical director reviews it and completes",
        f"the fields marked {TO_COMPLETE} before any submission.",
        "",
        "## Internal record",
        "",
        f"- Event: {event['event_id']}",
        f"- Severity (as reported by the clinic): {event['severity']}",
        f"- Reported to the medical director: {_date(event.get('reported_at'))}",
        f"- Acknowledgement due: {_date(event.get('ack_due_at'))}",
    ]
    for title, fields in sections(event, clinic).items():
        lines += ["", f"## {title}", ""]
        lines += [f"- {name}: {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


def file_name(event_id: str) -> str:
    return f"medwatch-3500-{event_id}.md"


__all__ = ["DRAFT_SEVERITIES", "TO_COMPLETE", "sections", "render", "file_name"]
