"""What a reconciliation of capacity reservations found (the activity's answer, the workflow's result)."""

from __future__ import annotations

from pydantic import BaseModel, Field

#: Workflow ids the reconciler may act on: onboardings only.
ONBOARDING_PREFIX = "onboarding-"


class ReconcileSummary(BaseModel):
    checked: int = 0  # open reservations looked at
    released: list[str] = Field(default_factory=list)  # workflow ids whose leaked reservation was released
    kept: int = 0  # left alone: young, launched, workflow still running, or not an onboarding
