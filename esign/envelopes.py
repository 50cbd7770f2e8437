"""Envelope lifecycle of the local e-sign server, on DocuSign-shaped dicts: validate a create
request, then move recipients and the envelope through sent → delivered → completed /
declined / voided. Each transition returns the Connect event names it caused."""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid

from esign.state import docusign_now

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OPEN_STATUSES = ("sent", "delivered")


class DocuSignError(Exception):
    """An error answered in DocuSign's shape: ``{"errorCode": ..., "message": ...}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _bad(field: str, reason: str, code: str = "INVALID_REQUEST_BODY") -> DocuSignError:
    return DocuSignError(400, code, f"The request body is invalid: '{field}' {reason}.")


def _text(obj: dict, key: str, path: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _bad(path, "is required")
        return None
    if not isinstance(value, (str, int)):
        raise _bad(path, "must be a string")
    return str(value).strip()


def _int(obj: dict, key: str, path: str, default: int) -> int:
    value = obj.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(path, "must be an integer") from None
    if number < 1:
        raise _bad(path, "must be at least 1")
    return number


def _documents(body: dict) -> list[dict]:
    docs = body.get("documents")
    if not isinstance(docs, list) or not docs:
        raise _bad("documents", "must be a non-empty list", "ENVELOPE_IS_INCOMPLETE")
    out, seen = [], set()
    for i, doc in enumerate(docs):
        path = f"documents[{i}]"
        if not isinstance(doc, dict):
            raise _bad(path, "must be an object")
        doc_id = _text(doc, "documentId", f"{path}.documentId")
        if doc_id in seen:
            raise _bad(f"{path}.documentId", f"duplicates document {doc_id}")
        seen.add(doc_id)
        raw = _text(doc, "documentBase64", f"{path}.documentBase64")
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"{path}.documentBase64", "is not valid base64") from None
        out.append(
            {
                "documentId": doc_id,
                "name": _text(doc, "name", f"{path}.name"),
                "fileExtension": (_text(doc, "fileExtension", f"{path}.fileExtension", False) or "pdf").lower(),
                "documentBase64": raw,
                "order": str(i + 1),
            }
        )
    return out


def _signers(body: dict) -> list[dict]:
    recipients = body.get("recipients")
    signers = recipients.get("signers") if isinstance(recipients, dict) else None
    if not isinstance(signers, list) or not signers:
        raise _bad("recipients.signers", "must be a non-empty list", "ENVELOPE_IS_INCOMPLETE")
    out, seen = [], set()
    for i, s in enumerate(signers):
        path = f"recipients.signers[{i}]"
        if not isinstance(s, dict):
            raise _bad(path, "must be an object")
        rid = _text(s, "recipientId", f"{path}.recipientId")
        if rid in seen:
            raise _bad(f"{path}.recipientId", f"duplicates recipient {rid}")
        seen.add(rid)
        email = _text(s, "email", f"{path}.email")
        if not EMAIL.match(email):
            raise _bad(f"{path}.email", "is not an e-mail address", "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT")
        out.append(
            {
                "recipientId": rid,
                "recipientIdGuid": str(uuid.uuid4()),
                "name": _text(s, "name", f"{path}.name"),
                "email": email,
                "routingOrder": str(_int(s, "routingOrder", f"{path}.routingOrder", 1)),
                "clientUserId": s.get("clientUserId"),
                "status": "created",
                "recipientType": "signer",
                "tabs": copy.deepcopy(s.get("tabs") or {}),
            }
        )
    return out


def create_envelope(account_id: str, body: object) -> tuple[dict, list[tuple[str, str | None]]]:
    """A new envelope from a create request; events are (event name, recipient id or None)."""
    if not isinstance(body, dict):
        raise DocuSignError(400, "INVALID_REQUEST_BODY", "The request body is missing or not a JSON object.")
    status = (body.get("status") or "created").lower()
    if status not in ("sent", "created"):
        raise _bad("status", "must be 'sent' or 'created'")
    subject = _text(body, "emailSubject", "emailSubject")
    custom = body.get("customFields") or {}
    if not isinstance(custom, dict):
        raise _bad("customFields", "must be an object")
    text_fields = []
    for i, f in enumerate(custom.get("textCustomFields") or []):
        if not isinstance(f, dict):
            raise _bad(f"customFields.textCustomFields[{i}]", "must be an object")
        name = _text(f, "name", f"customFields.textCustomFields[{i}].name")
        value = _text(f, "value", f"customFields.textCustomFields[{i}].value", False) or ""
        if len(value) > 100:
            raise _bad(f"customFields.textCustomFields[{i}].value", "is longer than 100 characters")
        text_fields.append({"fieldId": str(i + 1), "name": name, "value": value, "show": str(f.get("show", "false")),
                            "required": str(f.get("required", "false"))})
    notification = body.get("eventNotification")
    if notification is not None:
        if not isinstance(notification, dict):
            raise _bad("eventNotification", "must be an object")
        url = _text(notification, "url", "eventNotification.url")
        if not url.startswith(("http://", "https://")):
            raise _bad("eventNotification.url", "must be an http(s) URL")
    envelope_id = str(uuid.uuid4())
    now = docusign_now()
    envelope = {
        "envelopeId": envelope_id,
        "accountId": account_id,
        "status": "created",
        "emailSubject": subject,
        "emailBlurb": body.get("emailBlurb") or "",
        "envelopeUri": f"/envelopes/{envelope_id}",
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "statusChangedDateTime": now,
        "documents": _documents(body),
        "recipients": {"signers": _signers(body)},
        "customFields": {"textCustomFields": text_fields, "listCustomFields": []},
        "eventNotification": copy.deepcopy(notification),
    }
    events = send(envelope) if status == "sent" else []
    return envelope, events


def _touch(envelope: dict, status: str | None = None) -> str:
    now = docusign_now()
    envelope["lastModifiedDateTime"] = now
    if status:
        envelope["status"] = status
        envelope["statusChangedDateTime"] = now
    return now


def _pending(envelope: dict) -> list[dict]:
    return [s for s in envelope["recipients"]["signers"] if s["status"] not in ("completed", "declined")]


def current_routing_order(envelope: dict) -> int | None:
    pending = _pending(envelope)
    return min(int(s["routingOrder"]) for s in pending) if pending else None


def _activate_next(envelope: dict, now: str) -> list[tuple[str, str | None]]:
    order = current_routing_order(envelope)
    events = []
    for s in envelope["recipients"]["signers"]:
        if s["status"] == "created" and int(s["routingOrder"]) == order:
            s["status"] = "sent"
            s["sentDateTime"] = now
            events.append(("recipient-sent", s["recipientId"]))
    return events


def send(envelope: dict) -> list[tuple[str, str | None]]:
    if envelope["status"] != "created":
        raise DocuSignError(400, "ENVELOPE_INVALID_STATUS", "Only a draft envelope can be sent.")
    now = _touch(envelope, "sent")
    envelope["sentDateTime"] = now
    return [("envelope-sent", None)] + _activate_next(envelope, now)


def find_signer(envelope: dict, recipient_id: str) -> dict:
    for s in envelope["recipients"]["signers"]:
        if s["recipientId"] == recipient_id:
            return s
    raise DocuSignError(400, "UNKNOWN_ENVELOPE_RECIPIENT", "The recipient specified is not a recipient of the envelope.")


def _require_turn(envelope: dict, signer: dict) -> None:
    if envelope["status"] not in OPEN_STATUSES:
        raise DocuSignError(400, "ENVELOPE_INVALID_STATUS", f"The envelope is {envelope['status']}, not open for signing.")
    if signer["status"] not in ("sent", "delivered"):
        raise DocuSignError(
            400, "RECIPIENT_NOT_IN_SEQUENCE", f"Recipient {signer['recipientId']} is {signer['status']}, not awaiting action."
        )


def deliver(envelope: dict, recipient_id: str) -> list[tuple[str, str | None]]:
    """The recipient opened the envelope."""
    signer = find_signer(envelope, recipient_id)
    _require_turn(envelope, signer)
    if signer["status"] == "delivered":
        return []
    now = _touch(envelope)
    signer["status"] = "delivered"
    signer["deliveredDateTime"] = now
    events: list[tuple[str, str | None]] = [("recipient-delivered", recipient_id)]
    if envelope["status"] == "sent":
        _touch(envelope, "delivered")
        envelope["deliveredDateTime"] = now
        events.append(("envelope-delivered", None))
    return events


def sign(envelope: dict, recipient_id: str) -> list[tuple[str, str | None]]:
    events = deliver(envelope, recipient_id)
    signer = find_signer(envelope, recipient_id)
    now = _touch(envelope)
    signer["status"] = "completed"
    signer["signedDateTime"] = now
    events.append(("recipient-completed", recipient_id))
    if not _pending(envelope):
        _touch(envelope, "completed")
        envelope["completedDateTime"] = now
        events.append(("envelope-completed", None))
    else:
        events += _activate_next(envelope, now)
    return events


def sign_all(envelope: dict) -> list[tuple[str, str | None]]:
    """Every remaining signer signs, in routing order."""
    events: list[tuple[str, str | None]] = []
    while envelope["status"] in OPEN_STATUSES:
        order = current_routing_order(envelope)
        for s in list(envelope["recipients"]["signers"]):
            if int(s["routingOrder"]) == order and s["status"] in ("sent", "delivered"):
                events += sign(envelope, s["recipientId"])
    return events


def decline(envelope: dict, recipient_id: str, reason: str) -> list[tuple[str, str | None]]:
    events = deliver(envelope, recipient_id)
    signer = find_signer(envelope, recipient_id)
    now = _touch(envelope, "declined")
    signer["status"] = "declined"
    signer["declinedDateTime"] = now
    signer["declinedReason"] = reason
    envelope["declinedDateTime"] = now
    return events + [("recipient-declined", recipient_id), ("envelope-declined", None)]


def void(envelope: dict, reason: str) -> list[tuple[str, str | None]]:
    if envelope["status"] not in ("created", *OPEN_STATUSES):
        raise DocuSignError(
            400,
            "ENVELOPE_CANNOT_VOID_INVALID_STATE",
            f"Only envelopes in the 'Sent' or 'Delivered' states may be voided; this one is {envelope['status']}.",
        )
    now = _touch(envelope, "voided")
    envelope["voidedDateTime"] = now
    envelope["voidedReason"] = reason
    return [("envelope-voided", None)]


def summary(envelope: dict, include: set[str]) -> dict:
    """The envelope as GET/list return it: no document bytes, recipients only when asked."""
    out = {k: v for k, v in envelope.items() if k not in ("documents", "recipients", "eventNotification")}
    out["envelopeUri"] = envelope["envelopeUri"]
    out["recipientsUri"] = envelope["envelopeUri"] + "/recipients"
    out["documentsUri"] = envelope["envelopeUri"] + "/documents"
    out["customFieldsUri"] = envelope["envelopeUri"] + "/custom_fields"
    if "recipients" in include:
        out["recipients"] = recipients_view(envelope, "tabs" in include)
    if "custom_fields" not in include and include:
        out.pop("customFields", None)
    return out


def recipients_view(envelope: dict, include_tabs: bool = False) -> dict:
    signers = []
    for s in envelope["recipients"]["signers"]:
        view = {k: v for k, v in s.items() if v is not None and (include_tabs or k != "tabs")}
        signers.append(view)
    return {
        "signers": signers,
        "recipientCount": str(len(signers)),
        "currentRoutingOrder": str(current_routing_order(envelope) or ""),
    }
