"""Repair a run whose workflow task fails on every attempt with a nondeterminism error (``mdco repair``).

Why this exists: temporalio 1.35 (its Rust core) can write a history that its own replay rejects. A
status query the server dispatches while no worker polls waits in matching; if an activity completes
meanwhile and a fresh worker picks the query up first, core applies that completion while answering it,
so the main loop's next commands are already queued when the workflow task carrying an update (an answer
sent meanwhile) arrives, and the update is accepted *after* them. Replay applies updates first, so every
later replay fails ("Update machine does not handle this event: ... UpsertWorkflowSearchAttributes") and
the onboarding stops on the next worker restart. Nothing is lost: the history is intact.

Temporal's remedy, done here: reset the run to the workflow task that wrote the first diverging command.
The new run keeps the history before it, re-executes from there with the deployed code (activities are
idempotent), and the server re-applies the signals and updates that arrived after it. The diagnosis is
the deployed code's own replay of the history, so a run that replays cleanly is never reset.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Iterable

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, UpdateWorkflowExecutionLifecycleStage, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.update.v1 import Meta, WaitPolicy
from temporalio.api.update.v1 import Request as UpdateRequest
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest, UpdateWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

#: running runs the server reports as having a problem (workflow tasks failing again and again)
STUCK_QUERY = "ExecutionStatus = 'Running' AND TemporalReportedProblems IS NOT NULL"
_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")
_T = EventType
_RESET_CAUSE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW


@dataclass
class RepairPlan:
    """What ``mdco repair`` found for one run and would do (``refused`` non-empty: it will not)."""

    workflow_id: str
    run_id: str
    failure: str  # the deployed code's replay failure ("" when it replays cleanly)
    diverging_event_id: int | None = None
    reset_to_event_id: int | None = None  # the WORKFLOW_TASK_COMPLETED the new run resets to
    signals_reapplied: int = 0
    activities_rerun: list[str] = field(default_factory=list)
    #: the answers (updates) made after the reset point, as their requests: re-sent if the new run rejects them
    updates: list[UpdateRequest] = field(default_factory=list)
    refused: str = ""

    @property
    def updates_reapplied(self) -> int:
        return len(self.updates)

    @property
    def repairable(self) -> bool:
        return self.reset_to_event_id is not None and not self.refused

    def summary(self) -> str:
        if not self.failure:
            return "replays cleanly with the deployed code: nothing to repair"
        if self.refused:
            return f"not repaired: {self.refused}"
        return (f"diverges at event {self.diverging_event_id}; reset to event {self.reset_to_event_id}: "
                f"{len(self.activities_rerun)} activities re-run, {self.signals_reapplied} signal(s) and "
                f"{self.updates_reapplied} update(s) re-applied")


def _is_nondeterminism(failure: str) -> bool:
    return "Nondeterminism" in failure or "TMPRL1100" in failure


def plan_from_history(workflow_id: str, run_id: str, events: Iterable[HistoryEvent], failure: str) -> RepairPlan:
    """The reset point for a replay ``failure`` (pure): the workflow task whose completion wrote the first
    event replay could not match. Refused when the failure is not a nondeterminism naming an event, or when
    a child workflow was started after that point (re-running it would start the child again)."""
    plan = RepairPlan(workflow_id=workflow_id, run_id=run_id, failure=failure)
    if not failure:
        return plan
    if not _is_nondeterminism(failure):
        plan.refused = f"the replay fails for another reason than nondeterminism: {failure[:200]}"
        return plan
    match = _EVENT_ID.search(failure)
    if match is None:
        plan.refused = f"the nondeterminism names no event to reset before: {failure[:200]}"
        return plan
    diverging = plan.diverging_event_id = int(match.group(1))
    events = list(events)
    completed = [e.event_id for e in events
                 if e.event_type == _T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id < diverging]
    if not completed:
        plan.refused = f"no completed workflow task precedes event {diverging}"
        return plan
    plan.reset_to_event_id = completed[-1]
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in events if e.event_type == _T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    for e in events:
        if e.event_id <= plan.reset_to_event_id:
            continue
        if e.event_type == _T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            plan.signals_reapplied += 1
        elif e.event_type == _T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            plan.updates.append(e.workflow_execution_update_accepted_event_attributes.accepted_request)
        elif e.event_type == _T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED:
            plan.updates.append(e.workflow_execution_update_admitted_event_attributes.request)
        elif e.event_type == _T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            plan.activities_rerun.append(scheduled.get(e.activity_task_completed_event_attributes.scheduled_event_id, "?"))
        elif e.event_type == _T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child = e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            plan.refused = (f"child workflow {child} was started after event {plan.reset_to_event_id}; a reset "
                            "would start it again: ops decide (temporal workflow reset)")
    return plan


def quiet_replays() -> None:
    """Keep the core's per-replay warning ("Failing workflow task ... Nondeterminism") out of a command's
    output: the failure is what the plan reports. Call before the first client is made."""
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))), error_if_already_set=False)


async def replay_failure(client: Client, history: WorkflowHistory, workflows: list[type]) -> str:
    """The deployed code's replay of ``history``: "" when it replays, else the failure's message."""
    replayer = Replayer(workflows=workflows, data_converter=client.data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return "" if result.replay_failure is None else str(result.replay_failure)


async def diagnose(client: Client, workflow_id: str, workflows: list[type]) -> RepairPlan:
    """Fetch the current run's history and plan its repair from the deployed code's replay of it."""
    handle = client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    history = await client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history()
    failure = await replay_failure(client, history, workflows)
    return plan_from_history(workflow_id, desc.run_id, history.events, failure)


async def stuck_workflow_ids(client: Client, workflow_types: Iterable[str], problems: str = STUCK_QUERY) -> list[str]:
    """Running runs of these types whose workflow tasks the server reports failing (visibility). A server
    without ``TemporalReportedProblems`` (before 1.28, e.g. docker-compose's 1.27) rejects that query: then
    every running run of the types is described and those whose pending task has failed before are listed."""
    types = " OR ".join(f"WorkflowType = '{t}'" for t in workflow_types)
    try:
        return sorted({wf.id async for wf in client.list_workflows(f"{problems} AND ({types})")})
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
    stuck = set()
    async for wf in client.list_workflows(f"ExecutionStatus = 'Running' AND ({types})"):
        pending = (await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()).raw_description
        if pending.pending_workflow_task.attempt >= 2:
            stuck.add(wf.id)
    return sorted(stuck)


async def reset(client: Client, plan: RepairPlan, reason: str, identity: str) -> str:
    """Reset the run as planned (signals and updates after the point are re-applied); the new run id.
    Only while the planned run is still the workflow's current, running one: the server would reset a
    closed run again, starting yet another run, so a second repair of the same plan is refused."""
    if not plan.repairable:
        raise ValueError(f"{plan.workflow_id}: {plan.summary()}")
    current = await client.get_workflow_handle(plan.workflow_id).describe()
    if current.run_id != plan.run_id or current.status != WorkflowExecutionStatus.RUNNING:
        raise ValueError(f"{plan.workflow_id}: run {plan.run_id} is no longer the running one "
                         f"(current run {current.run_id}): already repaired or closed")
    response = await client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=plan.workflow_id, run_id=plan.run_id),
        reason=reason[:500], workflow_task_finish_event_id=plan.reset_to_event_id,
        request_id=f"repair-{plan.run_id}-{plan.reset_to_event_id}", identity=identity))
    return response.run_id


async def resend_rejected_updates(client: Client, plan: RepairPlan, new_run_id: str, identity: str,
                                  timeout_s: float = 60.0) -> list[str]:
    """The server re-applies an answer (update) made after the reset point, but the new run validates it in the
    same workflow task as the events before it and before them (updates first), so one that needs them (an
    approval of protocols the task is only now receiving) is rejected and leaves no trace. Once the new run's
    first task completed, each such answer is sent again with its original payload (a new update id); what
    each got back, for the audit."""
    if not plan.updates:
        return []
    handle = client.get_workflow_handle(plan.workflow_id, run_id=new_run_id)
    accepted: set[str] = set()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        events = (await handle.fetch_history()).events
        reset_at = next((e.event_id for e in events if e.event_type == _T.EVENT_TYPE_WORKFLOW_TASK_FAILED and
                         e.workflow_task_failed_event_attributes.cause == _RESET_CAUSE), 0)
        if any(e.event_type == _T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id > reset_at for e in events):
            accepted = {e.workflow_execution_update_accepted_event_attributes.protocol_instance_id  # the update id
                        for e in events if e.event_type == _T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED}
            break
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{plan.workflow_id}: the reset run {new_run_id} completed no workflow task in "
                               f"{timeout_s:g} s: is a worker running?")
        await asyncio.sleep(0.5)
    outcomes = []
    for request in plan.updates:
        if request.meta.update_id in accepted:
            continue
        again = UpdateRequest()
        again.CopyFrom(request)
        again.meta.CopyFrom(Meta(update_id=f"{request.meta.update_id}/repair", identity=identity))
        response = await client.workflow_service.update_workflow_execution(UpdateWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=plan.workflow_id,
                                                                             run_id=new_run_id),
            wait_policy=WaitPolicy(lifecycle_stage=UpdateWorkflowExecutionLifecycleStage
                                   .UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED),
            request=again))
        rejected = response.outcome.HasField("failure")
        outcomes.append(f"{request.input.name} sent again: "
                        + (f"rejected ({response.outcome.failure.message})" if rejected else "accepted"))
    return outcomes
