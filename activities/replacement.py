"""Starting a replacement placement from the daily sweep: a lapse or an OIG exclusion suspended a
clinic's state, so a new director is sought at once (the same code `mdco replace` runs for ops).
A replacement already under way for the clinic is returned, never doubled."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client

from activities.onboarding import OnboardingActivities

ACTOR = "compliance-sweep"


class ReplacementRequest(BaseModel):
    clinic_key: str
    reason: str


class ReplacementStarted(BaseModel):
    workflow_id: str = ""
    status: str  # started | already_running | refused
    reason: str = ""


class ReplacementActivities:
    def __init__(self, onboarding: OnboardingActivities, client: Client):
        self.onboarding, self.client = onboarding, client

    def all(self) -> list:
        return [self.start_replacement]

    @activity.defn(name="start_replacement")
    async def start_replacement(self, req: ReplacementRequest) -> ReplacementStarted:
        from api import service

        try:
            result = await service.start_replacement(self.client, self.onboarding.settings, self.onboarding.engine,
                                                     req.clinic_key, req.reason, actor=ACTOR)
        except (service.Rejected, service.NotFound) as exc:  # offboarded meanwhile, or not live: nothing to do
            activity.logger.info("no replacement for %s: %s", req.clinic_key, exc)
            return ReplacementStarted(status="refused", reason=str(exc))
        activity.logger.info("replacement for %s: %s %s", req.clinic_key, result.status, result.workflow_id)
        return ReplacementStarted(workflow_id=result.workflow_id, status=result.status)
