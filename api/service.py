"""Operations on onboardings shared by the HTTP API and the ``mdco`` CLI.

Each function takes a Temporal ``Client`` and speaks in business terms: a start is idempotent per
clinic, a human answer is an update whose validator may refuse it (``Rejected``), an unknown id is
``NotFound``. Nothing here logs names, e-mails or phones.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.idempotency import update_id
from config import Settings
from domain.codes import SlaStatus, Stage, normalize_workflow_id, oversight_id_for, workflow_id_for
from domain.intake import Intake, Problem, problems_from
from domain.messages import (
    AssignRequest, CancelRequest, PharmacyConfirmation, PharmacyDecline, PhysicianAnswer, PlanDecision, ResendRequest,
    RetryRequest,
)
from domain.onboarding import EnvelopeEvent, OfferAnswer, OnboardingInput, OnboardingStatus, Replacement, Timing
from domain.oversight import AdverseEventWatch
from esign.connect import parse_connect_event, verify_signature
from mdco_temporal.client import STATUS_QUERY_TIMEOUT
from workflows import search_attributes as sa
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow

log = logging.getLogger("mdco.api")

WORKFLOW_TYPE = "OnboardingWorkflow"


# ---------------------------------------------------------------- errors callers map to exit codes / HTTP
class ServiceError(Exception):
    """Base of the errors below; ``str(err)`` is safe to show to the caller."""


class NotFound(ServiceError):
    """No onboarding with that id (HTTP 404)."""


class Rejected(ServiceError):
    """The onboarding refused the answer, e.g. an offer that was never made (HTTP 409)."""


class Unauthorized(ServiceError):
    """A webhook whose HMAC signature matches none of the configured keys (HTTP 401)."""


class Unavailable(ServiceError):
    """The onboarding did not answer in time, e.g. no worker is running (HTTP 503)."""


#: how long an answer (update) may wait for the workflow before the caller is told to retry
UPDATE_TIMEOUT = timedelta(seconds=30)


class Invalid(ServiceError):
    """Bad input, with every problem listed by field (HTTP 422 / exit code 2)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class StartResult:
    workflow_id: str
    status: Literal["started", "already_running", "already_completed"]


@dataclass(frozen=True)
class ConnectOutcome:
    """What the webhook did with a Connect delivery; ``ignored`` deliveries are still acknowledged."""

    status: Literal["signalled", "ignored"]
    envelope_id: str
    workflow_id: str = ""
    reason: str = ""


# ---------------------------------------------------------------- start
def _initial_search_attributes(intake: Intake, timing: Timing, now: datetime) -> TypedSearchAttributes:
    """What ops filter on from the first second; the workflow keeps them current afterwards."""
    return TypedSearchAttributes([
        SearchAttributePair(sa.STAGE, Stage.needs_assessment.value),
        SearchAttributePair(sa.SLA_STATUS, SlaStatus.on_track.value),
        SearchAttributePair(sa.SLA_DEADLINE, now + timing.sla_breach),
        SearchAttributePair(sa.STATES, list(intake.states)),
        SearchAttributePair(sa.WAITING_ON, "nothing"),
    ])


def _default_timing(settings: Settings) -> Timing:
    """The timers of a new placement: compressed in the demo profile, real durations otherwise."""
    return Timing.demo() if settings.timing_profile == "demo" else Timing()


