"""``mdco demo``: three sample onboardings played to launch by simulated humans.

The humans use the same public paths as real users: physicians and pharmacies open the links in their
e-mails (from the SMTP sink) and answer on the pages over HTTP (one pharmacy declines, so the next
qualifying one is asked), ops approve a plan with ``mdco``, signers sign on the local e-sign server
(whose Connect webhook reaches the API, HMAC-signed).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from rich.console import Console
from rich.live import Live
from rich.table import Table

from config import Settings
from starter.humans import (DEMO_DIR, Driver, Humans, Mailbox, answer_page, load_demo_data,  # noqa: F401
                            seed_demo_data)

STAGES = ["needs_assessment", "matching", "protocol_setup", "pharmacy_coordination", "agreements", "launched"]
VISIBILITY_QUERIES = [
    "WorkflowType = 'OnboardingWorkflow' AND OnboardingStage = 'matching'",
    "SlaStatus IN ('at_risk', 'breached')",
    "WaitingOn = 'physician'",
    "OnboardingStates IN ('TX')",
    "OnboardingStage = 'launched' AND SlaStatus = 'met'",
]


@dataclass
class Clinic:
    """One sample onboarding and its last status."""

    intake: dict
    decline_first: bool = False
    decline_pharmacy: bool = False
    status: dict = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        return f"onboarding-{self.intake['clinic_key']}"


def seed(settings: Settings, console: Console) -> None:
    a, b = seed_demo_data(settings)
    console.print(f"seeded {a.created + a.updated} physicians, {b.created + b.updated} pharmacies")


def sample_clinics(run_id: str) -> list[Clinic]:
    clinics = []
    for i, path in enumerate(sorted((DEMO_DIR / "intakes").glob("*.json"))):
        intake = json.loads(path.read_text())
        intake["clinic_key"] = f"{intake['clinic_key']}-{run_id}"  # each demo run onboards fresh clinics
        # Sunrise's first physician declines; Glow's first pharmacy (Lone Star) declines and National
        # Compounding, which also fills testosterone in TX and OK, is asked next
        clinics.append(Clinic(intake=intake, decline_first=intake["clinic_key"].startswith("sunrise-miami"),
                              decline_pharmacy=intake["clinic_key"].startswith("glow-austin")))
    return clinics


async def play(settings: Settings, clinics: list[Clinic], timeout: float, console: Console,
               since: float = 0.0) -> bool:
    """Start the onboardings and answer for every human (``starter.humans``: physicians and pharmacies on
    the answer pages from their e-mails, ops approve the plan through the CLI, Sunrise's first physician
    and Glow's first pharmacy decline) until all launched (or time runs out)."""
    by_wf = {c.workflow_id: c for c in clinics}
    humans = Humans(decline_first={c.workflow_id for c in clinics if c.decline_first}, plan_via_cli=True,
                    plan_reason="documented patient-specific clinical need; compounding pharmacy verified",
                    decline_pharmacy={c.workflow_id for c in clinics if c.decline_pharmacy}, via_pages=True)

    def seen(wf: str, status: dict) -> None:
        by_wf[wf].status = status

    driver = Driver(settings, humans, poll_max_s=0.4, on_status=seen, subject="demo", mail_since=since)
    with Live(render(clinics), console=console, refresh_per_second=4) as live:
        run = asyncio.create_task(driver.run([c.intake for c in clinics], timeout=timeout))
        while not run.done():
            live.update(render(clinics))
            await asyncio.wait({run}, timeout=0.25)
        live.update(render(clinics))
    try:
        run.result()
    except TimeoutError:
        return False
    return True


OFFER_MARKS = (("accepted", "✓"), ("declined", "✗"), ("open", " open"), ("expired", " expired"),
               ("withdrawn", " withdrawn"))
PHARMACY_MARKS = (("confirmed", "✓"), ("declined", "✗"), ("packet_sent", " asked"))


def _counts(items: list[dict], marks: tuple[tuple[str, str], ...]) -> str:
    """``1✓ 1✗ 2 withdrawn``: how many items are in each status (the table must fit 150 columns)."""
    return " ".join(f"{sum(i['status'] == k for i in items)}{mark}" for k, mark in marks
                    if any(i["status"] == k for i in items))


def render(clinics: list[Clinic]) -> Table:
    """One row per onboarding: progress through the six stages and what it waits on."""
    table = Table(title="mdco demo — onboardings (stage ● done, ◐ current, ○ ahead; offers ✓ accepted, ✗ declined; "
                        "pharmacies ✓ confirmed, ✗ declined)")
    for column in ("onboarding", "progress", "stage", "SLA", "waiting on", "physician", "offers", "pharmacies",
                   "envelopes"):
        table.add_column(column, no_wrap=True)
    for c in clinics:
        st = c.status or {}
        current = st.get("stage", "")
        idx = len(STAGES) if current == "launched" else (STAGES.index(current) if current in STAGES else -1)
        progress = "".join("●" if i < idx else ("◐" if i == idx else "○") for i in range(len(STAGES)))
        offer_text = _counts(st.get("offers", []), OFFER_MARKS)
        pharmacy_text = _counts(st.get("pharmacies", []), PHARMACY_MARKS)
        envelopes = st.get("envelopes", [])
        env_text = f"{sum(e['status'] == 'completed' for e in envelopes)}/{len(envelopes)} signed" if envelopes else ""
        table.add_row(c.intake["clinic_key"], progress, current, st.get("sla_status", ""), st.get("waiting_on", ""),
                      st.get("physician_npi") or "", offer_text, pharmacy_text, env_text)
    return table


def run_demo(settings: Settings, *, keep: bool, timeout: float, console: Console) -> int:
    """The whole demo; returns the exit code (0 when all three onboardings launched)."""
    from starter.stack import Stack, StackError

    os.environ["MDCO_TIMING_PROFILE"] = "demo"  # children inherit it: timers in seconds
    settings = Settings()
    started = time.monotonic()
    stack = Stack(settings)
    try:
        stack.start(detach=keep)
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    ok = False
    try:
        seed(settings, console)
        run_id = datetime.now(timezone.utc).strftime("%m%d%H%M%S")
        clinics = sample_clinics(run_id)
        ok = asyncio.run(play(settings, clinics, timeout, console, since=time.time() - 1))
        link = oversight_after_launch(settings, [c.intake["clinic_key"] for c in clinics], console) if ok else None
        summary(settings, clinics, stack, console, ok, time.monotonic() - started)
        if link:
            console.print("Open in a browser, as the director, a chart review waiting for its answer:")
            console.print(link, highlight=False, markup=False, soft_wrap=True)  # one line: copyable whole
            if not keep:
                console.print("(the stack stops now; run `mdco demo --keep` to open the link while it runs)")
    finally:
        if keep:
            console.print("stack left running (--keep); stop it with `mdco down`")
        else:
            stack.stop()
    return 0 if ok else 1


def _mdco(console: Console, *args: str) -> subprocess.CompletedProcess:
    """Run ``mdco ARGS`` as ops or the director would (the same CLI code), echoing the command and its output."""
    console.print(f"$ mdco {shlex.join(args)}", style="bold", highlight=False, markup=False)
    proc = subprocess.run([sys.executable, "-m", "starter", *args], capture_output=True, text=True, timeout=60)
    console.print((proc.stdout + (proc.stderr if proc.returncode else "")).rstrip(), highlight=False, markup=False)
    return proc


def renewal_step_as_of(views: list, clinic_keys: list[str]) -> tuple[date, object, str] | None:
    """A sweep date that puts a credential of one of ``clinic_keys`` on a ladder step not yet notified:
    the earliest such date, never past any live clinic's expiry (so the demo's sweep lapses nothing);
    with the credential and its clinic."""
    if not views:
        return None
    latest_safe = min(v.expires_on for v in views) - timedelta(days=1)
    candidates = [(v.expires_on - timedelta(days=step), v, key) for v in views for key in clinic_keys
                  if key in v.clinics for step in (90, 60, 30, 14, 7) if step not in v.notified_steps]
    candidates = [c for c in candidates if c[0] <= latest_safe]
    return min(candidates, key=lambda c: c[0]) if candidates else None


def open_first_review(settings: Settings, acts, clinic_key: str, npi: str, percent: int) -> tuple[str, int, str | None]:
    """Open the clinic's first chart-review cycle now (brought forward: the oversight workflow's own cycle 1
    finds it open already), which e-mails its director the review's link; the review id, its sample size and
    the link from the e-mail."""
    from domain.codes import oversight_id_for
    from domain.messages import ChartReviewRequest
    from domain.onboarding import Timing
    from store import oversight
    from store.tables import now_utc

    review_id = f"{clinic_key}-cr-1"
    acts.open_chart_review(ChartReviewRequest(clinic_key=clinic_key, physician_npi=npi, cycle=1, sample_percent=percent,
                                              due_at=now_utc() + Timing.demo().chart_review_deadline,
                                              protocol_review_every=Timing.demo().protocol_review_every))
    review = oversight.get_review(acts.engine, review_id) or {}
    url = Mailbox(settings, since=time.time() - 120).link(oversight_id_for(clinic_key), "review", npi, review_id)
    return review_id, int(review.get("sample_charts") or 5), url


def _director(engine, clinic_key: str) -> tuple[str | None, int]:
    """The clinic's director while it is under oversight (else None) and its plan's chart-review percent."""
    from store import onboardings

    clinic = onboardings.get_clinic(engine, clinic_key) or {}
    plan = (onboardings.get_onboarding(engine, f"onboarding-{clinic_key}") or {}).get("plan") or {}
    npi = clinic.get("physician_npi") if clinic.get("status") == "active" else None
    return npi, int((plan.get("chart_review") or {}).get("percent") or 5)


def oversight_after_launch(settings: Settings, clinic_keys: list[str], console: Console) -> str | None:
    """After launch, for one launched clinic: the director opens the first chart review from its e-mail and
    submits it on the page, the compliance sweep sends a renewal notice (``mdco oversight sweep --as-of``: the
    day a credential of the clinic reaches a ladder step), and ``mdco oversight status`` sums its oversight
    up. Another clinic's first review is left waiting: its link (returned) is for a person to open."""
    from activities.onboarding import OnboardingActivities
    from activities.oversight import OversightActivities
    from store.db import engine_from_settings

    engine = engine_from_settings(settings)
    acts = OversightActivities(OnboardingActivities(settings, engine))
    step = renewal_step_as_of(acts.renewals(date.today()), clinic_keys)
    clinic_key = step[2] if step else clinic_keys[0]
    console.print()
    console.rule(f"oversight after launch: {clinic_key}")
    npi, percent = _director(engine, clinic_key)
    if not npi:
        console.print(f"{clinic_key} is not under oversight")
        return None
    review_id, charts, url = open_first_review(settings, acts, clinic_key, npi, percent)
    submitted = url is not None and asyncio.run(answer_page(url, "submit", {
        "charts": str(charts), "deficiencies": "0", "notes": "demo: sample reviewed, no deficiencies"}))
    console.print(f"the director opened chart review {review_id} from its e-mail and "
                  f"{'submitted it on the page' if submitted else 'could NOT submit it'} ({charts} charts, "
                  f"0 deficiencies): {url}", highlight=False)
    if step is None:
        _mdco(console, "renewals", "--within", "400")
    else:
        as_of, view, _ = step
        console.print(f"{view.credential} {view.state} of {view.holder_id} expires {view.expires_on}: "
                      f"the sweep as of {as_of} is on its {(view.expires_on - as_of).days}-day step", highlight=False)
        _mdco(console, "oversight", "sweep", "--as-of", as_of.isoformat())
    _mdco(console, "oversight", "status", clinic_key)
    waiting = next(((k, n, p) for k in clinic_keys if k != clinic_key for n, p in [_director(engine, k)] if n), None)
    return open_first_review(settings, acts, waiting[0], waiting[1], waiting[2])[2] if waiting else None


def summary(settings: Settings, clinics: list[Clinic], stack, console: Console, ok: bool, took: float) -> None:
    since = time.time() - took
    mails = [m for m in settings.mail_dir.glob("*.eml") if m.stat().st_mtime >= since] \
        if settings.mail_dir.exists() else []
    docs = [d for c in clinics for d in (settings.documents_dir / c.workflow_id).glob("*.pdf")]
    console.print()
    verdict = "[green]all 3 onboardings launched[/]" if ok else "[red]not every onboarding launched in time[/]"
    console.print(f"{verdict} in {took:.1f} s; {len(mails)} e-mails in {settings.mail_dir}/, "
                  f"{len(docs)} signed PDFs in {settings.documents_dir}/")
    for c in clinics:  # stage 3's protocol packet (its own envelope): who signed and acknowledged it
        signed = [t["event"] for t in (c.status or {}).get("timeline", []) if t["event"].startswith("protocol packet")]
        console.print(f"  {c.intake['clinic_key']}: {signed[-1] if signed else 'protocol packet not signed'}")
    urls = stack.urls()
    ui = urls.get("temporal_ui", f"http://127.0.0.1:{settings.temporal_ui_port}")
    console.print(f"Temporal UI: {ui}/namespaces/{settings.temporal_namespace}/workflows")
    console.print("Visibility queries ops type in the UI (or `temporal workflow list --query ...`):")
    for q in VISIBILITY_QUERIES:
        console.print(f"  {q}", highlight=False, markup=False)
