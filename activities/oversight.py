"""Activities of the post-launch oversight loop."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from domain.codes import oversight_id_for
from domain.messages import ChartReviewRequest, Notice
from activities.onboarding import OnboardingActivities
from store import audit


class OversightActivities:
    def __init__(self, onboarding: OnboardingActivities):
        self._onb = onboarding
        self.engine: Engine = onboarding.engine

    def all(self) -> list:
        return [self.open_chart_review]

    @activity.defn(name="open_chart_review")
    def open_chart_review(self, req: ChartReviewRequest) -> None:
        """Open one chart-review cycle: audit it and ask the medical director for the sample."""
        wf = oversight_id_for(req.clinic_key)
        audit.audit(self.engine, wf, "oversight", "chart_review_opened",
                   detail={"cycle": req.cycle, "sample_percent": req.sample_percent, "due": req.due_at.isoformat()},
                   idem_key=f"{wf}:chart-review:{req.cycle}")
        self._onb._mail(Notice(
            workflow_id=wf, key=f"chart-review-{req.cycle}", to_role="physician", to_id=req.physician_npi,
            subject=f"Chart review {req.cycle} for clinic {req.clinic_key}",
            body=f"Please review {req.sample_percent}% of this period's charts by {req.due_at.date().isoformat()}."))
