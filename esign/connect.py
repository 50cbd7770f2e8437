"""DocuSign Connect (JSON SIM) webhooks: HMAC verification and parsing into a PII-free event.

DocuSign signs the exact body bytes with HMAC-SHA256 (base64) once per configured key and sends
the results as ``X-DocuSign-Signature-1..N``; rotating keys means accepting any of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, ValidationError

SIGNATURE_HEADER = re.compile(r"^x-docusign-signature-(\d+)$", re.IGNORECASE)


def compute_signature(body: bytes, key: str) -> str:
    """Base64 HMAC-SHA256 of the raw body, as DocuSign puts in ``X-DocuSign-Signature-N``."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(body: bytes, keys: list[str]) -> dict[str, str]:
    """One ``X-DocuSign-Signature-N`` header per key, numbered from 1 in key order."""
    return {f"X-DocuSign-Signature-{i}": compute_signature(body, k) for i, k in enumerate(keys, 1)}


def verify_signature(body: bytes, headers: Mapping[str, str], keys: list[str]) -> bool:
    """True when any signature header matches the body signed with any of ``keys``."""
    supplied = [v.strip() for name, v in headers.items() if SIGNATURE_HEADER.match(name)]
    if not supplied or not keys:
        return False
    matched = False
    for key in keys:
        expected = compute_signature(body, key).encode("ascii")
        for value in supplied:
            # no early exit: every pair is compared so timing says nothing about which matched
            matched |= hmac.compare_digest(expected, value.encode("utf-8", "replace"))
    return matched


class RecipientStatus(BaseModel):
    """A recipient's progress, without name or e-mail."""

    model_config = ConfigDict(frozen=True)

    recipient_id: str
    routing_order: int
    status: str


class ConnectEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    envelope_id: str
    status: str  # envelope status after the event
    event: str  # e.g. envelope-completed, recipient-completed
    generated_at: datetime  # tz-aware UTC
    external_id: str | None = None
    recipients: list[RecipientStatus] = []


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: str) -> datetime:
    """DocuSign ISO timestamps (7 fractional digits, ``Z``) as tz-aware UTC datetimes."""
    text = _FRACTION.sub(r"\1", value.strip())
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)  # DocuSign timestamps are UTC
    return parsed.astimezone(timezone.utc)


def _require(obj: object, path: str) -> object:
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) in (None, ""):
            raise ValueError(f"Connect body: field '{path}' is missing or empty")
        node = node[part]
    return node


def _external_id(summary: dict) -> str | None:
    fields = (summary.get("customFields") or {}).get("textCustomFields") or []
    for field in fields:
        if isinstance(field, dict) and field.get("name") == "external_id":
            return field.get("value") or None
    return None


def _recipients(summary: dict) -> list[RecipientStatus]:
    signers = (summary.get("recipients") or {}).get("signers") or []
    out = []
    for i, s in enumerate(signers):
        if not isinstance(s, dict):
            raise ValueError(f"Connect body: field 'envelopeSummary.recipients.signers[{i}]' is not an object")
        try:
            out.append(
                RecipientStatus(
                    recipient_id=str(s.get("recipientId", "")),
                    routing_order=int(s.get("routingOrder") or 1),
                    status=str(s.get("status", "")),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Connect body: field 'envelopeSummary.recipients.signers[{i}].routingOrder' is not a number"
            ) from exc
    return out


def parse_connect_event(body: bytes) -> ConnectEvent:
    """The event a Connect JSON SIM delivery describes; ValueError naming the bad field."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Connect body: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    if not isinstance(doc, dict):
        raise ValueError("Connect body: top level must be a JSON object")
    event = _require(doc, "event")
    envelope_id = _require(doc, "data.envelopeId")
    status = _require(doc, "data.envelopeSummary.status")
    raw_at = _require(doc, "generatedDateTime")
    try:
        generated_at = parse_timestamp(str(raw_at))
    except ValueError as exc:
        raise ValueError(f"Connect body: field 'generatedDateTime' is not an ISO timestamp: {raw_at!r}") from exc
    summary = doc["data"]["envelopeSummary"]
    if not isinstance(summary, dict):
        raise ValueError("Connect body: field 'data.envelopeSummary' is not an object")
    try:
        return ConnectEvent(
            envelope_id=str(envelope_id),
            status=str(status).lower(),
            event=str(event),
            generated_at=generated_at,
            external_id=_external_id(summary),
            recipients=_recipients(summary),
        )
    except ValidationError as exc:  # pragma: no cover - fields are coerced above
        raise ValueError(f"Connect body: {exc}") from exc
