"""Connect deliveries of the local e-sign server: one JSON SIM payload per event, HMAC-signed
with each configured key, POSTed in the background with bounded exponential-backoff retries,
in order per envelope (unless the out-of-order fault is on)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import ssl
from collections import defaultdict, deque

import certifi
import httpx

from esign.connect import signature_headers
from esign.envelopes import summary
from esign.knobs import ServerKnobs
from esign.state import docusign_now

log = logging.getLogger("esign.connect")

TERMINAL_EVENTS = {"envelope-completed", "envelope-declined", "envelope-voided"}
CONFIGURATION_ID = "10000001"  # per-envelope notifications have no account-level config id


def wanted_events(notification: dict) -> set[str]:
    """Event names an envelope's eventNotification subscribes to (JSON SIM or legacy lists)."""
    names = {str(e).lower() for e in notification.get("events") or []}
    for e in notification.get("envelopeEvents") or []:
        code = str((e or {}).get("envelopeEventStatusCode", "")).lower()
        if code:
            names.add(f"envelope-{code}")
    for e in notification.get("recipientEvents") or []:
        code = str((e or {}).get("recipientEventStatusCode", "")).lower()
        if code:
            names.add(f"recipient-{code}")
    return names


def _include_data(notification: dict) -> set[str]:
    data = notification.get("eventData") or {}
    return {str(x).lower() for x in data.get("includeData") or []}


def build_payload(envelope: dict, event: str, recipient_id: str | None) -> dict:
    """The Connect JSON SIM body for ``event`` as the envelope stands now."""
    notification = envelope.get("eventNotification") or {}
    include = _include_data(notification) | {"custom_fields"}
    env_summary = summary(envelope, include)
    if notification.get("includeEnvelopeVoidReason") in (False, "false"):
        env_summary.pop("voidedReason", None)
    data = {
        "accountId": envelope["accountId"],
        "userId": envelope.get("senderUserId", ""),
        "envelopeId": envelope["envelopeId"],
        "envelopeSummary": env_summary,
    }
    if recipient_id is not None:
        data["recipientId"] = recipient_id
    return {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{envelope['accountId']}/envelopes/{envelope['envelopeId']}",
        "retryCount": 0,
        "configurationId": CONFIGURATION_ID,
        "generatedDateTime": docusign_now(),
        "data": data,
    }


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class ConnectDispatcher:
    def __init__(self, keys: list[str], knobs: ServerKnobs, ca_file: str | None = None):
        self.keys = keys
        self.knobs = knobs
        self.ca_file = ca_file
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task] = set()
        self._client: httpx.AsyncClient | None = None
        #: recent delivery attempts, for the admin endpoint and tests (no PII: ids and codes only)
        self.attempts: deque[dict] = deque(maxlen=2000)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(verify=_ssl_context(self.ca_file), timeout=self.knobs.connect_timeout_s)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client:
            await self._client.aclose()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def emit(self, envelope: dict, events: list[tuple[str, str | None]]) -> None:
        """Queue deliveries for the events the envelope subscribed to (call from the event loop)."""
        notification = envelope.get("eventNotification") or {}
        url = notification.get("url")
        if not url:
            return
        wanted = wanted_events(notification)
        for event, recipient_id in events:
            if event not in wanted:
                continue
            payload = build_payload(envelope, event, recipient_id)
            for _ in range(2 if self.knobs.duplicate_deliveries else 1):
                task = asyncio.create_task(self._deliver(url, notification, copy.deepcopy(payload)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, notification: dict, payload: dict) -> None:
        envelope_id = payload["data"]["envelopeId"]
        if self.knobs.out_of_order:
            if payload["event"] not in TERMINAL_EVENTS:
                await asyncio.sleep(0.5)
            await self._send_with_retries(url, notification, payload)
            return
        async with self._locks[envelope_id]:  # Lock is FIFO: deliveries keep event order
            await self._send_with_retries(url, notification, payload)

    def _headers(self, body: bytes, notification: dict) -> dict[str, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "DocuSign-Connect-Local"}
        if str(notification.get("includeHMAC", "false")).lower() == "true":
            keys = ["not-a-configured-key"] * len(self.keys) if self.knobs.wrong_signature else self.keys
            headers.update(signature_headers(body, keys))
        return headers

    async def _send_with_retries(self, url: str, notification: dict, payload: dict) -> None:
        assert self._client is not None, "dispatcher not started"
        must_ack = str(notification.get("requireAcknowledgment", "false")).lower() == "true"
        tries = self.knobs.connect_max_tries if must_ack else 1
        for attempt in range(tries):
            payload["retryCount"] = attempt
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
            record = {
                "envelopeId": payload["data"]["envelopeId"],
                "event": payload["event"],
                "attempt": attempt + 1,
                "status": None,
                "error": None,
            }
            try:
                response = await self._client.post(url, content=body, headers=self._headers(body, notification))
                record["status"] = response.status_code
            except httpx.HTTPError as exc:
                record["error"] = type(exc).__name__
            self.attempts.append(record)
            if record["status"] is not None and 200 <= record["status"] < 300:
                return
            log.info("connect delivery %s %s attempt %d failed: %s", record["envelopeId"], record["event"],
                     attempt + 1, record["status"] or record["error"])
            if attempt + 1 < tries:
                await asyncio.sleep(self.knobs.connect_backoff_s * (2**attempt))
        log.warning("connect delivery %s %s gave up after %d tries", payload["data"]["envelopeId"], payload["event"], tries)
