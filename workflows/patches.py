"""Patch ids of changes to running workflows (``workflow.patched``).

Release 1's command sequence is what production histories hold. Each change below alters it, so it
runs only in executions that reach it after the deploy; histories recorded before replay the old
branch. Retire a patch in two deploys: ``workflow.deprecate_patch(ID)`` once no open run predates it,
then drop the old branch once no open run predates the deprecation (README, "Changing workflows").
"""

#: A business failure (non-retryable activity error, retries exhausted) moves to ``blocked`` for ops.
BLOCKED_STAGE = "blocked-stage-v1"
#: The SLA clock starts at the workflow's start time, not at the first workflow task.
SLA_FROM_START_TIME = "sla-from-start-time-v1"
#: A placement after the breach stays ``breached`` instead of turning ``met``.
SLA_LATE_STAYS_BREACHED = "sla-late-stays-breached-v1"
#: Cleanup and expiry take the answer lock; handlers re-check after it; cancel honoured after each activity.
RACE_FREE = "race-free-handlers-v1"
#: Roster / pharmacy waits back off to a day, skip unchanged upserts and e-mails, continue-as-new.
QUIET_LONG_WAITS = "quiet-long-waits-v1"
#: Offers that expired unanswered are re-offered in later rounds before waiting on the roster.
OFFER_ROUNDS = "offer-rounds-v1"
#: A cancel tells the physician who was placed (or whose accept raced the cancel) it will not go ahead.
CANCEL_TELLS_PHYSICIAN = "cancel-tells-physician-v1"
#: Oversight: compliance alerts from the daily sweep, OversightStatus/OversightNextDue search attributes,
#: offboarding (release, tell every party, terminate agreements) when the engagement ends.
OVERSIGHT_COMPLIANCE = "oversight-compliance-v1"
#: Stage 4: a pharmacy may decline the prescriber account (``decline_pharmacy``); the services it was
#: asked for go to the next qualifying pharmacy, or ops are asked when nobody qualifying is left.
PHARMACY_DECLINE = "pharmacy-decline-v1"
#: The daily sweep starts a replacement placement for a clinic whose state a lapse or exclusion suspended.
SWEEP_STARTS_REPLACEMENT = "sweep-starts-replacement-v1"
#: Stage 3: protocols re-prepared (a retry) with another text than the approved one need a new approval.
PROTOCOL_APPROVAL_BOUND = "protocol-approval-bound-v1"
#: A roster/pharmacy import signalled while the workflow was telling ops about the gap is not missed.
ROSTER_SIGNAL_KEPT = "roster-signal-kept-v1"
#: A re-onboarded clinic whose oversight still runs hands that oversight to the new director.
REONBOARD_TAKES_OVER = "reonboard-takes-over-v1"
#: Once no fresh candidate is left, an offer that expired unanswered is re-offered as soon as it expires
#: (that physician's next round, ranked after fresh candidates), not once every offer of the round closed.
REOFFER_AT_EXPIRY = "reoffer-at-expiry-v1"
#: Stage 3: once approved, the protocol packet goes out as a DocuSign envelope of its own kind (the director
#: signs, each midlevel with an e-mail acknowledges); stage 3 ends only when it is completed.
PROTOCOL_PACKET_SIGNED = "protocol-packet-signed-v1"
#: SLA-pressure widening: once the first offer expired unanswered (nobody accepted), every eligible physician
#: not yet offered is offered too, up to ``Timing.offer_burst_max`` open offers (fresh before re-offers);
#: ops are told once (``offers_widened`` audit entry). Checked only at an expiry with a cap set.
SLA_BURST = "sla-burst-v1"
#: Early SLA-pressure widening: when nobody accepted ``Timing.offer_widen_after`` after the first offer went
#: out, the offers widen as SLA_BURST does at the first expiry (same cap, ops told once, ``offers_widened``
#: audit entry). The matching wait's timer ends at that moment; asked only when it does (or that moment has
#: passed while nobody accepted), once per run, so a history without the marker keeps its old commands.
SLA_WIDEN_EARLY = "sla-widen-early-v1"
#: The short database writes an answer waits on (``activity_options.ANSWER_WRITES``) run as local activities,
#: so an answer no longer queues behind other onboardings' activities on the task queue. Superseded by
#: ANSWER_WRITES_QUEUED before it was deployed: only runs that recorded this marker still take it.
ANSWER_WRITES_LOCAL = "answer-writes-local-v1"
#: Supersedes ANSWER_WRITES_LOCAL: the answer writes are ordinary activities again. A worker killed while an
#: update handler's local activity shared a workflow task with other commands could not replay it (core:
#: "Update machine does not handle this event: UpsertWorkflowSearchAttributes", found by bench.chaos).
#: Checked first: a new run records this marker and queues; a run that recorded only answer-writes-local-v1
#: keeps its local activities (this check is False while it replays, and stays so for the run).
ANSWER_WRITES_QUEUED = "answer-writes-queued-v2"
#: Stage 4: a pharmacy's confirmation that arrives before its prescriber packet was recorded as sent (a signal
#: a workflow reset re-applies ahead of the sends it re-runs, or a pharmacy quicker than the workflow task) is
#: kept and applied when the packet goes out, instead of being dropped. Asked only when such a confirmation waits.
EARLY_CONFIRM_KEPT = "early-confirm-kept-v1"
