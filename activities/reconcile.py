"""Reconciliation of capacity reservations that no workflow will ever release.

An onboarding TERMINATED from the Temporal UI/CLI (or timed out, or failed in a way that skipped its
cleanup) leaves its physician reservation, open offers and unsigned DocuSign envelopes behind. The
``reconcile_reservations`` activity (run on a Temporal Schedule, see mdco_temporal/schedules.py, or
now with ``mdco reconcile``) finds them and releases them exactly as a cancel does.

A reservation is released only when all hold: its workflow id starts with ``onboarding-``; it is older
than a minute (a workflow may be mid-start); its workflow is closed (``describe`` says not RUNNING,
or the id is unknown to Temporal); and its onboarding is not ``launched`` (a launched clinic's
reservation is its live capacity). The workflow is described *before* the onboarding record is read,
so a workflow launching meanwhile is seen as running or as launched, never released.

Logs carry workflow ids only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.onboarding import OnboardingActivities
from domain.codes import Stage
from domain.reconcile import ONBOARDING_PREFIX, ReconcileSummary
from store import onboardings, roster
from store.tables import now_utc

log = activity.logger

#: Younger reservations are left alone: their workflow may not be visible yet.
MIN_AGE = timedelta(minutes=1)
#: How long one ``describe`` may take before the run fails (and its activity retries).
DESCRIBE_TIMEOUT_S = 30.0
ACTOR = "reconciler"


class ReconcileActivities:
    """Needs the onboarding activities (engine, DocuSign adapter, the shared cleanup) and a client.

    The activity is synchronous like every other DB/DocuSign activity (it runs on the worker's
    thread pool); the client's ``describe`` calls go back to the event loop the client lives on,
    which is the loop running when this object is built (the worker's, or the CLI's).
    """

    def __init__(self, onboarding: OnboardingActivities, client: Client,
                 loop: asyncio.AbstractEventLoop | None = None):
        self.onboarding = onboarding
        self.engine = onboarding.engine
        self.client = client
        self._loop = loop or asyncio.get_running_loop()

    def all(self) -> list:
        return [self.reconcile_reservations]

    @activity.defn(name="reconcile_reservations")
    def reconcile_reservations(self) -> ReconcileSummary:
        return self.reconcile()

    def reconcile(self, now: datetime | None = None) -> ReconcileSummary:
        """One pass over every open reservation; idempotent. Call from a thread other than the loop's."""
        now = now or now_utc()
        summary = ReconcileSummary()
        for workflow_id, _npi, reserved_at in roster.open_reservations(self.engine):
            summary.checked += 1
            if activity.in_activity():
                activity.heartbeat(workflow_id)
            status = None
            if workflow_id.startswith(ONBOARDING_PREFIX) and reserved_at <= now - MIN_AGE:
                status = self._closed_status(workflow_id)
            record = onboardings.get_onboarding(self.engine, workflow_id) if status else None
            if status is None or (record is not None and record["stage"] == Stage.launched.value):
                summary.kept += 1
                continue
            reason = f"workflow {status} without cleanup (reconciled)"
            clinic_key = record["clinic_key"] if record else None
            self.onboarding._release_everything(  # a replacement's clinic stays live under its director
                workflow_id, clinic_key, reason, now, ACTOR,
                keep_clinic=clinic_key is not None and self._clinic_is_live(clinic_key))
            withdrawn = onboardings.withdraw_open_offers(self.engine, workflow_id, reason, now)
            summary.released.append(workflow_id)
            log.info("%s: reservation released (%s, %d offers withdrawn)", workflow_id, status, withdrawn)
        log.info("reconciled %d open reservations: %d released, %d kept", summary.checked,
                 len(summary.released), summary.kept)
        return summary

    def _clinic_is_live(self, clinic_key: str) -> bool:
        """A live clinic (another placement launched it) is never cancelled by reconciling a
        replacement placement of it; only a clinic still pending is."""
        return (onboardings.get_clinic(self.engine, clinic_key) or {}).get("status") == "active"

    def _closed_status(self, workflow_id: str) -> str | None:
        """How the workflow ended ('terminated', 'not found', ...), or None while it runs."""
        try:
            desc = asyncio.run_coroutine_threadsafe(
                self.client.get_workflow_handle(workflow_id).describe(), self._loop).result(DESCRIBE_TIMEOUT_S)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return "not found"
            raise
        if desc.status in (None, WorkflowExecutionStatus.RUNNING):
            return None
        return desc.status.name.lower().replace("_", " ")


def reconcile_registrations(onboarding: OnboardingActivities, client: Client) -> tuple[list, list]:
    """What the worker registers for the reconciliation: ``(workflows, activities)``. Call it from
    the worker's event loop (``build_worker`` runs there)."""
    from workflows.reconcile import ReservationReconciliationWorkflow

    return [ReservationReconciliationWorkflow], ReconcileActivities(onboarding, client).all()
