"""Record workflow histories for the replay tests from REAL runs of the code checked out here.

Replay tests are only as good as their histories: these come from the real embedded stack (Temporal dev
server, worker with the real activities, e-sign server, SMTP sink, API) on free ports under a temp dir,
with the demo roster loaded, every human playing through the public paths (HTTP API, the `mdco` CLI,
the e-sign sandbox; the Temporal client only where ops would use the Temporal UI), and a Timing in
seconds so the whole recording takes a few minutes. Each history is replayed against this code before
it is written to ``<out>/<path>_<release>.json``. An existing file is never overwritten (it is skipped):
recorded histories are what production ran, see tests/histories/README.md.

    .venv/bin/python scripts/record_histories.py                  # every path not recorded yet
    .venv/bin/python scripts/record_histories.py --only onboarding_ops_assign_v1 --out /tmp/h
    .venv/bin/python scripts/record_histories.py --release v2     # from a later release's checkout

Each path lists the releases it is recorded for (``Scenario.releases``): the release-1 paths stay as
they were recorded from caee9ee; release 2 adds its own (blocked stage, late placement after a breach,
long roster wait with continue-as-new, cancel racing an accept) and re-records a path with the patch
markers. A path that turns a server-wide knob (the e-sign server's faults) runs on a stack of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.worker import Replayer  # noqa: E402

from api import service  # noqa: E402
from api.auth import auth_headers  # noqa: E402
from config import Settings  # noqa: E402
from domain.intake import Intake  # noqa: E402
from domain.messages import PharmacyConfirmation  # noqa: E402
from domain.onboarding import OversightStatus, Timing  # noqa: E402
from esign.sandbox import admin_client, list_envelopes, sign_all  # noqa: E402
from bench.esign_calls import set_faults  # noqa: E402
from domain.identifiers import npi_with_check_digit  # noqa: E402
from starter.demo import DEMO_DIR, load_demo_data  # noqa: E402
from starter.smtp_sink import read_mailbox  # noqa: E402
from store.roster import get_reservation  # noqa: E402
from workflows import patches  # noqa: E402
from mdco_temporal.codec import new_key_spec  # noqa: E402
from starter.stack import Stack, stack_env  # noqa: E402
from mdco_temporal.client import connect, data_converter  # noqa: E402
from store.db import engine_from_settings  # noqa: E402
from tests.stack_fixtures import FAST_ENV, stack_settings  # noqa: E402
from workflows.onboarding import OnboardingWorkflow  # noqa: E402
from workflows.oversight import OversightWorkflow  # noqa: E402
from workflows.compliance import COMPLIANCE_WORKFLOWS, AdverseEventWorkflow  # noqa: E402
from domain.oversight import AdverseEventWatch, OversightCompliance, SweepSummary  # noqa: E402
from mdco_temporal.schedules import COMPLIANCE_SCHEDULE_ID  # noqa: E402
from store import oversight as store_oversight  # noqa: E402

OUT = ROOT / "tests" / "histories"
KEY_FILE = OUT / "TEST_PAYLOAD_KEYS.txt"  # test-only payload key of the *_encrypted_* histories
REASON = "recorded for the replay tests"
CLOSED = {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
          EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED}

#: Nothing fires by itself within a recording; each path shortens only the timers it is about.
BASE = Timing(sla_at_risk=timedelta(minutes=10), sla_breach=timedelta(minutes=20), offer_ttl=timedelta(minutes=10),
              roster_retry=timedelta(minutes=10), plan_review_reminder=timedelta(minutes=10),
              reminder_every=timedelta(minutes=10), agreement_expiry=timedelta(minutes=30),
              reconcile_after=timedelta(minutes=30), reconcile_min_gap=timedelta(minutes=5),
              chart_review_every=timedelta(hours=1), chart_review_deadline=timedelta(hours=1))


def timing(**seconds: float) -> Timing:
    return BASE.model_copy(update={k: timedelta(seconds=v) for k, v in seconds.items()})


# ---------------------------------------------------------------- the humans and the stack
@dataclass
class Rec:
    """One running stack and the clients every path uses to play its humans."""

    settings: Settings
    client: Client
    api: httpx.AsyncClient
    done: dict[str, set[str]] = field(default_factory=dict)  # per workflow: which humans already answered

    async def start(self, intake_file: str, key: str, t: Timing = BASE, fanout: int = 3) -> str:
        """Start an onboarding as sales do, with this path's Timing (the API would take the default)."""
        raw = json.loads((DEMO_DIR / "intakes" / f"{intake_file}.json").read_text())
        intake = Intake.model_validate({**raw, "clinic_key": key})
        result = await service.start_onboarding(self.client, self.settings, intake, timing=t, offer_fanout=fanout)
        assert result.status == "started", result
        return result.workflow_id

    async def start_intake(self, raw: dict, t: Timing = BASE, fanout: int = 3) -> str:
        """``start`` with an intake given inline (a clinic the demo files do not describe)."""
        result = await service.start_onboarding(self.client, self.settings, Intake.model_validate(raw), timing=t,
                                                offer_fanout=fanout)
        assert result.status == "started", result
        return result.workflow_id

    async def status(self, wf: str) -> dict:
        r = await self.api.get(f"/onboardings/{wf}")
        r.raise_for_status()
        return r.json()

    async def post(self, path: str, body: dict | None = None) -> dict:
        r = await self.api.post(path, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    async def play(self, wf: str, until: Callable[[dict], bool] = lambda s: s["stage"] == "launched", *,
                   silent: tuple[str, ...] = (), timeout: float = 120) -> dict:
        """Every human not ``silent`` answers what the onboarding waits on, until ``until(status)``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = await self.status(wf)
            if until(st):
                return st
            await self.answer(st, silent)
            await asyncio.sleep(0.3)
        raise TimeoutError(f"{wf}: still {st['stage']}, waiting on {st['waiting_on']!r}: {st['waiting_reason']}")

    async def answer(self, st: dict, silent: tuple[str, ...]) -> None:
        """What each human does (as in ``mdco demo``): ops approve the plan with the CLI, physicians
        and pharmacies use the HTTP API, signers sign on the e-sign sandbox (Connect reaches the API)."""
        wf, stage, waiting = st["workflow_id"], st["stage"], st["waiting_on"]
        done = self.done.setdefault(wf, set())
        if stage == "needs_assessment" and waiting == "ops" and "ops" not in silent and "plan" not in done:
            await self.cli("plan", "approve", wf, "--reason", "blocking findings reviewed: " + REASON)
            done.add("plan")
        elif stage == "matching" and not st["physician_npi"] and "physician" not in silent:
            open_offers = [o["npi"] for o in st["offers"] if o["status"] == "open"]
            if open_offers:
                await self.api.post(f"/onboardings/{wf}/offers/{open_offers[-1]}/accept")
        elif stage == "protocol_setup" and st["protocols"] and "protocols" not in done:
            await self.post(f"/onboardings/{wf}/protocols/approve", {"npi": st["physician_npi"]})
            done.add("protocols")
        elif stage == "pharmacy_coordination" and "pharmacy" not in silent:
            for p in st["pharmacies"]:
                if p["status"] != "confirmed" and p["pharmacy_id"] not in done:
                    await self.post(f"/onboardings/{wf}/pharmacies/{p['pharmacy_id']}/confirm")
                    done.add(p["pharmacy_id"])
        elif waiting == "signers" and (stage == "protocol_setup" and "packet" not in silent
                                       or stage == "agreements" and "signers" not in silent):
            await asyncio.to_thread(sign_all, self.settings, wf)  # skips closed envelopes: safe to repeat

    async def cli(self, *args: str) -> str:
        """``mdco ARGS`` against this stack; its stdout."""
        env = {**os.environ, **FAST_ENV, **stack_env(self.settings), "COLUMNS": "200"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "starter", *args, env=env, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"mdco {' '.join(args)}: exit {proc.returncode}: {err.decode()[-300:]}")
        return out.decode()

    async def history(self, wf: str, run_id: str | None = None) -> WorkflowHistory:
        return await self.client.get_workflow_handle(wf, run_id=run_id).fetch_history()

    async def launched(self, wf: str) -> WorkflowHistory:
        """Play to launch and let the run complete; its history. The oversight child it started is not
        needed: terminated once the onboarding has closed (so its end is not in the onboarding's history)."""
        st = await self.play(wf)
        await asyncio.wait_for(self.client.get_workflow_handle(wf).result(), 60)
        await self.client.get_workflow_handle(st["oversight_workflow_id"]).terminate(REASON)
        return await self.history(wf)


def offers(st: dict, status: str) -> list[dict]:
    return [o for o in st["offers"] if o["status"] == status]


def noted(st: dict, text: str) -> bool:
    return any(text in e["event"] for e in st["timeline"])


def check(ok: bool, what: str) -> None:
    """A path that did not go the way it is named must not be written."""
    if not ok:
        raise AssertionError(f"the run did not go as intended: {what}")


# ---------------------------------------------------------------- the paths (one history each)
async def plan_review(r: Rec) -> WorkflowHistory:
    """Blocking findings (compounded GLP-1) -> ops approve the plan -> all stages -> launched."""
    wf = await r.start("peak-denver", "peak-denver-plan-review")
    history = await r.launched(wf)
    check(noted(await r.status(wf), "plan approved"), "plan approved by ops")
    return history


async def decline_then_accept(r: Rec) -> WorkflowHistory:
    """Two offers out; one physician declines, so a third offer goes out; one accepts."""
    wf = await r.start("glow-austin", "glow-austin-decline", fanout=2)
    st = await r.play(wf, lambda s: len(offers(s, "open")) == 2, silent=("physician",))
    await r.post(f"/onboardings/{wf}/offers/{offers(st, 'open')[0]['npi']}/decline")
    await r.play(wf, lambda s: bool(offers(s, "declined")) and len(offers(s, "open")) == 2, silent=("physician",))
    return await r.launched(wf)


async def offer_expiry_widening(r: Rec) -> WorkflowHistory:
    """The one offer (fan-out 1) expires unanswered, so two go out at once (fan-out + expired); one accepts.
    (The demo roster has only a handful of eligible physicians per clinic: a wider fan-out runs out.)"""
    wf = await r.start("sunrise-miami", "sunrise-miami-offer-expiry", timing(offer_ttl=6), fanout=1)
    await r.play(wf, lambda s: len(offers(s, "expired")) >= 1 and len(offers(s, "open")) >= 2,
                 silent=("physician",))
    history = await r.launched(wf)  # accepts the newest open offer
    check(len(offers(await r.status(wf), "accepted")) == 1, "an offer accepted after the widening")
    return history


async def sla_at_risk_breached(r: Rec) -> WorkflowHistory:
    wf = await r.start("glow-austin", "glow-austin-sla", timing(sla_at_risk=3, sla_breach=6))
    await r.play(wf, lambda s: s["sla_status"] == "breached" and bool(offers(s, "open")), silent=("physician",))
    history = await r.launched(wf)
    st = await r.status(wf)
    check(noted(st, "placement SLA at_risk") and noted(st, "placement SLA breached"), "SLA at risk, then breached")
    return history


async def ops_assign(r: Rec) -> WorkflowHistory:
    """Ops place a physician from the ranking (`mdco match`) who had no offer; open offers are withdrawn."""
    wf = await r.start("sunrise-miami", "sunrise-miami-assign")
    st = await r.play(wf, lambda s: len(offers(s, "open")) >= 3, silent=("physician",))
    offered = {o["npi"] for o in st["offers"]}
    ranked = re.findall(r"\b\d{10}\b", await r.cli("match", wf, "--top", "10"))
    npi = next(n for n in ranked if n not in offered)
    answer = await r.post(f"/onboardings/{wf}/physician/assign", {"npi": npi, "reason": REASON})
    check(answer["status"] == "assigned", f"NPI {npi} assigned: {answer}")
    return await r.launched(wf)


async def cancel_ops(r: Rec) -> WorkflowHistory:
    wf = await r.start("glow-austin", "glow-austin-cancel-ops")
    await r.play(wf, lambda s: len(offers(s, "open")) >= 3 and s["waiting_on"] == "physician", silent=("physician",))
    await r.post(f"/onboardings/{wf}/cancel", {"reason": REASON})
    return await closed(r, wf)


async def cancel_temporal(r: Rec) -> WorkflowHistory:
    """A cancel request from the Temporal UI/CLI while offers are open (same cleanup as ops cancel)."""
    wf = await r.start("sunrise-miami", "sunrise-miami-cancel-ui")
    await r.play(wf, lambda s: len(offers(s, "open")) >= 3 and s["waiting_on"] == "physician", silent=("physician",))
    await r.client.get_workflow_handle(wf).cancel()
    return await closed(r, wf)


async def closed(r: Rec, wf: str) -> WorkflowHistory:
    """Wait until the cancelled onboarding has cleaned up and closed; its history."""
    handle = r.client.get_workflow_handle(wf)
    await asyncio.wait_for(handle.result(), 60)
    st = await handle.query(OnboardingWorkflow.status)
    check(st.stage.value == "cancelled" and not any(o.status == "open" for o in st.offers), "cancelled, offers closed")
    return await r.history(wf)


async def agreements_declined_resent(r: Rec) -> WorkflowHistory:
    """A signer declines; the onboarding asks ops, who resend; the fresh envelope is signed."""
    wf = await r.start("glow-austin", "glow-austin-env-declined")
    await r.play(wf, lambda s: s["stage"] == "agreements" and s["waiting_on"] == "signers", silent=("signers",))
    envelope = next(e for e in await asyncio.to_thread(list_envelopes, r.settings, f"{wf}:") if e["status"] == "sent")
    signer = min(envelope["recipients"], key=lambda s: int(s["routingOrder"]))

    def decline() -> None:
        with admin_client(r.settings) as admin:
            admin.post(f"/admin/envelopes/{envelope['envelopeId']}/recipients/{signer['recipientId']}/decline",
                       json={"reason": "wrong practice address"}).raise_for_status()

    await asyncio.to_thread(decline)
    await r.play(wf, lambda s: s["stage"] == "agreements" and s["waiting_on"] == "ops", silent=("signers",))
    await r.post(f"/onboardings/{wf}/agreements/resend", {"reason": REASON})
    history = await r.launched(wf)
    check(any(e["attempt"] == 2 for e in (await r.status(wf))["envelopes"]), "a second envelope sent")
    return history


async def agreement_expiry_resend(r: Rec) -> WorkflowHistory:
    """Envelopes expire unsigned: voided and resent (attempt 2), which the signers then sign."""
    wf = await r.start("sunrise-miami", "sunrise-miami-env-expiry", timing(agreement_expiry=10))

    def resent(s: dict) -> bool:
        current = [e for e in s["envelopes"] if e["current"]]
        return s["stage"] == "agreements" and bool(current) and s["waiting_on"] == "signers" \
            and len(current) == len({e["agreement_kind"] for e in s["envelopes"]}) \
            and all(e["attempt"] == 2 and e["status"] in ("sent", "delivered") for e in current)

    await r.play(wf, resent, silent=("signers",))
    history = await r.launched(wf)
    envelopes = (await r.status(wf))["envelopes"]
    check(any(e["status"] == "voided" for e in envelopes), f"expired envelopes voided: {envelopes}")
    return history


async def pharmacy_reminder_escalation(r: Rec) -> WorkflowHistory:
    """The pharmacy stays silent through the reminders until ops are told, then confirms."""
    wf = await r.start("glow-austin", "glow-austin-pharmacy", timing(reminder_every=2))
    await r.play(wf, lambda s: s["stage"] == "pharmacy_coordination" and noted(s, "pharmacy confirmation overdue"),
                 silent=("pharmacy",))
    return await r.launched(wf)


async def oversight_runs(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """The oversight child of a launch: its first run (12 chart reviews, then continue-as-new) and the
    next run, ended by the ``end_engagement`` signal after a few cycles (no API path sends it yet)."""
    wf = await r.start("sunrise-miami", "sunrise-miami-oversight", timing(chart_review_every=1))
    oversight = (await r.play(wf))["oversight_workflow_id"]
    handle = r.client.get_workflow_handle(oversight)
    deadline = time.monotonic() + 90
    while (await handle.query(OversightWorkflow.status, result_type=OversightStatus)).cycles_done < 15:
        check(time.monotonic() < deadline, "15 chart-review cycles within 90 s")
        await asyncio.sleep(0.3)
    second_run = (await handle.describe()).run_id
    await handle.signal(OversightWorkflow.end_engagement, "clinic offboarded: " + REASON)
    await asyncio.wait_for(r.client.get_workflow_handle(oversight, run_id=second_run).result(), 30)
    second = await r.history(oversight, second_run)
    first_run = second.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    first = await r.history(oversight, first_run)
    check(first.events[-1].HasField("workflow_execution_continued_as_new_event_attributes"),
          "the first run ended in continue-as-new")
    return first, second


async def launched_encrypted(r: Rec) -> WorkflowHistory:
    """The plain happy path with payload encryption on (this stack runs with MDCO_PAYLOAD_KEYS)."""
    wf = await r.start("glow-austin", "glow-austin-encrypted")
    history = await r.launched(wf)
    check("dana@clinic.example" not in history.to_json(), "no intake contact in clear text")
    return history

# ---------------------------------------------------------------- release 2 (workflow.patched guards)
PATCH_IDS = {v for k, v in vars(patches).items() if k.isupper() and isinstance(v, str)}


def patch_markers(history: WorkflowHistory) -> set[str]:
    """The ``workflow.patched`` ids recorded in the history (its ``core_patch`` markers)."""
    found = set()
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            for payloads in e.marker_recorded_event_attributes.details.values():
                for p in payloads.payloads:
                    found |= {pid for pid in PATCH_IDS if pid.encode() in p.data}
    return found


def activity_inputs(history: WorkflowHistory, activity: str) -> list:
    """The JSON inputs of every ``activity`` scheduled in a history recorded without the codec."""
    out = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == activity:
                out += [json.loads(p.data) for p in a.input.payloads]
    return out


def has_event(history: WorkflowHistory, event_type: int) -> bool:
    return any(e.event_type == event_type for e in history.events)


def subjects(r: Rec) -> list[str]:
    """Subjects of the mail the SMTP sink holds (a folded long subject reads back with a leading space)."""
    return [str(m["Subject"]).strip() for m in read_mailbox(r.settings.mail_dir)]


def capacity_released(r: Rec, wf: str) -> bool:
    """No reservation, or one released (the cleanup gave back whatever the onboarding held)."""
    engine = engine_from_settings(r.settings)
    try:
        held = get_reservation(engine, wf)
    finally:
        engine.dispose()
    return held is None or held["released_at"] is not None


async def decline_then_accept_v2(r: Rec) -> WorkflowHistory:
    """The v1 path on release-2 code: the same commands plus the patch markers."""
    history = await decline_then_accept(r)
    check({patches.SLA_FROM_START_TIME, patches.RACE_FREE} <= patch_markers(history),
          f"patch markers recorded: {sorted(patch_markers(history))}")
    return history


async def blocked_retry_and_cancel(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """The e-sign server rejects envelope creation (permanent 400, runtime knob ``reject_envelopes``):
    two onboardings stop in ``blocked`` (agreements) and ops are e-mailed. The knob is turned off; ops
    ``mdco retry`` one (signed -> launched) and ``mdco cancel`` the other (capacity released)."""
    await asyncio.to_thread(set_faults, r.settings, reject_envelopes=True)
    try:
        retried = await r.start("glow-austin", "glow-austin-blocked-retry")
        cancelled = await r.start("sunrise-miami", "sunrise-miami-blocked-cancel")
        blocked = await asyncio.gather(*(r.play(wf, lambda s: s["stage"] == "blocked") for wf in (retried, cancelled)))
    finally:
        await asyncio.to_thread(set_faults, r.settings, reject_envelopes=False)
    for wf, st in zip((retried, cancelled), blocked):
        check(st["blocked_stage"] == "agreements" and st["waiting_on"] == "ops", f"{wf} blocked in agreements: {st}")
        deadline = time.monotonic() + 30  # the stage shows blocked before the e-mail activity has run
        while f"Blocked: {wf} stopped in agreements" not in subjects(r):
            check(time.monotonic() < deadline, f"ops e-mailed about {wf} within 30 s: {subjects(r)}")
            await asyncio.sleep(0.3)
    await r.cli("retry", retried, "--reason", "DocuSign account permission fixed: " + REASON)
    first = await r.launched(retried)
    st = await r.status(retried)
    check(st["blocked_stage"] == "" and noted(st, "retry of agreements requested by"), "retried, then launched")
    await r.cli("cancel", cancelled, "--reason", "clinic withdrew while blocked: " + REASON)
    second = await closed(r, cancelled)
    check(capacity_released(r, cancelled), "the cancelled onboarding's capacity released")
    for wf, history in ((retried, first), (cancelled, second)):
        stages = [a.get("stage") for a in activity_inputs(history, "record_stage")]
        check("blocked" in stages and has_event(history, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED),
              f"{wf}: an envelope creation failed and the blocked stage was recorded ({stages})")
        check(patches.BLOCKED_STAGE in patch_markers(history), f"{wf}: patch {patches.BLOCKED_STAGE} marked")
    return first, second


async def sla_breached_late(r: Rec) -> WorkflowHistory:
    """No answer until after the SLA breach, then an accept: the SLA stays ``breached``."""
    wf = await r.start("glow-austin", "glow-austin-sla-late", timing(sla_at_risk=3, sla_breach=6))
    await r.play(wf, lambda s: s["sla_status"] == "breached" and bool(offers(s, "open")), silent=("physician",))
    history = await r.launched(wf)
    st = await r.status(wf)
    check(st["sla_status"] == "breached" and noted(st, "SLA stays breached"), f"SLA stays breached: {st['sla_status']}")
    check(patches.SLA_LATE_STAYS_BREACHED in patch_markers(history), "patch sla-late-stays-breached marked")
    return history


#: A physician licensed in Montana, where the demo roster has nobody (imported by the roster-wait path).
MONTANA_NPI = npi_with_check_digit("177000301")
MONTANA_ROSTER = (
    "npi,first_name,last_name,degree,email,phone,home_state,licenses,dea,therapies,max_clinics,active_clinics,"
    "malpractice_expires,board_certifications,telehealth,supervised_midlevels\n"
    f"{MONTANA_NPI},Mara,Holt,MD,mara.holt@md.example,+15554060100,MT,MT:MT40601:2029-10-31,,"
    "neurotoxins;dermal_fillers;laser,5,0,2029-06-30,dermatology,true,\n")


async def roster_wait_continue_as_new(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """A Montana clinic: nobody in the demo roster is licensed there, so the onboarding waits on the
    roster, backing off (1 s doubling to 4 s) until its history passes 120 events and it continues as
    new. Then a roster import adds a Montana physician (``mdco roster import`` signals
    ``roster_updated``); the offer is accepted in the new run -> launched."""
    raw = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    raw.update(clinic_key="big-sky-billings-roster-wait", clinic_name="Big Sky Aesthetics Billings LLC",
               states=["MT"], services=["neurotoxins", "dermal_fillers"], product_choices={},
               locations=[{"state": "MT", "city": "Billings", "zip": "59101"}],
               midlevels=[{**raw["midlevels"][0], "state": "MT"}])
    t = timing(roster_retry=1, roster_retry_max=4).model_copy(update={"max_history_events": 120})
    wf = await r.start_intake(raw, t)
    handle = r.client.get_workflow_handle(wf)
    first_run = (await handle.describe()).run_id
    await r.play(wf, lambda s: s["waiting_on"] == "roster", silent=("physician",))
    deadline = time.monotonic() + 150
    while (await handle.describe()).run_id == first_run:
        check(time.monotonic() < deadline, "continue-as-new within 150 s")
        await asyncio.sleep(0.5)
    second_run = (await handle.describe()).run_id
    await r.play(wf, lambda s: s["waiting_on"] == "roster", silent=("physician",))  # the new run waits again
    with tempfile.TemporaryDirectory(prefix="mdco-roster-") as tmp:
        roster_file = Path(tmp) / "montana.csv"
        roster_file.write_text(MONTANA_ROSTER)
        imported = await r.cli("roster", "import", str(roster_file))
    check(f"signalled {wf}" in imported, f"the import signalled the waiting onboarding: {imported}")
    await r.play(wf, lambda s: bool(offers(s, "open")), silent=("physician",))
    await r.launched(wf)
    st = await r.status(wf)
    check(st["physician_npi"] == MONTANA_NPI, f"the imported physician placed: {st['physician_npi']}")
    first, second = await r.history(wf, first_run), await r.history(wf, second_run)
    check(first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
          "the first run ended in continue-as-new")
    check(second.events[0].workflow_execution_started_event_attributes.continued_execution_run_id == first_run,
          "the second run continues the first")
    check(any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
              and e.workflow_execution_signaled_event_attributes.signal_name == "roster_updated"
              for e in second.events), "roster_updated signalled to the second run")
    check(second.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, "second run completed")
    check(patches.QUIET_LONG_WAITS in patch_markers(first), "patch quiet-long-waits marked")
    return first, second


async def cancel_racing_accept(r: Rec) -> WorkflowHistory:
    """An accept and an ops cancel sent at once through the HTTP API while three offers are open:
    cancelled whichever the server applies first, the capacity a winning accept took released."""
    wf = await r.start("glow-austin", "glow-austin-cancel-race")
    st = await r.play(wf, lambda s: len(offers(s, "open")) >= 3 and s["waiting_on"] == "physician",
                      silent=("physician",))
    npi = offers(st, "open")[0]["npi"]
    accept, cancel = await asyncio.gather(
        r.api.post(f"/onboardings/{wf}/offers/{npi}/accept"),
        r.api.post(f"/onboardings/{wf}/cancel", json={"reason": "deal lost, racing an accept: " + REASON}))
    check(cancel.status_code == 200, f"cancel accepted: {cancel.status_code} {cancel.text[:200]}")
    print(f"{wf}: accept answered {accept.status_code} {accept.text[:160]}")
    history = await closed(r, wf)
    check(capacity_released(r, wf), "capacity released")
    check(patches.RACE_FREE in patch_markers(history), "patch race-free-handlers marked")
    return history


#: Two Vermont physicians (the demo roster has nobody there) for the offer-rounds path.
VERMONT_NPIS = (npi_with_check_digit("180200401"), npi_with_check_digit("180200402"))
VERMONT_ROSTER = (
    "npi,first_name,last_name,degree,email,phone,home_state,licenses,dea,therapies,max_clinics,active_clinics,"
    "malpractice_expires,board_certifications,telehealth,supervised_midlevels\n" + "".join(
        f"{npi},Val{i},Green,MD,val{i}.green@md.example,+1802555010{i},VT,VT:VT8020{i}:2029-10-31,,"
        "neurotoxins;dermal_fillers;laser,5,0,2029-06-30,dermatology,true,\n" for i, npi in enumerate(VERMONT_NPIS)))


async def second_offer_round(r: Rec) -> WorkflowHistory:
    """A Vermont clinic whose two eligible physicians do not answer their first offers: both expire,
    round 2 re-offers them (ops told) instead of waiting on the roster, one accepts -> launched."""
    await import_roster(r, VERMONT_ROSTER)
    raw = clinic_in("VT", "green-mountain-second-round", "Green Mountain Aesthetics LLC", "Burlington", "05401")
    wf = await r.start_intake(raw, timing(offer_ttl=3), fanout=2)
    st = await r.play(wf, lambda s: s.get("offer_round") == 2 and len(offers(s, "open")) == 2, silent=("physician",))
    check(sorted(o["npi"] for o in offers(st, "open")) == sorted(VERMONT_NPIS), "both silent physicians re-offered")
    history = await r.launched(wf)
    st = await r.status(wf)
    check(noted(st, "offer round 2") and st["physician_npi"] in VERMONT_NPIS, "placed in round 2")
    check("Offer round 2 for " + wf in [s.strip() for s in subjects(r)], "ops told when round 2 started")
    check(patches.OFFER_ROUNDS in patch_markers(history), "patch offer-rounds marked")
    return history


def clinic_in(state: str, key: str, name: str, city: str, zip_code: str) -> dict:
    """The Austin demo intake moved to one ``state`` (a clinic the demo roster does not cover)."""
    raw = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    raw.update(clinic_key=key, clinic_name=name, states=[state], services=["neurotoxins", "dermal_fillers"],
               product_choices={}, locations=[{"state": state, "city": city, "zip": zip_code}],
               midlevels=[{**raw["midlevels"][0], "state": state}])
    return raw


def roster_csv(rows: list[str]) -> str:
    """A roster file (the import's CSV header) with ``rows``."""
    return ("npi,first_name,last_name,degree,email,phone,home_state,licenses,dea,therapies,max_clinics,"
            "active_clinics,malpractice_expires,board_certifications,telehealth,supervised_midlevels\n"
            + "".join(row + "\n" for row in rows))


async def import_roster(r: Rec, text: str) -> str:
    """``mdco roster import`` of a roster file holding ``text``; the CLI's output."""
    with tempfile.TemporaryDirectory(prefix="mdco-roster-") as tmp:
        roster_file = Path(tmp) / "roster.csv"
        roster_file.write_text(text)
        return await r.cli("roster", "import", str(roster_file))


# ---------------------------------------------------------------- release 4: re-offer at expiry (issue 13)
#: Two Maine physicians (the demo roster has nobody there) for the re-offer-at-expiry path.
MAINE_NPIS = (npi_with_check_digit("120700401"), npi_with_check_digit("120700402"))


async def reoffer_at_expiry(r: Rec) -> WorkflowHistory:
    """A Maine clinic, fan-out 1, two eligible physicians: the first offer expires unanswered, the
    only fresh physician is offered and, nobody fresh being left, the first is re-offered at once
    (round 2, ops told) while the second offer is still open; the first accepts -> launched."""
    await import_roster(r, roster_csv([
        f"{npi},Mae{i},Pine,MD,mae{i}.pine@md.example,+1207555010{i},ME,ME:ME2070{i}:2029-10-31,,"
        "neurotoxins;dermal_fillers;laser,5,0,2029-06-30,dermatology,true," for i, npi in enumerate(MAINE_NPIS)]))
    raw = clinic_in("ME", "pine-tree-reoffer", "Pine Tree Aesthetics LLC", "Portland", "04101")
    wf = await r.start_intake(raw, timing(offer_ttl=8), fanout=1)
    st = await r.play(wf, lambda s: s.get("offer_round") == 2 and len(offers(s, "open")) == 2, silent=("physician",))
    rounds = {o["npi"]: o["round"] for o in offers(st, "open")}
    check(sorted(rounds.values()) == [1, 2] and len(offers(st, "expired")) == 1, "re-offered while another is open")
    again = next(npi for npi, rnd in rounds.items() if rnd == 2)
    await r.post(f"/onboardings/{wf}/offers/{again}/accept")
    history = await r.launched(wf)
    st = await r.status(wf)
    check(st["physician_npi"] == again and noted(st, "offer round 2"), "placed in round 2")
    check("Offer round 2 for " + wf in [s.strip() for s in subjects(r)], "ops told when round 2 started")
    check(patches.REOFFER_AT_EXPIRY in patch_markers(history), "patch reoffer-at-expiry marked")
    return history


# ---------------------------------------------------------------- release 4: SLA-pressure widening (issue 13)
#: Five New Hampshire physicians (the demo roster has nobody there) for the SLA-burst path.
NH_NPIS = tuple(npi_with_check_digit(f"160300{i}01") for i in range(1, 6))


async def sla_burst(r: Rec) -> WorkflowHistory:
    """A New Hampshire clinic, fan-out 1, five eligible physicians, ``offer_burst_max`` 3: the first offer
    expires unanswered and the offers widen at once to 3 open (the cap; nobody asked twice, one eligible
    physician left unasked), ops told once; one of them accepts, the other two are withdrawn -> launched."""
    await import_roster(r, roster_csv([
        f"{npi},Hal{i},Granite,MD,hal{i}.granite@md.example,+1603555010{i},NH,NH:NH6030{i}:2029-10-31,,"
        "neurotoxins;dermal_fillers;laser,5,0,2029-06-30,dermatology,true," for i, npi in enumerate(NH_NPIS)]))
    raw = clinic_in("NH", "granite-burst", "Granite State Aesthetics LLC", "Concord", "03301")
    wf = await r.start_intake(raw, timing(offer_ttl=8).model_copy(update={"offer_burst_max": 3}), fanout=1)
    st = await r.play(wf, lambda s: len(offers(s, "open")) == 3, silent=("physician",))
    check(len(offers(st, "expired")) == 1 and len(st["offers"]) == 4, f"widened to the cap: {st['offers']}")
    check(len({o["npi"] for o in st["offers"]}) == 4, "nobody offered twice while fresh physicians were left")
    history = await accept_widened(r, wf, raw, offers(st, "open")[0]["npi"], "offers widened to 3 open at once (cap 3)")
    check(patches.SLA_BURST in patch_markers(history), "patch sla-burst marked")
    return history


async def accept_widened(r: Rec, wf: str, raw: dict, winner: str, timeline_note: str) -> WorkflowHistory:
    """One of the widened offers is accepted -> launched; the other two withdrawn (each physician told), the
    widening on the timeline (``timeline_note``) and ops told once. The launched run's history."""
    await r.post(f"/onboardings/{wf}/offers/{winner}/accept")
    history = await r.launched(wf)
    st = await r.status(wf)
    check(st["physician_npi"] == winner and len(offers(st, "withdrawn")) == 2, "one accept withdrew the other two")
    check(noted(st, timeline_note), "the widening is on the timeline")
    told = [s.strip() for s in subjects(r)]
    check(told.count("Offers widened for " + wf) == 1, "ops told once")
    check(told.count(f"Offer withdrawn: {raw['clinic_name']}") >= 2, "the withdrawn physicians told")
    return history


# ---------------------------------------------------------------- release 4: early SLA-pressure widening (issue 13)
#: Five Rhode Island physicians (the demo roster has nobody there) for the early-widening path.
RI_NPIS = tuple(npi_with_check_digit(f"140100{i}01") for i in range(1, 6))


async def sla_widen_early(r: Rec) -> WorkflowHistory:
    """A Rhode Island clinic, fan-out 1, five eligible physicians, ``offer_burst_max`` 3 and
    ``offer_widen_after`` 4 s (the offer lives 10 min): nobody answers the first offer, so 4 s after it the
    offers widen to 3 open (the cap) without any expiry, ops told once; one of them accepts, the other two
    are withdrawn -> launched."""
    await import_roster(r, roster_csv([
        f"{npi},Roe{i},Ocean,MD,roe{i}.ocean@md.example,+1401555010{i},RI,RI:RI4010{i}:2029-10-31,,"
        "neurotoxins;dermal_fillers;laser,5,0,2029-06-30,dermatology,true," for i, npi in enumerate(RI_NPIS)]))
    raw = clinic_in("RI", "ocean-state-widen-early", "Ocean State Aesthetics LLC", "Providence", "02903")
    t = BASE.model_copy(update={"offer_burst_max": 3, "offer_widen_after": timedelta(seconds=4)})
    wf = await r.start_intake(raw, t, fanout=1)
    st = await r.play(wf, lambda s: len(offers(s, "open")) == 3, silent=("physician",))
    check(not offers(st, "expired") and len(st["offers"]) == 3, f"widened to the cap, nothing expired: {st['offers']}")
    history = await accept_widened(r, wf, raw, offers(st, "open")[-1]["npi"],
                                   "no physician accepted within 4 s of the first offer")
    markers = patch_markers(history)
    check(patches.SLA_WIDEN_EARLY in markers and patches.SLA_BURST not in markers, "sla-widen-early marked, no expiry")
    return history


# ---------------------------------------------------------------- release 4: the protocol packet signed (issue 11)
async def protocol_packet_signed(r: Rec) -> WorkflowHistory:
    """The Austin clinic with its NP's e-mail: once the protocols are approved the protocol packet goes
    out as an envelope of its own kind, the director signs and the NP acknowledges; only then stage 4,
    stage 5's agreements and the launch."""
    raw = json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text())
    raw = {**raw, "clinic_key": "glow-austin-packet",
           "midlevels": [{**m, "email": f"np{i}@glow.example"} for i, m in enumerate(raw["midlevels"])]}
    wf = await r.start_intake(raw)
    history = await r.launched(wf)
    st = await r.status(wf)
    packets = [e for e in st["envelopes"] if e["agreement_kind"] == "protocol_packet"]
    check(len(packets) == 1 and packets[0]["status"] == "completed", f"one protocol packet, completed: {packets}")
    check(noted(st, f"acknowledged by {len(raw['midlevels'])} practitioner(s)"), "the midlevels acknowledged it")
    (sent,) = await asyncio.to_thread(list_envelopes, r.settings, f"{wf}:protocol_packet:")
    check(len(sent["recipients"]) == 1 + len(raw["midlevels"]), f"director and midlevels routed: {sent['recipients']}")
    check(patches.PROTOCOL_PACKET_SIGNED in patch_markers(history), "patch protocol-packet-signed marked")
    return history


# ---------------------------------------------------------------- release 4: a confirmation before its packet (issue 12)
async def early_confirm(r: Rec) -> WorkflowHistory:
    """The Austin clinic; every demo pharmacy's confirmation is signalled right after the start, before any
    packet (as a workflow reset re-applies them ahead of the sends it re-runs): the pharmacy the onboarding
    asks is confirmed when its packet goes out, with no answer after it; the others' stay unused -> launched."""
    raw = {**json.loads((DEMO_DIR / "intakes" / "glow-austin.json").read_text()), "clinic_key": "glow-austin-early"}
    wf = await r.start_intake(raw)
    ids = [row["pharmacy_id"] for row in csv.DictReader(io.StringIO((DEMO_DIR / "pharmacies.csv").read_text()))]
    handle = r.client.get_workflow_handle(wf)
    for pharmacy_id in ids:
        await handle.signal(OnboardingWorkflow.confirm_pharmacy, PharmacyConfirmation(pharmacy_id=pharmacy_id))
    history = await r.launched(wf)
    st = await r.status(wf)
    check(st["pharmacies"] and all(p["status"] == "confirmed" for p in st["pharmacies"]), f"confirmed: {st['pharmacies']}")
    check(patches.EARLY_CONFIRM_KEPT in patch_markers(history), "patch early-confirm-kept marked")
    return history


# ---------------------------------------------------------------- release 4: answer writes as local activities (issue 12)
def local_activity_types(history: WorkflowHistory) -> list[str]:
    """The activity types of the history's local-activity markers (``core_local_activity``)."""
    found = []
    for e in history.events:
        a = e.marker_recorded_event_attributes
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and a.marker_name == "core_local_activity":
            found += [json.loads(p.data).get("activity_type", "") for p in a.details["data"].payloads]
    return found


async def answer_writes_queued(r: Rec) -> WorkflowHistory:
    """Peak Denver (ops approve the plan), two offers: one physician declines, the other accepts, the
    protocols approved, the pharmacies confirm. A new run records answer-writes-queued-v2, so the writes
    those answers wait on are ordinary activities again (onboarding_answer_writes_local_v4, recorded from
    a5389d9, holds the withdrawn local-activity path) -> launched."""
    wf = await r.start("peak-denver", "peak-denver-queued-writes", fanout=2)
    st = await r.play(wf, lambda s: len(offers(s, "open")) == 2, silent=("physician",))
    await r.post(f"/onboardings/{wf}/offers/{offers(st, 'open')[0]['npi']}/decline")
    history = await r.launched(wf)
    check(not local_activity_types(history), f"no local activity: {local_activity_types(history)}")
    remote = {e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
              if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    check({"record_decision", "reserve_physician", "record_offer"} <= remote, f"on the queue: {remote}")
    markers = patch_markers(history)
    check(patches.ANSWER_WRITES_QUEUED in markers and patches.ANSWER_WRITES_LOCAL not in markers,
          f"answer-writes-queued-v2 marked, answer-writes-local-v1 not: {markers}")
    return history


# ---------------------------------------------------------------- release 3: oversight after launch (issue 9)
#: A New Hampshire director (the demo roster has nobody there) whose licence a re-import shows lapsed.
NH_NPI = npi_with_check_digit("160300501")


def nh_director(license_expires: str, active_clinics: int) -> str:
    return (f"{NH_NPI},Nora,Hale,MD,nora.hale@md.example,+16035550101,NH,NH:NH60301:{license_expires},,"
            f"neurotoxins;dermal_fillers;laser,5,{active_clinics},2029-06-30,dermatology,true,")


async def launched_with_oversight(r: Rec, wf: str) -> str:
    """Play to launch and let the onboarding complete; the id of the oversight it started (left running)."""
    st = await r.play(wf)
    await asyncio.wait_for(r.client.get_workflow_handle(wf).result(), 60)
    return st["oversight_workflow_id"]


async def cycles_done(r: Rec, oversight: str, at_least: int, within: float = 90) -> OversightStatus:
    handle = r.client.get_workflow_handle(oversight)
    deadline = time.monotonic() + within
    while (status := await handle.query(OversightWorkflow.status, result_type=OversightStatus)).cycles_done < at_least:
        check(time.monotonic() < deadline, f"{oversight}: {at_least} chart-review cycles within {within:.0f} s")
        await asyncio.sleep(0.3)
    return status


async def triggered_sweep(r: Rec):
    """Ops trigger the ``mdco-compliance-sweep`` Schedule now (Temporal UI): its run and summary."""
    schedule = r.client.get_schedule_handle(COMPLIANCE_SCHEDULE_ID)
    before = {a.action.workflow_id for a in (await schedule.describe()).info.recent_actions}
    await schedule.trigger()
    deadline = time.monotonic() + 30
    while not (started := [a.action for a in (await schedule.describe()).info.recent_actions
                           if a.action.workflow_id not in before]):
        check(time.monotonic() < deadline, "the triggered sweep started within 30 s")
        await asyncio.sleep(0.3)
    sweep = r.client.get_workflow_handle(started[0].workflow_id, run_id=started[0].first_execution_run_id,
                                         result_type=SweepSummary)
    return sweep, await asyncio.wait_for(sweep.result(), 60)


async def sweep_starts_replacement(r: Rec) -> WorkflowHistory:
    """Release 4 (issue 9): a New Hampshire clinic's director's licence is re-imported as expired
    yesterday; the triggered sweep suspends NH, signals the oversight run and, behind
    ``sweep-starts-replacement-v1``, starts the replacement placement itself (``start_replacement``);
    the oversight run shows ``replacing``."""
    await import_roster(r, roster_csv([nh_director("2029-10-31", 0)]))
    raw = clinic_in("NH", "granite-keene-replaced", "Granite Aesthetics Keene LLC", "Keene", "03431")
    wf = await r.start_intake(raw, timing(chart_review_every=60), fanout=1)
    oversight = await launched_with_oversight(r, wf)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    await import_roster(r, roster_csv([nh_director(yesterday, 1)]))
    sweep, summary = await triggered_sweep(r)
    check(summary.suspended == ["granite-keene-replaced:NH"], f"the sweep suspended NH for the clinic: {summary}")
    handle = r.client.get_workflow_handle(oversight)
    deadline = time.monotonic() + 30
    while (state := await handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)).status \
            != "replacing":
        check(time.monotonic() < deadline, f"the oversight run shows the replacement within 30 s: {state}")
        await asyncio.sleep(0.3)
    history = await r.history(sweep.id, sweep.run_id)
    check(patches.SWEEP_STARTS_REPLACEMENT in patch_markers(history), "patch sweep-starts-replacement marked")
    check(any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
              and e.activity_task_scheduled_event_attributes.activity_type.name == "start_replacement"
              for e in history.events), "the sweep started the replacement (start_replacement)")
    return history


async def compliance_lapse(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """A New Hampshire clinic launches with a director licensed there; a roster re-import then shows the
    licence expired yesterday. Ops trigger the ``mdco-compliance-sweep`` Schedule now (Temporal UI): the
    sweep finds the lapse, suspends NH for the clinic and signals ``compliance_alert``; the oversight run
    shows ``suspended`` and goes on with its chart reviews until it continues as new (12 cycles, 3 s)."""
    await import_roster(r, roster_csv([nh_director("2029-10-31", 0)]))
    raw = clinic_in("NH", "granite-nashua-lapse", "Granite Aesthetics Nashua LLC", "Nashua", "03060")
    wf = await r.start_intake(raw, timing(chart_review_every=3), fanout=1)
    oversight = await launched_with_oversight(r, wf)
    handle = r.client.get_workflow_handle(oversight)
    first_run = (await handle.describe()).run_id
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    await import_roster(r, roster_csv([nh_director(yesterday, 1)]))
    sweep, summary = await triggered_sweep(r)
    check(summary.suspended == ["granite-nashua-lapse:NH"] and [a.kind for a in summary.alerts] == ["lapse"],
          f"the sweep suspended NH for the clinic: {summary}")
    state = await handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)
    check(state.status == "suspended" and state.suspended_states == ["NH"], f"oversight suspended in NH: {state}")
    deadline = time.monotonic() + 90
    while (await handle.describe()).run_id == first_run:
        check(time.monotonic() < deadline, "continue-as-new within 90 s")
        await asyncio.sleep(0.5)
    after = await handle.query(OversightWorkflow.compliance, result_type=OversightCompliance)
    check(after.suspended_states == ["NH"], f"the suspension carried into the next run: {after}")
    await handle.terminate(REASON)  # the next run is not recorded
    first = await r.history(oversight, first_run)
    check(any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
              and e.workflow_execution_signaled_event_attributes.signal_name == "compliance_alert"
              for e in first.events), "compliance_alert signalled to the oversight run")
    check(first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
          "the oversight run continued as new")
    check(patches.OVERSIGHT_COMPLIANCE in patch_markers(first), "patch oversight-compliance marked")
    return first, await r.history(sweep.id, sweep.run_id)


#: The adverse-event deadline of the recording (the CLI takes the policy's: sentinel 1 h).
EVENT_ACK_DEADLINE = timedelta(seconds=4)


async def event_escalated_and_offboarded(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """A launched clinic reports a sentinel adverse event; its director does not acknowledge it, so
    ``AdverseEventWorkflow`` escalates it to ops at the deadline (compressed to 4 s: the recorder writes
    the event and starts the watch as ``mdco events report`` does). After two chart-review cycles ops run
    ``mdco offboard``: the oversight ends with the ``offboard_clinic`` activity and completes."""
    wf = await r.start("glow-austin", "glow-austin-offboard", timing(chart_review_every=4))
    oversight = await launched_with_oversight(r, wf)
    clinic_key = oversight.removeprefix("oversight-")
    event_id, at = f"{clinic_key}-ae-record1", datetime.now(UTC)
    engine = engine_from_settings(r.settings)
    try:
        store_oversight.report_event(engine, event_id, clinic_key, "sentinel", "syncope after filler: " + REASON,
                                     at, at + EVENT_ACK_DEADLINE)
    finally:
        engine.dispose()
    watch = await r.client.start_workflow(
        AdverseEventWorkflow.run, AdverseEventWatch(event_id=event_id, clinic_key=clinic_key, severity="sentinel",
                                                    ack_due_at=at + EVENT_ACK_DEADLINE),
        id=f"adverse-event-{event_id}", task_queue=r.settings.task_queue)
    check(await asyncio.wait_for(watch.result(), 60) == "escalated", "the unacknowledged event escalated")
    engine = engine_from_settings(r.settings)
    try:
        event = store_oversight.get_event(engine, event_id)
    finally:
        engine.dispose()
    check(event is not None and event["status"] == "escalated", f"the event escalated in the store: {event}")
    await cycles_done(r, oversight, 2)
    await r.cli("offboard", clinic_key, "--reason", "clinic closed its medical spa line: " + REASON)
    history = await r.history(oversight)
    check(history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, "oversight completed")
    check(any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
              and e.activity_task_scheduled_event_attributes.activity_type.name == "offboard_clinic"
              for e in history.events), "offboard_clinic ran")
    check(patches.OVERSIGHT_COMPLIANCE in patch_markers(history), "patch oversight-compliance marked")
    return history, await r.history(watch.id)


async def replacement_placement(r: Rec) -> tuple[WorkflowHistory, WorkflowHistory]:
    """A launched clinic's director leaves: ops run ``mdco replace``; the replacement placement
    (``onboarding-<key>-r1``) matches without the outgoing director, is played to launch and hands the
    clinic over to the same oversight workflow (``director_replaced``), which ops then offboard."""
    wf = await r.start("glow-austin", "glow-austin-replaced", timing(chart_review_every=4))
    oversight = await launched_with_oversight(r, wf)
    clinic_key = oversight.removeprefix("oversight-")
    outgoing = (await r.status(wf))["physician_npi"]
    started = json.loads(await r.cli("replace", clinic_key, "--reason", "director relocating: " + REASON, "--json"))
    check(started["status"] == "started", f"replacement started: {started}")
    replacement = started["workflow_id"]
    st = await r.play(replacement)
    await asyncio.wait_for(r.client.get_workflow_handle(replacement).result(), 60)
    check(st["physician_npi"] != outgoing and all(o["npi"] != outgoing for o in st["offers"]),
          "the outgoing director was never offered the replacement")
    handle = r.client.get_workflow_handle(oversight)
    deadline = time.monotonic() + 30
    while (await handle.query(OversightWorkflow.status, result_type=OversightStatus)).physician_npi != st["physician_npi"]:
        check(time.monotonic() < deadline, "the oversight took the new director over within 30 s")
        await asyncio.sleep(0.3)
    await r.cli("offboard", clinic_key, "--reason", "recorded after the replacement: " + REASON)
    history = await r.history(oversight)
    check(any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
              and e.workflow_execution_signaled_event_attributes.signal_name == "director_replaced"
              for e in history.events), "director_replaced signalled to the oversight run")
    check(history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, "oversight completed")
    return await r.history(replacement), history


