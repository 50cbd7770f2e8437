"""Answer links: ``<api>/a/<token>`` in every e-mail that asks a physician or a pharmacy to act.

A token is signed with itsdangerous (HMAC-SHA512 over a compact JSON payload) and binds one onboarding,
one party and one action, with the expiry of the request it answers. The worker mints them (its
activities write the e-mails), the API verifies them, so both read the same secrets:
``MDCO_LINK_SECRETS`` (comma-separated, the first signs, all verify: rotation) or, in the embedded
stack, a secret generated on first use under ``var/auth/links.key`` (mode 0600).
No FastAPI here: the worker imports this module.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from itsdangerous import BadSignature, URLSafeSerializer

from api.auth import secret_file

SALT = "mdco-answer-link"
ACTIONS = ("offer", "protocols", "pharmacy", "review", "event")
#: actions about one record of the clinic's oversight: the link also names it (``ref``)
REF_ACTIONS = ("review", "event")
#: requests without a deadline of their own (protocol approval, prescriber account) link this long
OPEN_REQUEST_TTL = timedelta(days=30)


class LinkInvalid(Exception):
    """Tampered with, or not one of ours (HTTP 403)."""


@dataclass(frozen=True)
class Link:
    workflow_id: str  # onboarding-<clinic_key>, or oversight-<clinic_key> for a review or an event
    party: str  # physician:<npi> | pharmacy:<pharmacy_id>
    action: str  # offer | protocols | pharmacy | review | event
    expires_at: datetime
    token: str = ""
    ref: str = ""  # the chart review's or the adverse event's id (review, event)

    @property
    def party_id(self) -> str:
        return self.party.split(":", 1)[1]

    @property
    def expired(self) -> bool:
        return datetime.now(timezone.utc) >= self.expires_at

    @property
    def idempotency_key(self) -> str:
        """The same for every submit of this link, so a double submit acts once."""
        return "link-" + hashlib.sha256(self.token.encode()).hexdigest()[:48]


def link_secrets(settings) -> list[str]:
    configured = [s.strip() for s in settings.link_secrets.split(",") if s.strip()]
    if configured:
        return configured
    raw = secret_file(settings.auth_dir / "links.key",
                      lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)))
    return [raw.decode().strip()]


def _serializer(settings) -> URLSafeSerializer:
    # itsdangerous signs with the LAST key of a list and verifies with all of them
    return URLSafeSerializer(list(reversed(link_secrets(settings))), salt=SALT)


def mint(settings, workflow_id: str, party: str, action: str, expires_at: datetime, ref: str = "") -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    if (action in REF_ACTIONS) != bool(ref):
        raise ValueError(f"a {action} link {'needs' if action in REF_ACTIONS else 'takes no'} ref")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=timezone.utc)
    payload = {"w": workflow_id, "p": party, "a": action, "e": int(expires_at.timestamp())}
    if ref:
        payload["r"] = ref
    return _serializer(settings).dumps(payload)


def url(settings, workflow_id: str, party: str, action: str, expires_at: datetime, ref: str = "") -> str:
    return f"{settings.api_base_url}/a/{mint(settings, workflow_id, party, action, expires_at, ref)}"


def review_url(settings, clinic_key: str, review_id: str, npi: str, due_at: datetime) -> str:
    """The director's link to a chart review: open until the review escalates to ops (policy days past due)."""
    from domain.codes import oversight_id_for
    from domain.renewals import policy

    expires = due_at + timedelta(days=policy().chart_review.escalate_to_ops_after_days)
    return url(settings, oversight_id_for(clinic_key), f"physician:{npi}", "review", expires, review_id)


def event_url(settings, clinic_key: str, event_id: str, npi: str, ack_due_at: datetime) -> str:
    """The director's link to acknowledge an adverse event: open until its deadline, when ops take it over."""
    from domain.codes import oversight_id_for

    return url(settings, oversight_id_for(clinic_key), f"physician:{npi}", "event", ack_due_at, event_id)


def read(settings, token: str) -> Link:
    """The link's binding; ``LinkInvalid`` when the signature does not hold (expiry is the caller's)."""
    if not token or len(token) > 1000:
        raise LinkInvalid("not a valid link")
    try:
        payload = _serializer(settings).loads(token)
    except BadSignature:
        raise LinkInvalid("this link has been altered or is not ours") from None
    try:
        link = Link(workflow_id=str(payload["w"]), party=str(payload["p"]), action=str(payload["a"]),
                    expires_at=datetime.fromtimestamp(int(payload["e"]), timezone.utc), token=token,
                    ref=str(payload.get("r", "")))
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("not a valid link") from None
    if link.action not in ACTIONS or ":" not in link.party or (link.action in REF_ACTIONS) != bool(link.ref):
        raise LinkInvalid("not a valid link")
    return link
