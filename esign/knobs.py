"""Behaviour knobs of the local e-sign server that DocuSign has and our Settings do not:
token lifetime, rate limits, Connect retry policy and fault injection (``MDCO_ESIGN_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: knobs that ``POST /admin/faults`` may change at run time
RUNTIME_KNOBS = (
    "error_rate",
    "latency_ms",
    "duplicate_deliveries",
    "out_of_order",
    "wrong_signature",
    "burst_limit",
    "burst_window_s",
    "token_ttl_s",
    "fault_seed",
    "reject_envelopes",
)


class ServerKnobs(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MDCO_ESIGN_", extra="ignore", validate_assignment=True)

    token_ttl_s: int = Field(3600, ge=1, description="expires_in of issued access tokens")
    rate_limit_per_hour: int = Field(3000, ge=1, description="DocuSign's hourly API limit per account")
    burst_limit: int = Field(0, ge=0, description="calls per burst window before 429; 0 = off")
    burst_window_s: int = Field(30, ge=1)
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="fraction of REST calls answered 500/429")
    latency_ms: int = Field(0, ge=0, le=60_000)
    fault_seed: int | None = None  # set: injected faults follow a reproducible sequence
    duplicate_deliveries: bool = False  # every Connect payload is delivered twice
    out_of_order: bool = False  # non-terminal events are held back so terminal ones arrive first
    wrong_signature: bool = False  # Connect HMACs are computed with a key nobody configured
    reject_envelopes: bool = False  # envelope creation answers a permanent 400 (account lacks permission)
    connect_max_tries: int = Field(5, ge=1, le=20)
    connect_backoff_s: float = Field(0.5, ge=0.0, description="first retry delay; doubles each try")
    connect_timeout_s: float = Field(10.0, gt=0)

    def faults(self) -> dict:
        return {name: getattr(self, name) for name in RUNTIME_KNOBS}
