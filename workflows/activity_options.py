"""Timeouts and retries per activity, sized to what each one does.

Why per activity: a database write that takes more than seconds is a defect, a DocuSign call may wait
out a rate limit, and an activity run from an update handler must answer while the caller waits
(the API gives an update 30 s). Retries end (``maximum_attempts`` / ``schedule_to_close``) wherever an
endless retry would hide a defect; the workflow then moves to ``blocked`` and ops decide. Cleanup on
the way out is the exception: it must happen, so it retries until it does.

Changing these values does not change a workflow's command sequence (replay-safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

NON_RETRYABLE = ["InvalidInput", "ESignPermanent", "Rejected"]


@dataclass(frozen=True)
class ActivityOptions:
    start_to_close: timedelta
    schedule_to_close: timedelta | None
    maximum_attempts: int = 0  # 0: bounded by schedule_to_close only
    heartbeat: timedelta | None = None
    maximum_interval: timedelta = timedelta(minutes=1)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=self.maximum_interval, maximum_attempts=self.maximum_attempts,
                           non_retryable_error_types=NON_RETRYABLE)

    def kwargs(self) -> dict:
        return dict(start_to_close_timeout=self.start_to_close, schedule_to_close_timeout=self.schedule_to_close,
                    heartbeat_timeout=self.heartbeat, retry_policy=self.retry_policy())

    def local_kwargs(self) -> dict:
        """The same bounds for a local activity (which has no heartbeat)."""
        return dict(start_to_close_timeout=self.start_to_close, schedule_to_close_timeout=self.schedule_to_close,
                    retry_policy=self.retry_policy())


S, M = timedelta(seconds=1), timedelta(minutes=1)

#: A database write: fast, or the database is down (retried for 30 min, then ops).
DB_WRITE = ActivityOptions(start_to_close=15 * S, schedule_to_close=30 * M)
#: Run from an update handler while a person waits for the answer: three quick tries within 20 s.
IN_UPDATE = ActivityOptions(start_to_close=6 * S, schedule_to_close=20 * S, maximum_attempts=3,
                            maximum_interval=2 * S)
#: An e-mail: a few tries over 10 minutes; the workflow carries on without it (never fails a placement).
EMAIL = ActivityOptions(start_to_close=30 * S, schedule_to_close=10 * M, maximum_attempts=6)
#: A DocuSign call that may wait out a 429 rate limit; heartbeats between its HTTP calls.
ESIGN = ActivityOptions(start_to_close=2 * M, schedule_to_close=60 * M, heartbeat=30 * S,
                        maximum_interval=5 * M)
#: Cleanup on the way out (release capacity, void envelopes): retried until it happens.
CLEANUP = ActivityOptions(start_to_close=2 * M, schedule_to_close=None, heartbeat=30 * S,
                          maximum_interval=10 * M)
#: Rules, matching and documents: CPU work over the roster (matching 10,000 physicians takes < 1 s).
COMPUTE = ActivityOptions(start_to_close=60 * S, schedule_to_close=30 * M, heartbeat=None)

BY_NAME: dict[str, ActivityOptions] = {
    "record_start": DB_WRITE, "record_stage": DB_WRITE, "record_offer": DB_WRITE, "record_envelope": ESIGN,
    "assess_needs": COMPUTE, "find_candidates": COMPUTE, "select_pharmacies": COMPUTE,
    "prepare_protocols": COMPUTE, "prepare_agreements": COMPUTE, "prepare_protocol_packet": COMPUTE,
    "send_offer": EMAIL, "send_prescriber_packet": EMAIL, "notify": EMAIL,
    "send_agreement": ESIGN, "void_envelope": ESIGN, "check_envelope": ESIGN,
    "launch_clinic": DB_WRITE,
    "record_decision": IN_UPDATE, "reserve_physician": IN_UPDATE, "check_eligibility": IN_UPDATE,
    "record_cancellation": CLEANUP,
    # a chart review that cannot be opened must not be skipped silently: retried until the DB answers
    "start_replacement": DB_WRITE,  # starts a workflow and signals oversight: quick, or Temporal is down
    "open_chart_review": ActivityOptions(start_to_close=60 * S, schedule_to_close=None, maximum_interval=10 * M),
    # one pass over every live clinic (heartbeats per credential); the next day's run tries again anyway
    "compliance_sweep": ActivityOptions(start_to_close=10 * M, schedule_to_close=2 * timedelta(hours=1),
                                        maximum_attempts=5, heartbeat=60 * S, maximum_interval=5 * M),
    "offboard_clinic": CLEANUP,  # an engagement that ended must release its capacity: until it happens
    "escalate_adverse_event": EMAIL,
}


#: Short database writes a person's answer (update or signal) waits on: local activities only in the runs
#: that recorded patch ``answer-writes-local-v1`` (superseded by ``answer-writes-queued-v2``).
ANSWER_WRITES = frozenset({"record_decision", "reserve_physician", "check_eligibility", "record_offer"})


def options_for(name: str) -> ActivityOptions:
    """The options of ``name``; an unknown activity gets the database-write bounds."""
    return BY_NAME.get(name, DB_WRITE)
