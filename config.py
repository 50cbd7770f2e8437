"""Runtime configuration: every knob is an ``MDCO_`` environment variable.

Defaults run the embedded stack on 127.0.0.1 with data under ``var/``; production points the same
names at real Temporal, Postgres, DocuSign and SMTP.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "mdco-onboarding"


class Settings(BaseSettings):
    """All settings, read from ``MDCO_*`` variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="MDCO_", extra="ignore")

    var_dir: Path = Path("var")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    temporal_ui: bool = True  # embedded stack only: MDCO_TEMPORAL_UI=0 starts the dev server headless
    # embedded stack only: the dev server's SQLite file in WAL mode with synchronous=normal (the CLI's default is a
    # rollback journal that syncs every commit several times); WAL stays durable when a process is killed, and
    # loses at most the last commits on a power cut. Empty: the CLI's defaults.
    temporal_sqlite_pragmas: str = "journal_mode=wal,synchronous=normal"
    task_queue: str = TASK_QUEUE

    database_url: str = ""  # empty -> sqlite under var_dir

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = ""  # links in e-mails; empty -> http://api_host:api_port

    esign_host: str = "127.0.0.1"
    esign_port: int = 8085
    docusign_account_id: str = "00000000-0000-4000-8000-00000000acc1"
    docusign_integration_key: str = "mdco-local-integration-key"
    docusign_user_id: str = "00000000-0000-4000-8000-0000000000u1"
    docusign_private_key_path: str = ""  # empty -> var/esign/jwt_private.pem (generated)
    docusign_base_path: str = ""  # empty -> https://esign_host:esign_port/restapi
    docusign_oauth_host: str = ""  # empty -> esign_host:esign_port
    docusign_ca_cert: str = ""  # empty -> var/esign/ca.pem (local e-sign server's CA)
    docusign_hmac_keys: str = "mdco-local-connect-key"
    docusign_connect_url: str = ""  # empty -> api base + /webhooks/docusign
    esign_always_look_up: bool = False  # True: look up external_id even on a first attempt (after a reset)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    mail_from: str = "onboarding@medicaldirector.example"
    ops_email: str = "ops@medicaldirector.example"

    # API access (api/auth.py): production verifies an OIDC provider's tokens; with no JWKS URL the
    # embedded stack's local issuer (a key generated under var/auth/, ``mdco token issue``) is used.
    auth_issuer: str = ""  # OIDC issuer (iss); empty -> the local issuer
    auth_audience: str = ""  # expected aud; empty -> "mdco-api"
    auth_jwks_url: str = ""  # the provider's JWKS; keys cached and refetched on an unknown kid
    auth_roles_claim: str = "roles"  # dotted path to the roles (list or string), e.g. realm_access.roles
    link_secrets: str = ""  # answer links (e-mails -> /a/<token>): comma-separated, first signs; empty -> var/auth
    # rate limits (api/ratelimit.py, ``limits`` notation, ';' between several): answer pages per link and per
    # client address, the token-protected API per token subject; storage: async+redis://... shares replicas' counts
    rate_limit_link: str = "30/minute"
    rate_limit_client: str = "300/minute"
    rate_limit_subject: str = "600/minute"
    rate_limit_storage: str = "async+memory://"
    # the medical director's share of the monthly retainer shown on offers: empty -> the pricing data's
    # (domain/data/pricing.yaml physician_share_percent); set to override it for a deployment
    physician_share_percent: Optional[int] = Field(default=None, ge=0, le=100)

    payload_keys: str = ""  # keyid:base64(32 bytes),... (first key encrypts); empty -> a key under var/auth (0600)
    ui_origins: str = ""  # Temporal UI origins allowed to call /codec; empty -> the embedded UI's
    codec_port: int = 8234  # embedded stack: the UI's loopback-only codec listener (127.0.0.1 only)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464  # the worker's /metrics (SDK + mdco_*) and /healthz
    worker_sdk_metrics_port: int = 0  # the SDK's own exporter, loopback only; 0 -> a free port at start-up
    worker_shutdown_grace_s: float = 30.0  # on SIGTERM: stop polling, let running activities finish this long
    # worker tuning (worker.worker_tuning; figures in BENCHMARKS.md): workflows kept in memory between tasks
    # (an evicted one is replayed from its history on its next task), concurrent tasks, pollers per kind
    worker_max_cached_workflows: int = 150
    worker_max_concurrent_workflow_tasks: int = 100
    worker_max_concurrent_activities: int = 16
    worker_max_concurrent_local_activities: int = 16  # the short writes answers wait on (own threads)
    worker_workflow_task_pollers: int = 5
    worker_activity_task_pollers: int = 5
    # True: the pollers per kind scale with the server's backlog feedback (Temporal server >= 1.28), from 5
    # up to the two counts above; False: exactly those counts
    worker_pollers_autoscale: bool = False
    worker_sandbox_passthrough_all: bool = False  # True: the sandbox re-imports no module per workflow run
    log_format: str = "json"  # "json" (one object per line) | "text" (for a person at a terminal)
    log_level: str = "INFO"

    timing_profile: str = "production"  # "demo" compresses every timer (hours become seconds)
    offer_fanout: int = 3

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'mdco.db').resolve()}"

    @property
    def api_base_url(self) -> str:
        return self.public_base_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def esign_dir(self) -> Path:
        return self.var_dir / "esign"

    @property
    def resolved_docusign_base_path(self) -> str:
        return self.docusign_base_path or f"https://{self.esign_host}:{self.esign_port}/restapi"

    @property
    def resolved_docusign_oauth_host(self) -> str:
        return self.docusign_oauth_host or f"{self.esign_host}:{self.esign_port}"

    @property
    def resolved_docusign_ca_cert(self) -> str:
        return self.docusign_ca_cert or str(self.esign_dir / "ca.pem")

    @property
    def resolved_docusign_private_key_path(self) -> str:
        return self.docusign_private_key_path or str(self.esign_dir / "jwt_private.pem")

    @property
    def resolved_connect_url(self) -> str:
        return self.docusign_connect_url or f"{self.api_base_url}/webhooks/docusign"

    @property
    def hmac_keys(self) -> list[str]:
        return [k.strip() for k in self.docusign_hmac_keys.split(",") if k.strip()]

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    @property
    def documents_dir(self) -> Path:
        return self.var_dir / "documents"

    @property
    def auth_dir(self) -> Path:
        return self.var_dir / "auth"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()