@dataclass(frozen=True)
class Scenario:
    names: tuple[str, ...]  # without the release suffix; a path may give several histories
    run: Callable[[Rec], Awaitable]
    encrypted: bool = False
    releases: frozenset[str] = frozenset({"v1"})  # the releases whose code this path is recorded from
    own_stack: bool = False  # turns a server-wide knob: runs on a stack of its own


V2 = frozenset({"v2"})
V3 = frozenset({"v3"})
V4 = frozenset({"v4"})


SCENARIOS = [
    Scenario(("onboarding_launched_plan_review",), plan_review),
    Scenario(("onboarding_decline_then_accept",), decline_then_accept),
    Scenario(("onboarding_offer_expiry_widening",), offer_expiry_widening),
    Scenario(("onboarding_sla_at_risk_breached",), sla_at_risk_breached),
    Scenario(("onboarding_ops_assign",), ops_assign),
    Scenario(("onboarding_cancel_ops",), cancel_ops),
    Scenario(("onboarding_cancel_temporal",), cancel_temporal),
    Scenario(("onboarding_agreements_declined_resent",), agreements_declined_resent),
    Scenario(("onboarding_agreement_expiry_resend",), agreement_expiry_resend),
    Scenario(("onboarding_pharmacy_reminder_escalation",), pharmacy_reminder_escalation),
    Scenario(("oversight_cycles_continue_as_new", "oversight_after_continue_as_new"), oversight_runs),
    Scenario(("onboarding_launched_encrypted",), launched_encrypted, encrypted=True),
    # release 2
    Scenario(("onboarding_decline_then_accept",), decline_then_accept_v2, releases=V2),
    Scenario(("onboarding_blocked_retry", "onboarding_blocked_cancel"), blocked_retry_and_cancel,
             releases=V2, own_stack=True),
    Scenario(("onboarding_sla_breached_late",), sla_breached_late, releases=V2),
    Scenario(("onboarding_roster_wait_continue_as_new", "onboarding_roster_wait_after_continue_as_new"),
             roster_wait_continue_as_new, releases=V2),
    Scenario(("onboarding_cancel_racing_accept",), cancel_racing_accept, releases=V2),
    # release 3: later offer rounds
    Scenario(("onboarding_second_offer_round",), second_offer_round, releases=V3),
    # release 3: oversight after launch (issue 9); the sweep covers every live clinic: a stack of its own
    Scenario(("oversight_compliance_lapse_continue_as_new", "compliance_sweep_lapse"), compliance_lapse,
             releases=V3, own_stack=True),
    Scenario(("oversight_offboarded", "adverse_event_escalated"), event_escalated_and_offboarded, releases=V3),
    Scenario(("onboarding_replacement_placement", "oversight_director_replaced"), replacement_placement,
             releases=V3),
    # release 4: an expired offer re-offered at once when nobody fresh is left (issue 13)
    Scenario(("onboarding_reoffer_at_expiry",), reoffer_at_expiry, releases=V4),
    # release 4: at the first expired offer the offers widen up to Timing.offer_burst_max (issue 13)
    Scenario(("onboarding_sla_burst",), sla_burst, releases=V4),
    # release 4: the same widening when nobody accepted Timing.offer_widen_after after the first offer (issue 13)
    Scenario(("onboarding_sla_widen_early",), sla_widen_early, releases=V4),
    # release 4: the writes an answer waits on queued again (answer-writes-queued-v2, issue 12); the withdrawn
    # local-activity path's history (onboarding_answer_writes_local_v4) was recorded from commit a5389d9
    Scenario(("onboarding_answer_writes_queued",), answer_writes_queued, releases=V4),
    # release 4: the protocol packet signed through the e-sign envelope machinery (issue 11)
    Scenario(("onboarding_protocol_packet_signed",), protocol_packet_signed, releases=V4),
    # release 4: the sweep starts the replacement placement itself (issue 9); the sweep covers every live
    # clinic: a stack of its own
    Scenario(("compliance_sweep_starts_replacement",), sweep_starts_replacement, releases=V4, own_stack=True),
    # release 4: a pharmacy's confirmation before its packet is kept (early-confirm-kept-v1, issue 12: mdco repair)
    Scenario(("onboarding_early_confirm",), early_confirm, releases=V4),
]