async def start_onboarding(client: Client, settings: Settings, intake: Intake, *, timing: Timing | None = None,
                           offer_fanout: int | None = None, started_by: str = "sales") -> StartResult:
    """Start the clinic's onboarding, or report the one that exists (a repeated click starts nothing).

    Only a failed/terminated earlier run may be replaced; a completed or cancelled one is reported."""
    wf_id = workflow_id_for(intake.clinic_key)
    timing = timing or _default_timing(settings)
    offer_fanout = offer_fanout or settings.offer_fanout
    try:
        await client.start_workflow(
            OnboardingWorkflow.run, OnboardingInput(intake=intake, timing=timing, offer_fanout=offer_fanout,
                                                    started_by=started_by),
            id=wf_id, task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=_initial_search_attributes(intake, timing, datetime.now(timezone.utc)),
            static_summary=f"Onboarding {intake.clinic_key} ({', '.join(intake.states)})")
    except WorkflowAlreadyStartedError:
        desc = await client.get_workflow_handle(wf_id).describe()
        status = "already_running" if desc.status == WorkflowExecutionStatus.RUNNING else "already_completed"
        log.info("onboarding %s not started: %s", wf_id, status)
        return StartResult(wf_id, status)
    log.info("onboarding %s started", wf_id)
    return StartResult(wf_id, "started")


def replacement_target(engine: Any, id_or_key: str, reason: str) -> tuple[str, dict]:
    """The clinic key and clinic a replacement is asked for, checked in the store alone (so bad input is
    refused even with Temporal down): ``Invalid`` without a reason, ``NotFound`` for no such clinic,
    ``Rejected`` for a clinic not live under a medical director."""
    from store import onboardings

    clinic_key = id_or_key.removeprefix("oversight-").removeprefix("onboarding-")
    if not reason.strip():
        raise Invalid([Problem(field="reason", reason="must not be empty")])
    clinic = onboardings.get_clinic(engine, clinic_key)
    if clinic is None:
        raise NotFound(f"no clinic {clinic_key}")
    if clinic.get("status") != "active" or not clinic.get("physician_npi"):
        raise Rejected(f"clinic {clinic_key} is not live under a medical director (status {clinic.get('status')})")
    return clinic_key, clinic


async def start_replacement(client: Client, settings: Settings, engine: Any, id_or_key: str, reason: str, *,
                            actor: str = "ops", timing: Timing | None = None,
                            offer_fanout: int | None = None) -> StartResult:
    """Start a replacement placement for a live clinic's director (same 12/24 h SLA, matching without
    the outgoing physician, new protocols, pharmacies and agreements); the oversight workflow shows
    ``replacing`` until it hands over. A replacement already under way is returned, not doubled."""
    from store import onboardings, oversight

    clinic_key, clinic = replacement_target(engine, id_or_key, reason)
    running = oversight.running_replacement(engine, clinic_key)
    if running is not None:
        desc = await client.get_workflow_handle(running).describe()
        if desc.status == WorkflowExecutionStatus.RUNNING:
            return StartResult(running, "already_running")
    previous = oversight.launched_onboarding(engine, clinic_key)
    if previous is None:
        raise Rejected(f"clinic {clinic_key} has no launched placement to replace")
    wf_id = f"{workflow_id_for(clinic_key)}-r{len(onboardings.placements(engine, clinic_key))}"
    intake = Intake.model_validate(clinic["intake"])
    timing = timing or _default_timing(settings)
    replacement = Replacement(outgoing_npi=clinic["physician_npi"], previous_workflow_id=previous["workflow_id"],
                              oversight_workflow_id=oversight_id_for(clinic_key), reason=reason)
    await client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(intake=intake, timing=timing, offer_fanout=offer_fanout or settings.offer_fanout,
                        started_by=actor, replacement=replacement),
        id=wf_id, task_queue=settings.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        search_attributes=_initial_search_attributes(intake, timing, datetime.now(timezone.utc)),
        static_summary=f"Replacement placement {clinic_key} ({', '.join(intake.states)})")
    try:
        await client.get_workflow_handle(replacement.oversight_workflow_id).signal(
            OversightWorkflow.replacement_started, wf_id)
    except RPCError as err:
        if not _is_not_found(err):
            raise
        log.warning("replacement %s started; oversight %s is not running", wf_id, replacement.oversight_workflow_id)
    log.info("replacement %s started for %s", wf_id, clinic_key)
    return StartResult(wf_id, "started")


# ---------------------------------------------------------------- status
def _handle(client: Client, id_or_key: str) -> WorkflowHandle:
    return client.get_workflow_handle(normalize_workflow_id(id_or_key))


