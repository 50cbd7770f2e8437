"""The DocuSign adapter activities call: JWT grant with a cached, early-renewed token, envelope
create-or-find by the ``external_id`` custom field, status, void, combined download, and
``ApiException``s mapped to retryable vs permanent errors. Sync; callers run it in threads."""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Literal, TypeVar

import urllib3
from docusign_esign import ApiClient, EnvelopesApi
from docusign_esign import models as ds
from docusign_esign.client.api_exception import ApiException
from docusign_esign.client.api_response import RESTClientObject
from docusign_esign.client.configuration import Configuration
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from config import Settings

log = logging.getLogger("esign.adapter")

T = TypeVar("T")

CONNECT_ENVELOPE_EVENTS = ("sent", "delivered", "completed", "declined", "voided")
CONNECT_RECIPIENT_EVENTS = ("sent", "delivered", "completed", "declined")
LOOKUP_WINDOW = timedelta(days=730)  # DocuSign needs a from_date for list queries


# ---------------------------------------------------------------- inputs
class Document(BaseModel):
    """A document to sign; ``content`` round-trips as base64 through JSON (Temporal payloads)."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    name: str = Field(min_length=1, max_length=200)
    file_extension: Literal["html", "pdf", "txt"]  # txt: a text signed byte for byte (its SHA-256 unchanged)
    content: bytes = Field(min_length=1)
    document_id: str = Field(pattern=r"^[1-9][0-9]{0,8}$")


class Signer(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=100)
    email: EmailStr
    routing_order: int = Field(ge=1, le=999)
    recipient_id: str = Field(pattern=r"^[1-9][0-9]{0,8}$")
    anchor: str = Field(min_length=1, max_length=50)  # text in the document where signHere goes

    @field_validator("name")
    @classmethod
    def _no_blank_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


# ---------------------------------------------------------------- errors
class ESignError(Exception):
    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class ESignRetryableError(ESignError):
    """Try again later: rate limits, DocuSign 5xx, timeouts, connection failures."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, status=status, error_code=error_code)
        self.retry_after = retry_after


class ESignPermanentError(ESignError):
    """Retrying the same request cannot help (bad request, unknown envelope, wrong state, TLS trust)."""


def _error_body(exc: ApiException) -> tuple[str | None, str]:
    raw = exc.body
    try:
        doc = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    code = doc.get("errorCode") or doc.get("error")
    message = doc.get("message") or doc.get("error_description") or str(exc.reason or "")
    return code, message


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None


def map_api_exception(exc: ApiException, operation: str) -> ESignError:
    """DocuSign's answer as one of our typed errors (message carries code, never request data)."""
    status = exc.status or 0
    code, message = _error_body(exc)
    text = f"DocuSign {operation} failed: HTTP {status} {code or ''} {message}".strip()
    if status == 0:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc.reason):
            return ESignPermanentError(text + " (the server certificate is not trusted: check MDCO_DOCUSIGN_CA_CERT)",
                                       status=0, error_code="TLS")
        return ESignRetryableError(text, status=0, error_code=code)
    if status in (401, 429) or status >= 500:
        # only a 429 means "wait for the rate-limit window": the reset header rides on every
        # response, and honouring it for a 500 would park the retry for up to an hour
        return ESignRetryableError(text, status=status, error_code=code,
                                   retry_after=_retry_after(exc) if status == 429 else None)
    return ESignPermanentError(text, status=status, error_code=code)


def transport_error(exc: urllib3.exceptions.HTTPError, operation: str) -> ESignError:
    """Connection-level failures: retryable, except an untrusted certificate (configuration)."""
    cause = getattr(exc, "reason", None) or exc
    if "CERTIFICATE_VERIFY_FAILED" in str(cause):
        return ESignPermanentError(f"DocuSign {operation} failed: the server certificate is not trusted "
                                   "(check MDCO_DOCUSIGN_CA_CERT)", status=0, error_code="TLS")
    return ESignRetryableError(f"DocuSign {operation} failed: {type(cause).__name__}", status=0)