# ---------------------------------------------------------------- recording
async def record(scenarios: list[Scenario], files: dict[str, Path], payload_keys: str = "") -> list[str]:
    """Run the scenarios together on one fresh stack; write the ``files`` (name -> path) that replay;
    the problems."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mdco-record-") as tmp:
        settings = stack_settings(Path(tmp), payload_keys=payload_keys, temporal_ui=False)
        with Stack(settings, env=FAST_ENV) as stack:
            settings = stack.settings
            engine = engine_from_settings(settings)
            load_demo_data(engine)
            engine.dispose()
            async with httpx.AsyncClient(base_url=settings.api_base_url, timeout=60,
                                         headers=auth_headers(settings, "ops", "recorder")) as api:
                rec = Rec(settings, await connect(settings), api)
                results = await asyncio.gather(*(sc.run(rec) for sc in scenarios), return_exceptions=True)
            replayer = Replayer(workflows=[OnboardingWorkflow, OversightWorkflow, *COMPLIANCE_WORKFLOWS],
                                data_converter=data_converter(settings))
            for sc, result in zip(scenarios, results):
                if isinstance(result, BaseException):
                    problems.append(f"{', '.join(sc.names)}: {type(result).__name__}: {result}")
                    continue
                for name, history in zip(sc.names, result if isinstance(result, tuple) else (result,)):
                    if name in files:
                        problems += await write(replayer, history, files[name])
    return problems


async def write(replayer: Replayer, history: WorkflowHistory, target: Path) -> list[str]:
    """Replay against this checkout, then create the file (mode "x": never over an existing one)."""
    if history.events[-1].event_type not in CLOSED:
        return [f"{target.name}: the run is still open ({EventType.Name(history.events[-1].event_type)})"]
    try:
        await replayer.replay_workflow(history, raise_on_replay_failure=True)
    except Exception as exc:  # noqa: BLE001 - reported, not written
        return [f"{target.name}: does not replay: {exc}"]
    text = history.to_json() + "\n"
    with open(target, "x") as fh:
        fh.write(text)
    print(f"wrote {target}: {len(history.events)} events, {len(text.encode()) // 1024} KiB")
    return []


def test_key() -> str:
    """The fixed, test-only payload key of the *_encrypted_* histories (created once, then kept)."""
    if not KEY_FILE.exists():
        KEY_FILE.write_text(new_key_spec("replay-test") + "\n")
        print(f"created {KEY_FILE} (a test-only key: never use it anywhere else)")
    return KEY_FILE.read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", metavar="NAME", help="record just this history (its file name without .json)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"directory to write to (default {OUT})")
    parser.add_argument("--release", default="v1", help="file name suffix: the release recorded (default v1)")
    args = parser.parse_args()
    scenarios = [sc for sc in SCENARIOS if args.release in sc.releases]
    if not scenarios:
        parser.error(f"--release: no path is recorded for {args.release!r} (see Scenario.releases)")
    files = {n: args.out / f"{n}_{args.release}.json" for sc in scenarios for n in sc.names}
    if args.only:
        files = {n: f for n, f in files.items() if f.stem == args.only}
        if not files:
            parser.error(f"--only: no scenario records {args.only!r}")
    for name, target in list(files.items()):
        if target.exists():
            print(f"skipped {target}: it exists (recorded histories are never re-recorded)")
            del files[name]
    args.out.mkdir(parents=True, exist_ok=True)
    started, problems = time.monotonic(), []
    todo = [sc for sc in scenarios if any(n in files for n in sc.names)]
    shared = [sc for sc in todo if not sc.encrypted and not sc.own_stack]
    encrypted = [sc for sc in todo if sc.encrypted and not sc.own_stack]
    if shared:  # payloads are encrypted by default now: record with the test key the replay test knows
        problems += asyncio.run(record(shared, files, payload_keys=test_key()))
    if encrypted:
        problems += asyncio.run(record(encrypted, files, payload_keys=test_key()))
    for sc in (sc for sc in todo if sc.own_stack):
        problems += asyncio.run(record([sc], files, payload_keys=test_key()))
    print(f"done in {time.monotonic() - started:.0f} s")
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
