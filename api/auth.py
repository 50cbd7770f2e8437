"""Who may call the API: bearer JWTs with roles, checked on every route but three public ones.

- Production verifies any OIDC provider's access tokens (``MDCO_AUTH_ISSUER``, ``MDCO_AUTH_AUDIENCE``,
  ``MDCO_AUTH_JWKS_URL``) with PyJWT's ``PyJWKClient`` (keys cached; an unknown ``kid`` refetches the
  key set, so a provider's key rotation needs no restart).
- The embedded stack runs a local issuer: an ES256 key generated on first use under
  ``var/auth/issuer.pem`` (mode 0600); ``mdco token issue`` signs with it.
- Roles: ``sales`` may start and read onboardings; ``clinic`` may report its own chart counts (the
  token's subject is the clinic key); ``ops`` may do everything. ``GET /healthz``,
  ``POST /webhooks/docusign`` (HMAC) and the answer links under ``/a/`` need no token.
There is no switch that turns this off. The token's subject becomes the actor of the decisions made
with it (``ops:<sub>``), see :func:`current_actor`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.routing import Match

from api.errors import send_problem

LOCAL_ISSUER = "mdco-local"
DEFAULT_AUDIENCE = "mdco-api"
LOCAL_ALGORITHM = "ES256"
ROLES = ("sales", "ops", "clinic")
#: what an OIDC provider may sign with (never "none", never an HMAC algorithm with a public key)
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_S = 30
DEFAULT_TTL = timedelta(hours=8)
MAX_TTL = timedelta(days=30)

PUBLIC_ROUTES = {("GET", "/healthz"), ("POST", "/webhooks/docusign")}
PUBLIC_PREFIXES = ("/a/",)
#: what the sales role may do; everything else needs ops
SALES_ROUTES = {("POST", "/onboardings"), ("GET", "/onboardings"), ("GET", "/onboardings/{workflow_id}")}
#: what the clinic role may do, for its own clinic only (the route checks :func:`own_clinic_actor`)
CLINIC_ROUTES = {("POST", "/clinics/{clinic_key}/chart-counts")}


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]

    @property
    def role(self) -> str:
        return next((r for r in ("ops", "sales", "clinic") if r in self.roles), "sales")

    @property
    def actor(self) -> str:
        """How the audit trail names this caller, e.g. ``ops:alice``."""
        return f"{self.role}:{self.subject}"


_principal: ContextVar[Principal | None] = ContextVar("mdco_principal", default=None)


def current_principal() -> Principal | None:
    return _principal.get()


def current_actor() -> str:
    """The actor of a decision made in this request (the token's subject); routes that act need one."""
    principal = _principal.get()
    if principal is None:  # cannot happen behind AuthMiddleware; refuse rather than record "unknown"
        raise AuthError(401, "no authenticated caller")
    return principal.actor


def own_clinic_actor(clinic_key: str) -> str:
    """The actor of a clinic route (:data:`CLINIC_ROUTES`): ops act for any clinic; a clinic token only for
    the clinic its subject names (``clinic:<key>``), else 403."""
    principal = _principal.get()
    if principal is None:
        raise AuthError(401, "no authenticated caller")
    if "ops" in principal.roles:
        return principal.actor
    if "clinic" not in principal.roles or principal.subject != clinic_key:
        raise AuthError(403, f"a clinic token acts for its own clinic only (its subject), not {clinic_key}")
    return f"clinic:{clinic_key}"


# ---------------------------------------------------------------- files only their owner reads
def secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of ``path``, created with ``make()`` (mode 0600) when missing. Safe when several
    processes (API, worker, CLI) race to create it: the first link wins, the others read it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(make())
        try:
            os.link(tmp, path)  # atomic and never replaces: a concurrent creator's key stays
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def local_key_path(settings) -> Path:
    return settings.auth_dir / "issuer.pem"


_keys_lock = threading.Lock()
_local_keys: dict[Path, ec.EllipticCurvePrivateKey] = {}


def local_signing_key(settings) -> ec.EllipticCurvePrivateKey:
    """The local issuer's key, generated on first use (``mdco up``, the API, ``mdco token issue``)."""
    path = local_key_path(settings).resolve()
    with _keys_lock:
        key = _local_keys.get(path)
        if key is None:
            pem = secret_file(path, lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: not an EC private key")
            _local_keys[path] = key
        return key


def uses_local_issuer(settings) -> bool:
    return not settings.auth_jwks_url


def audience(settings) -> str:
    return settings.auth_audience or DEFAULT_AUDIENCE


# ---------------------------------------------------------------- issuing (embedded stack only)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``8h``, ``7d`` or plain seconds."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 30m, 8h, 7d)")
    value, unit = int(m.group(1)), m.group(2) or "s"
    ttl = timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise ValueError(f"a token lives more than 0 s and at most {MAX_TTL.days} days, not {text!r}")
    return ttl


def issue_token(settings, role: str, subject: str = "", ttl: timedelta = DEFAULT_TTL) -> str:
    """A bearer token signed by the local issuer (refused when an OIDC provider is configured)."""
    if not uses_local_issuer(settings):
        raise ValueError("MDCO_AUTH_JWKS_URL is set: tokens come from the OIDC provider, not the local issuer")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    subject = subject or f"{role}-{os.environ.get('USER', 'local')}"
    if not re.fullmatch(r"[A-Za-z0-9._@+-]{1,100}", subject):
        raise ValueError("subject: 1-100 letters, digits or . _ @ + -")
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "aud": audience(settings), "sub": subject, "roles": [role],
              "iat": now, "nbf": now, "exp": now + int(ttl.total_seconds()), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, local_signing_key(settings), algorithm=LOCAL_ALGORITHM)


def auth_headers(settings, role: str = "ops", subject: str = "") -> dict[str, str]:
    """``Authorization`` header with a fresh local token: for the demo, benches and tests."""
    return {"Authorization": f"Bearer {issue_token(settings, role, subject or f'{role}-local')}"}


# ---------------------------------------------------------------- verifying
def _claim(claims: dict, path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def roles_from(claims: dict, path: str) -> frozenset[str]:
    raw = _claim(claims, path)
    if isinstance(raw, str):
        raw = raw.split()
    if not isinstance(raw, Iterable):
        return frozenset()
    return frozenset(r for r in raw if isinstance(r, str) and r in ROLES)


class Verifier:
    """Checks a bearer token's signature, issuer, audience, expiry and subject; returns who it is."""

    #: the key set is cached this long; an unknown ``kid`` refetches it, at most once per cooldown
    JWKS_LIFESPAN_S = 300
    JWKS_REFETCH_COOLDOWN_S = 30

    def __init__(self, settings):
        self.settings = settings
        self._jwks = None
        if not uses_local_issuer(settings):
            if not settings.auth_issuer:
                raise ValueError("MDCO_AUTH_JWKS_URL needs MDCO_AUTH_ISSUER")
            self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, max_cached_keys=32,
                                         cache_jwk_set=True, lifespan=self.JWKS_LIFESPAN_S, timeout=10,
                                         cooldown_duration=self.JWKS_REFETCH_COOLDOWN_S)

    def verify(self, token: str) -> Principal:
        """Blocking (a JWKS fetch may happen): call it from a thread in async code."""
        try:
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token)
                algorithms = [key.algorithm_name] if key.algorithm_name in OIDC_ALGORITHMS else OIDC_ALGORITHMS
                issuer, verify_key = self.settings.auth_issuer, key.key
            else:
                algorithms, issuer = [LOCAL_ALGORITHM], LOCAL_ISSUER
                verify_key = local_signing_key(self.settings).public_key()
            claims = jwt.decode(token, verify_key, algorithms=algorithms, audience=audience(self.settings),
                                issuer=issuer, leeway=LEEWAY_S, options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "the token has expired") from None
        except jwt.PyJWKClientError as exc:
            raise AuthError(401, f"the token's signing key is unknown ({type(exc).__name__})") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError(401, "invalid token: empty subject")
        return Principal(subject=subject.strip()[:100], roles=roles_from(claims, self.settings.auth_roles_claim))