# ---------------------------------------------------------------- adapter
class ESignAdapter:
    def __init__(self, settings: Settings, *, timeout_s: float = 15.0, token_lifetime_s: int = 3600):
        self.settings = settings
        self.account_id = settings.docusign_account_id
        self.timeout = (min(5.0, timeout_s), timeout_s)  # (connect, read) for urllib3
        self.token_lifetime_s = token_lifetime_s
        self._lock = threading.Lock()
        self._token_expires_at = 0.0  # epoch seconds; 0 = no token
        self._token_renew_at = 0.0
        self.token_requests = 0  # how many JWT grants this adapter made (observability, tests)
        self.api_client = self._new_api_client()
        self.envelopes = EnvelopesApi(self.api_client)

    def _new_api_client(self) -> ApiClient:
        # Configuration() is a process-wide singleton in this SDK and ApiClient builds its urllib3 pool from it,
        # so each adapter gets a private copy carrying its own CA, and its own pool built from that copy.
        config = copy.copy(Configuration())
        config.ssl_ca_cert = self.settings.resolved_docusign_ca_cert or None
        config.verify_ssl = True
        client = ApiClient(host=self.settings.resolved_docusign_base_path,
                           oauth_host_name=self.settings.resolved_docusign_oauth_host)
        client.rest_client = RESTClientObject(configuration=config)
        client.rest_client.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(total=1, read=0, redirect=0)
        return client

    def close(self) -> None:
        """Close pooled connections (the SDK keeps them alive otherwise)."""
        self.api_client.rest_client.pool_manager.clear()

    # -------------------------------------------------------- token
    def _private_key(self) -> bytes:
        path = Path(self.settings.resolved_docusign_private_key_path)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ESignPermanentError(f"DocuSign JWT private key not readable at {path}: {exc.strerror}") from exc

    def _ensure_token(self) -> None:
        with self._lock:
            if self._token_expires_at and time.time() < self._token_renew_at:
                return
            try:
                token = self.api_client.request_jwt_user_token(
                    client_id=self.settings.docusign_integration_key,
                    user_id=self.settings.docusign_user_id,
                    oauth_host_name=self.settings.resolved_docusign_oauth_host,
                    private_key_bytes=self._private_key(),
                    expires_in=self.token_lifetime_s,
                    scopes=["signature", "impersonation"],
                )
            except ApiException as exc:
                raise map_api_exception(exc, "JWT grant") from None
            except urllib3.exceptions.HTTPError as exc:
                raise transport_error(exc, "JWT grant") from None
            self.token_requests += 1
            lifetime = float(token.expires_in or 3600)
            now = time.time()
            self._token_expires_at = now + lifetime
            # renew early: 5 minutes before expiry, or at 90 % of a short lifetime
            self._token_renew_at = now + lifetime - min(300.0, lifetime * 0.1)
            log.info("DocuSign access token obtained, valid %.0f s", lifetime)

    def drop_token(self) -> None:
        with self._lock:
            self._token_expires_at = self._token_renew_at = 0.0
            self.api_client.default_headers.pop("Authorization", None)

    @property
    def token_expires_at(self) -> float:
        return self._token_expires_at

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one SDK call with a valid token; on 401 renew the token and try exactly once more."""
        for attempt in (1, 2):
            self._ensure_token()
            try:
                return fn()
            except ApiException as exc:
                if exc.status == 401 and attempt == 1:
                    log.info("DocuSign %s answered 401; renewing the token and retrying once", operation)
                    self.drop_token()
                    continue
                raise map_api_exception(exc, operation) from None
            except urllib3.exceptions.HTTPError as exc:
                raise transport_error(exc, operation) from None
        raise AssertionError("unreachable")

    # -------------------------------------------------------- operations
    def find_by_external_id(self, external_id: str) -> str | None:
        """The newest non-voided envelope carrying custom field ``external_id``, if any."""
        _check_external_id(external_id)
        since = (datetime.now(timezone.utc) - LOOKUP_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = self._call("envelope lookup", lambda: self.envelopes.list_status_changes(
            self.account_id, from_date=since, custom_field=f"external_id={external_id}",
            _request_timeout=self.timeout))
        candidates = [e for e in (result.envelopes or []) if (e.status or "").lower() != "voided"]
        if not candidates:
            return None
        candidates.sort(key=lambda e: e.created_date_time or "")
        return candidates[-1].envelope_id

    def send_envelope(self, external_id: str, email_subject: str, documents: list[Document],
                      signers: list[Signer], connect_url: str, *, look_up_first: bool = True,
                      custom_fields: dict[str, str] | None = None) -> str:
        """Create and send the envelope for ``external_id`` unless one already exists; its id.

        ``look_up_first=False`` saves the lookup call on a first attempt, which cannot have created
        anything yet; every retry must look up first so it never creates a second envelope.
        ``custom_fields``: more text custom fields (e.g. the SHA-256s of the documents it carries)."""
        definition = self._definition(external_id, email_subject, documents, signers, connect_url, custom_fields)
        existing = self.find_by_external_id(external_id) if look_up_first else None
        if existing:
            log.info("envelope for this external id already exists: %s", existing)
            return existing
        summary = self._call("envelope create", lambda: self.envelopes.create_envelope(
            self.account_id, envelope_definition=definition, _request_timeout=self.timeout))
        log.info("envelope %s sent", summary.envelope_id)
        return summary.envelope_id

    def get_status(self, envelope_id: str) -> str:
        _check_id(envelope_id)
        env = self._call("envelope get", lambda: self.envelopes.get_envelope(
            self.account_id, envelope_id, _request_timeout=self.timeout))
        return (env.status or "").lower()

    def void(self, envelope_id: str, reason: str) -> None:
        """Void the envelope; voiding an already voided envelope is a no-op."""
        _check_id(envelope_id)
        if not reason or not reason.strip() or len(reason) > 200:
            raise ValueError("void reason: must be 1-200 characters")
        try:
            self._call("envelope void", lambda: self.envelopes.update(
                self.account_id, envelope_id, envelope=ds.Envelope(status="voided", voided_reason=reason),
                _request_timeout=self.timeout))
        except ESignPermanentError as exc:
            if exc.error_code == "ENVELOPE_CANNOT_VOID_INVALID_STATE" and self.get_status(envelope_id) == "voided":
                return
            raise

    def download_combined(self, envelope_id: str) -> bytes:
        """All documents plus the certificate of completion, as one PDF."""
        _check_id(envelope_id)
        data = self._call("combined download", lambda: self.envelopes.get_document(
            self.account_id, "combined", envelope_id, _request_timeout=self.timeout))
        if isinstance(data, str):  # older SDKs return a temp-file path for binary responses
            return Path(data).read_bytes()
        return bytes(data)

    # -------------------------------------------------------- building the request
    def _definition(self, external_id: str, email_subject: str, documents: list[Document],
                    signers: list[Signer], connect_url: str,
                    custom_fields: dict[str, str] | None = None) -> ds.EnvelopeDefinition:
        _check_external_id(external_id)
        extra = dict(custom_fields or {})
        for name, value in extra.items():
            if name == "external_id" or not name.strip() or len(name) > 100 or len(value) > 100:
                raise ValueError(f"custom_fields[{name!r}]: a name other than external_id, name and value "
                                 "at most 100 characters")
        if not email_subject or not email_subject.strip() or len(email_subject) > 100:
            raise ValueError("email_subject: must be 1-100 characters")
        if not documents:
            raise ValueError("documents: at least one document is required")
        if not signers:
            raise ValueError("signers: at least one signer is required")
        documents = [d if isinstance(d, Document) else Document.model_validate(d) for d in documents]
        signers = [s if isinstance(s, Signer) else Signer.model_validate(s) for s in signers]
        for field, values in (("documents[].document_id", [d.document_id for d in documents]),
                              ("signers[].recipient_id", [s.recipient_id for s in signers])):
            if len(set(values)) != len(values):
                raise ValueError(f"{field}: values must be unique")
        if not connect_url.startswith(("http://", "https://")):
            raise ValueError("connect_url: must be an http(s) URL")
        return ds.EnvelopeDefinition(
            email_subject=email_subject,
            status="sent",
            documents=[ds.Document(document_base64=base64.b64encode(d.content).decode("ascii"), name=d.name,
                                   file_extension=d.file_extension, document_id=d.document_id) for d in documents],
            recipients=ds.Recipients(signers=[self._signer(s) for s in signers]),
            custom_fields=ds.CustomFields(text_custom_fields=[
                ds.TextCustomField(name=name, value=value, show="false", required="false")
                for name, value in {"external_id": external_id, **extra}.items()]),
            event_notification=ds.EventNotification(
                url=connect_url,
                delivery_mode="SIM",
                require_acknowledgment="true",
                include_hmac="true",
                logging_enabled="true",
                include_documents="false",
                include_envelope_void_reason="true",
                events=[f"envelope-{e}" for e in CONNECT_ENVELOPE_EVENTS]
                + [f"recipient-{e}" for e in CONNECT_RECIPIENT_EVENTS],
                event_data=ds.ConnectEventData(version="restv2.1", format="json",
                                               include_data=["custom_fields", "recipients"]),
            ),
        )

    @staticmethod
    def _signer(s: Signer) -> ds.Signer:
        return ds.Signer(
            email=s.email, name=s.name, recipient_id=s.recipient_id, routing_order=str(s.routing_order),
            tabs=ds.Tabs(
                sign_here_tabs=[ds.SignHere(anchor_string=s.anchor, anchor_units="pixels", anchor_x_offset="0",
                                            anchor_y_offset="-10", anchor_ignore_if_not_present="false")],
                date_signed_tabs=[ds.DateSigned(anchor_string=s.anchor, anchor_units="pixels",
                                                anchor_x_offset="220", anchor_y_offset="-10")],
            ),
        )


def _check_external_id(external_id: str) -> None:
    if not isinstance(external_id, str) or not external_id.strip():
        raise ValueError("external_id: must be a non-empty string")
    if len(external_id) > 100:
        raise ValueError("external_id: must be at most 100 characters (DocuSign custom field limit)")


def _check_id(envelope_id: str) -> None:
    if not isinstance(envelope_id, str) or not envelope_id.strip() or "/" in envelope_id:
        raise ValueError("envelope_id: must be a non-empty id without '/'")