def _is_not_found(err: RPCError) -> bool:
    return err.status == RPCStatusCode.NOT_FOUND


async def get_status(client: Client, id_or_key: str) -> OnboardingStatus:
    """The onboarding's live status (the workflow's ``status`` query), given up after STATUS_QUERY_TIMEOUT."""
    handle = _handle(client, id_or_key)
    try:
        return await handle.query(OnboardingWorkflow.status, result_type=OnboardingStatus,
                                  rpc_timeout=STATUS_QUERY_TIMEOUT)
    except RPCError as err:
        if _is_not_found(err):
            raise NotFound(f"no onboarding with id {handle.id}") from None
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise Unavailable(f"status of {handle.id}: no worker answered within "
                              f"{STATUS_QUERY_TIMEOUT.total_seconds():g} s (restarting?); retry") from None
        raise
    except WorkflowQueryFailedError as err:
        final = await _final_status(client, handle.id)
        if final is not None:
            return final
        raise Rejected(f"status of {handle.id} unavailable: {err}") from None


async def _final_status(client: Client, workflow_id: str) -> OnboardingStatus | None:
    """A completed onboarding's status is its result (the status it returned), read from the history with no
    replay: the answer when a query cannot replay the run (a history temporalio 1.35 wrote out of order,
    README "Repairing a stuck workflow"). None while it runs or when it closed without a result."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    if desc.status != WorkflowExecutionStatus.COMPLETED:
        return None
    return await client.get_workflow_handle(workflow_id, run_id=desc.run_id, result_type=OnboardingStatus).result(
        follow_runs=False)


# ---------------------------------------------------------------- human answers (updates / signals)
async def _update(client: Client, id_or_key: str, update: Any, arg: BaseModel, result_type: type) -> Any:
    """Run an update; a validator's refusal becomes ``Rejected`` with its message. The caller's
    idempotency key (if any) is the update id, so a retried request is answered, not run again."""
    handle = _handle(client, id_or_key)
    name = update.__name__  # the update names are the method names
    try:
        return await handle.execute_update(update, arg, id=update_id(name), result_type=result_type,
                                           rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Unavailable(f"onboarding {handle.id} did not answer within {UPDATE_TIMEOUT.seconds} s "
                          "(is a worker running?); it may still be applied once a worker picks it up — "
                          "check the status before retrying") from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise Rejected(getattr(cause, "message", None) or str(cause)) from None
    except RPCError as err:
        if _is_not_found(err):
            await _raise_missing_or_closed(handle)
        raise


async def _raise_missing_or_closed(handle: WorkflowHandle) -> None:
    """An update/signal found no running workflow: say whether it never existed or is over."""
    try:
        desc = await handle.describe()
    except RPCError as err:
        if _is_not_found(err):
            raise NotFound(f"no onboarding with id {handle.id}") from None
        raise
    raise Rejected(f"onboarding {handle.id} is {desc.status.name.lower() if desc.status else 'closed'}")


def _message(model: type[BaseModel], **fields: Any) -> BaseModel:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise Invalid(problems_from(exc)) from None


async def answer_offer(client: Client, id_or_key: str, npi: str, accept: bool, *, reason: str = "",
                       on_behalf_of: str = "") -> OfferAnswer:
    """A physician accepts or declines the offer made to their NPI (``on_behalf_of``: ops answering
    for them, recorded as such)."""
    update = OnboardingWorkflow.accept_offer if accept else OnboardingWorkflow.decline_offer
    return await _update(client, id_or_key, update,
                         _message(PhysicianAnswer, npi=npi, reason=reason, on_behalf_of=on_behalf_of), OfferAnswer)


async def approve_protocols(client: Client, id_or_key: str, npi: str, *, on_behalf_of: str = "",
                            sha256s: list[str] | None = None) -> str:
    """The matched medical director approves the clinic's protocols: ``sha256s`` are the documents read
    (refused when they are not the current ones; the audit records them)."""
    return await _update(client, id_or_key, OnboardingWorkflow.approve_protocols,
                         _message(PhysicianAnswer, npi=npi, on_behalf_of=on_behalf_of, sha256s=sha256s), str)


def protocols_shown(engine: Any, id_or_key: str) -> list[dict]:
    """``mdco protocols show --json`` / ``GET /onboardings/{id}/protocols``: each protocol with its document,
    SHA-256, status and content, from the store (readable while Temporal is down)."""
    from store import common, onboardings

    try:
        return onboardings.protocols_shown(engine, normalize_workflow_id(id_or_key))
    except common.NotFound as exc:
        raise NotFound(str(exc)) from None


def report_chart_count(engine: Any, clinic_key: str, charts: int, period_start: Any, period_end: Any, *,
                       actor: str, at: datetime | None = None) -> dict:
    """``POST /clinics/{clinic_key}/chart-counts`` and ``mdco reviews charts``: the clinic's chart count for a
    period (default: the current review cycle's), stored and audited by
    ``activities.oversight.report_chart_count``. ``Invalid`` (every problem by field), ``NotFound`` (no such
    clinic), ``Rejected`` (not under oversight); nothing changed then. From the store alone (Temporal may
    be down)."""
    from activities.oversight import chart_count_period
    from activities.oversight import report_chart_count as report
    from domain.oversight import chart_count_problems
    from store import onboardings
    from store.oversight import Refused

    at = at or datetime.now(timezone.utc)
    start, end = chart_count_period(engine, clinic_key, at.date(), period_start, period_end)
    problems = chart_count_problems(charts, start, end, at.date())
    if problems:
        raise Invalid([Problem(field=f, reason=r) for f, r in problems])
    clinic = onboardings.get_clinic(engine, clinic_key)
    if clinic is None:
        raise NotFound(f"no clinic {clinic_key}")
    try:
        return report(engine, clinic_key, charts, start, end, actor, at)
    except Refused as exc:
        raise Rejected(str(exc)) from None


def audit_packet(engine: Any, id_or_key: str) -> bytes:
    """``GET /clinics/{clinic_key}/audit-packet``: the zip ``mdco audit-packet`` writes
    (``activities.audit_packet.build_packet``), from the store (readable while Temporal is down)."""
    import tempfile
    from pathlib import Path

    from activities.audit_packet import build_packet
    from store import onboardings

    clinic_key = id_or_key.removeprefix("oversight-").removeprefix("onboarding-")
    if onboardings.get_clinic(engine, clinic_key) is None:
        raise NotFound(f"no clinic {clinic_key}")
    with tempfile.TemporaryDirectory(prefix="mdco-packet-") as folder:
        out = Path(folder) / f"audit-packet-{clinic_key}.zip"
        build_packet(engine, clinic_key, out)
        return out.read_bytes()


async def decline_pharmacy(client: Client, id_or_key: str, pharmacy_id: str, reason: str, *,
                           on_behalf_of: str = "") -> str:
    """A pharmacy turns the prescriber account down; the onboarding asks the next qualifying one."""
    return await _update(client, id_or_key, OnboardingWorkflow.decline_pharmacy,
                         _message(PharmacyDecline, pharmacy_id=pharmacy_id, reason=reason,
                                  on_behalf_of=on_behalf_of), str)


async def review_plan(client: Client, id_or_key: str, reason: str, *, approve: bool = True,
                      actor: str = "ops") -> str:
    """Ops accept (or reject, which cancels) an assessment that has blocking findings."""
    return await _update(client, id_or_key, OnboardingWorkflow.review_plan,
                         _message(PlanDecision, approve=approve, reason=reason, actor=actor), str)


async def cancel(client: Client, id_or_key: str, reason: str, actor: str = "ops") -> str:
    """Ops cancel; the workflow releases capacity, offers and envelopes."""
    return await _update(client, id_or_key, OnboardingWorkflow.cancel,
                         _message(CancelRequest, reason=reason, actor=actor), str)


async def retry(client: Client, id_or_key: str, reason: str, actor: str = "ops") -> str:
    """Ops retry a ``blocked`` onboarding from the step that failed."""
    return await _update(client, id_or_key, OnboardingWorkflow.retry,
                         _message(RetryRequest, reason=reason, actor=actor), str)


async def assign_physician(client: Client, id_or_key: str, npi: str, reason: str, actor: str = "ops") -> OfferAnswer:
    """Ops place a physician by hand; the workflow re-checks eligibility and takes capacity."""
    return await _update(client, id_or_key, OnboardingWorkflow.assign_physician,
                         _message(AssignRequest, npi=npi, reason=reason, actor=actor), OfferAnswer)


async def resend_agreements(client: Client, id_or_key: str, reason: str, actor: str = "ops") -> str:
    """Ops resend declined or expired agreements (a fresh envelope each)."""
    return await _update(client, id_or_key, OnboardingWorkflow.resend_agreements,
                         _message(ResendRequest, reason=reason, actor=actor), str)


async def confirm_pharmacy(client: Client, id_or_key: str, pharmacy_id: str, *, on_behalf_of: str = "",
                           account_number: str = "") -> str:
    """A pharmacy confirms the prescriber account (with its number). Checked against the status first
    because a signal cannot be refused: an unexpected pharmacy is ``Rejected`` here instead of ignored."""
    confirmation = _message(PharmacyConfirmation, pharmacy_id=pharmacy_id, on_behalf_of=on_behalf_of,
                            account_number=account_number.strip())
    status = await get_status(client, id_or_key)
    assignment = next((p for p in status.pharmacies if p.pharmacy_id == pharmacy_id), None)
    if assignment is None or status.stage != Stage.pharmacy_coordination:
        raise Rejected(f"onboarding {status.workflow_id} does not wait on pharmacy {pharmacy_id} "
                       f"(stage {status.stage.value})")
    if assignment.status == "confirmed":
        return "already_confirmed"
    handle = _handle(client, id_or_key)
    try:
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, confirmation)
    except RPCError as err:
        if _is_not_found(err):
            await _raise_missing_or_closed(handle)
        raise
    return "confirmed"


async def start_event_watch(client: Client, settings: Settings, watch: AdverseEventWatch) -> None:
    """Watch a reported adverse event: its ``AdverseEventWorkflow`` (``adverse-event-<event_id>``) escalates
    it to ops at its deadline unless the director acknowledges it first."""
    from workflows.compliance import AdverseEventWorkflow

    await client.start_workflow(AdverseEventWorkflow.run, watch, id=f"adverse-event-{watch.event_id}",
                                task_queue=settings.task_queue)


async def stop_event_watch(client: Client, event_id: str) -> None:
    """After the director acknowledged an adverse event in the store (``mdco events ack`` or its answer page),
    tell its ``AdverseEventWorkflow`` so it does not escalate; a watch already over (escalated) is fine: the
    acknowledgement stands in the store."""
    try:
        await client.get_workflow_handle(f"adverse-event-{event_id}").signal("acknowledged")
    except RPCError:
        pass


# ---------------------------------------------------------------- visibility
def _enum_filter(field: str, value: str | None, enum: type) -> str | None:
    if value is None or value == "":
        return None
    allowed = [m.value for m in enum]
    if value not in allowed:
        raise Invalid([Problem(field=field, reason=f"must be one of {', '.join(allowed)}")])
    return value


def build_list_query(stage: str | None = None, sla: str | None = None) -> str:
    """The visibility query; filter values are checked against the enums, never interpolated raw."""
    parts = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    stage_value = _enum_filter("stage", stage, Stage)
    sla_value = _enum_filter("sla", sla, SlaStatus)
    if stage_value:
        parts.append(f"{sa.STAGE.name} = '{stage_value}'")
    if sla_value:
        parts.append(f"{sa.SLA_STATUS.name} = '{sla_value}'")
    return " AND ".join(parts)


async def list_onboardings(client: Client, stage: str | None = None, sla: str | None = None,
                           limit: int = 200) -> list[dict]:
    """Onboardings from Temporal visibility, newest first, with their search attributes."""
    query = build_list_query(stage, sla)
    out: list[dict] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        deadline = attrs.get(sa.SLA_DEADLINE)
        out.append({
            "workflow_id": wf.id,
            "status": wf.status.name.lower() if wf.status else "unknown",
            "stage": attrs.get(sa.STAGE),
            "sla_status": attrs.get(sa.SLA_STATUS),
            "sla_deadline": deadline.isoformat() if deadline else None,
            "waiting_on": attrs.get(sa.WAITING_ON),
            "states": list(attrs.get(sa.STATES) or []),
            "started_at": wf.start_time.isoformat() if wf.start_time else None,
        })
    return out


# ---------------------------------------------------------------- DocuSign Connect
def _workflow_id_from_external(external_id: str | None) -> str | None:
    """``<workflow_id>:<agreement_kind>:<version>`` -> the workflow id, if it is one of ours."""
    if not external_id:
        return None
    wf_id = external_id.split(":", 1)[0]
    return wf_id if wf_id.startswith("onboarding-") and len(wf_id) > len("onboarding-") else None


#: The status last forwarded per envelope (this API process; most recent last). Connect sends the same
#: envelope status several times (one delivery per recipient event plus the envelope's own); the workflow
#: applies a status once, so forwarding each (envelope, status) once spares it a signal and a task each.
_FORWARDED: "OrderedDict[str, str]" = OrderedDict()
FORWARDED_MAX = 20_000


def _already_forwarded(envelope_id: str, status: str) -> bool:
    return _FORWARDED.get(envelope_id) == status


def _forwarded(envelope_id: str, status: str) -> None:
    _FORWARDED[envelope_id] = status
    _FORWARDED.move_to_end(envelope_id)
    while len(_FORWARDED) > FORWARDED_MAX:
        _FORWARDED.popitem(last=False)


async def handle_connect(client: Client, settings: Settings, body: bytes,
                         headers: Mapping[str, str]) -> ConnectOutcome:
    """Verify a Connect delivery and pass it to its onboarding as an ``envelope_event`` signal.

    Deliveries that belong to no running onboarding are acknowledged and ignored, so DocuSign does
    not retry them forever; a bad signature raises ``Unauthorized`` before anything is read."""
    if not verify_signature(body, headers, settings.hmac_keys):
        log.warning("Connect delivery rejected: no valid HMAC signature")
        raise Unauthorized("no X-DocuSign-Signature-N header matches the body")
    try:
        event = parse_connect_event(body)
    except ValueError as exc:
        raise Invalid([Problem(field="(body)", reason=str(exc))]) from None
    wf_id = _workflow_id_from_external(event.external_id)
    if wf_id is None:
        log.info("Connect event for envelope %s ignored: no onboarding external_id", event.envelope_id)
        return ConnectOutcome("ignored", event.envelope_id, reason="envelope has no onboarding external_id")
    if _already_forwarded(event.envelope_id, event.status):
        return ConnectOutcome("ignored", event.envelope_id, wf_id, reason=f"status {event.status} already forwarded")
    try:
        await client.get_workflow_handle(wf_id).signal(
            OnboardingWorkflow.envelope_event,
            EnvelopeEvent(envelope_id=event.envelope_id, status=event.status, generated_at=event.generated_at))
    except RPCError as err:
        if not _is_not_found(err):
            raise
        log.info("Connect event for envelope %s ignored: %s is not running", event.envelope_id, wf_id)
        return ConnectOutcome("ignored", event.envelope_id, wf_id, reason="onboarding not running")
    _forwarded(event.envelope_id, event.status)
    log.info("Connect event %s for envelope %s signalled to %s", event.status, event.envelope_id, wf_id)
    return ConnectOutcome("signalled", event.envelope_id, wf_id)