# ---------------------------------------------------------------- policy
def is_public(method: str, path: str, template: str | None) -> bool:
    if path.startswith(PUBLIC_PREFIXES) or path == PUBLIC_PREFIXES[0].rstrip("/"):
        return True
    return (method, template) in PUBLIC_ROUTES


def required_role(method: str, template: str | None) -> str:
    route = (method, template)
    return "sales" if route in SALES_ROUTES else "clinic" if route in CLINIC_ROUTES else "ops"


def allowed(principal: Principal, role: str) -> bool:
    return "ops" in principal.roles or role in principal.roles


def route_template(app, scope: dict) -> str | None:
    """The path template of the route the request matches (None: no route, a 404)."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", None)
    return None


class AuthMiddleware:
    """ASGI middleware in front of every route: public ones pass, the rest need a valid bearer token
    with the route's role (401 / 403 otherwise). CORS preflights pass (they carry no credentials)."""

    def __init__(self, app: Callable[..., Awaitable[Any]], fastapi_app, verifier: Verifier):
        self.app = app
        self.fastapi_app = fastapi_app
        self.verifier = verifier

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if method == "OPTIONS" and "access-control-request-method" in headers:
            await self.app(scope, receive, send)
            return
        template = route_template(self.fastapi_app, {**scope, "method": method})
        if is_public(method, scope["path"], template):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authenticate(headers.get("authorization", ""))
            role = required_role(method, template)
            if not principal.roles:
                raise AuthError(403, f"the token carries no mdco role ({', '.join(ROLES)})")
            if not allowed(principal, role):
                raise AuthError(403, f"this needs the {role} role")
        except AuthError as exc:
            await _refuse(send, exc)
            return
        token = _principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            _principal.reset(token)

    async def _authenticate(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "an Authorization: Bearer <token> header is required")
        return await asyncio.to_thread(self.verifier.verify, token.strip())


async def _refuse(send: Callable, exc: AuthError) -> None:
    error = "invalid_token" if exc.status == 401 else "insufficient_scope"
    await send_problem(send, exc.status, str(exc),
                       headers=[(b"www-authenticate", f'Bearer realm="mdco", error="{error}"'.encode())])


def install(app, settings) -> Verifier:
    """Put the check in front of every route of ``app`` (call it after the routes are added)."""
    verifier = Verifier(settings)
    app.add_middleware(AuthMiddleware, fastapi_app=app, verifier=verifier)
    app.state.verifier = verifier
    return verifier


def document(schema: dict) -> dict:
    """The OpenAPI document with the bearer scheme and each operation's role, 401 and 403."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "OIDC access token (or `mdco token issue` in the embedded stack); roles: sales, ops, "
                       "clinic (its subject the clinic key)"}
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            if not isinstance(op, dict) or method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            if is_public(method.upper(), path, path):
                op["security"] = []
                continue
            role = required_role(method.upper(), path)
            op["security"] = [{"bearer": []}]
            op["description"] = (op.get("description", "") + f"\n\nRole: `{role}`"
                                 + ("" if role == "ops" else " (or `ops`)")).strip()
            responses = op.setdefault("responses", {})
            responses.setdefault("401", {"description": "no valid bearer token"})
            responses.setdefault("403", {"description": f"the token lacks the {role} role"})
    return schema
