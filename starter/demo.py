"""``mdco demo``: three sample onboardings played to launch by simulated humans.

The humans use the same public paths as real users: the HTTP API for physicians and pharmacies,
and the local e-sign server's signing (whose Connect webhook reaches the API, HMAC-signed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from api.auth import auth_headers
from config import Settings

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
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
    """One sample onboarding and what the simulated humans already did for it."""

    intake: dict
    decline_first: bool = False
    status: dict = field(default_factory=dict)
    declined: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)

    @property
    def workflow_id(self) -> str:
        return f"onboarding-{self.intake['clinic_key']}"


def load_demo_data(engine):
    """Upsert the shipped roster and pharmacies (re-import resets the demo's capacity counters);
    the two import summaries."""
    from domain.roster import parse_pharmacies, parse_physicians
    from store import roster

    physicians, errors = parse_physicians((DEMO_DIR / "physicians.csv").read_text(), "csv")
    pharmacies, errors2 = parse_pharmacies((DEMO_DIR / "pharmacies.csv").read_text(), "csv")
    if errors or errors2:
        raise RuntimeError(f"shipped demo data is invalid: {(errors + errors2)[:3]}")
    return roster.upsert_physicians(engine, physicians), roster.upsert_pharmacies(engine, pharmacies)


def seed(settings: Settings, console: Console) -> None:
    from store.db import engine_from_settings

    a, b = load_demo_data(engine_from_settings(settings))
    console.print(f"seeded {a.created + a.updated} physicians, {b.created + b.updated} pharmacies")


def sample_clinics(run_id: str) -> list[Clinic]:
    clinics = []
    for i, path in enumerate(sorted((DEMO_DIR / "intakes").glob("*.json"))):
        intake = json.loads(path.read_text())
        intake["clinic_key"] = f"{intake['clinic_key']}-{run_id}"  # each demo run onboards fresh clinics
        clinics.append(Clinic(intake=intake, decline_first=intake["clinic_key"].startswith("sunrise-miami")))
    return clinics


async def play(settings: Settings, clinics: list[Clinic], timeout: float, console: Console) -> bool:
    """Start the onboardings and answer for every human until all launched (or time runs out)."""
    from esign.sandbox import sign_all

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=settings.api_base_url, timeout=15.0,
                                 headers=auth_headers(settings, "ops", "demo")) as api:
        for c in clinics:
            r = await api.post("/onboardings", json=c.intake)
            if r.status_code not in (200, 202):
                raise RuntimeError(f"starting {c.workflow_id} failed: {r.status_code} {r.text}")
        with Live(render(clinics), console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                for c in clinics:
                    r = await api.get(f"/onboardings/{c.workflow_id}")
                    if r.status_code == 200:
                        c.status = r.json()
                        await act(api, settings, c, sign_all)
                live.update(render(clinics))
                if all(c.status.get("stage") == "launched" for c in clinics):
                    return True
                await asyncio.sleep(0.4)
    return False


async def act(api: httpx.AsyncClient, settings: Settings, c: Clinic, sign_all) -> None:
    """What each simulated human does when the onboarding waits on them."""
    st, wf = c.status, c.workflow_id
    if st["stage"] == "needs_assessment" and st["waiting_on"] == "ops" and "plan" not in c.done:
        c.done.add("plan")  # ops review the blocking findings and accept the plan, through the CLI
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "starter", "plan", "approve", wf, "--reason",
            "documented patient-specific clinical need; compounding pharmacy verified",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"mdco plan approve {wf} failed: {stderr.decode()[-500:]}")
    elif st["stage"] == "matching" and not st.get("physician_npi"):
        open_offers = [o["npi"] for o in st["offers"] if o["status"] == "open"]
        if open_offers:
            npi = open_offers[0]
            verb = "decline" if c.decline_first and not c.declined else "accept"
            if verb == "decline":
                c.declined.add(npi)
            await api.post(f"/onboardings/{wf}/offers/{npi}/{verb}")
    elif st["stage"] == "protocol_setup" and st["protocols"] and "protocols" not in c.done:
        r = await api.post(f"/onboardings/{wf}/protocols/approve", json={"npi": st["physician_npi"]})
        if r.status_code == 200:
            c.done.add("protocols")
    elif st["stage"] == "pharmacy_coordination":
        for p in st["pharmacies"]:
            if p["status"] != "confirmed" and p["pharmacy_id"] not in c.done:
                r = await api.post(f"/onboardings/{wf}/pharmacies/{p['pharmacy_id']}/confirm")
                if r.status_code == 200:
                    c.done.add(p["pharmacy_id"])
    elif st["stage"] == "agreements" and st["waiting_on"] == "signers" and "signed" not in c.done:
        signed = await asyncio.to_thread(sign_all, settings, wf)
        if signed:
            c.done.add("signed")


def render(clinics: list[Clinic]) -> Table:
    """One row per onboarding: progress through the six stages and what it waits on."""
    table = Table(title="mdco demo — onboardings (stage ● done, ◐ current, ○ ahead)")
    for column in ("onboarding", "progress", "stage", "SLA", "waiting on", "physician", "offers", "envelopes"):
        table.add_column(column, no_wrap=True)
    for c in clinics:
        st = c.status or {}
        current = st.get("stage", "")
        idx = len(STAGES) if current == "launched" else (STAGES.index(current) if current in STAGES else -1)
        progress = "".join("●" if i < idx else ("◐" if i == idx else "○") for i in range(len(STAGES)))
        offers = st.get("offers", [])
        offer_text = ", ".join(f"{sum(o['status'] == k for o in offers)} {k}" for k in
                               ("open", "accepted", "declined", "expired", "withdrawn") if any(o["status"] == k for o in offers))
        envelopes = st.get("envelopes", [])
        env_text = f"{sum(e['status'] == 'completed' for e in envelopes)}/{len(envelopes)} signed" if envelopes else ""
        table.add_row(c.intake["clinic_key"], progress, current, st.get("sla_status", ""), st.get("waiting_on", ""),
                      st.get("physician_npi") or "", offer_text, env_text)
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
        ok = asyncio.run(play(settings, clinics, timeout, console))
        summary(settings, clinics, stack, console, ok, time.monotonic() - started)
    finally:
        if keep:
            console.print("stack left running (--keep); stop it with `mdco down`")
        else:
            stack.stop()
    return 0 if ok else 1


def summary(settings: Settings, clinics: list[Clinic], stack, console: Console, ok: bool, took: float) -> None:
    since = time.time() - took
    mails = [m for m in settings.mail_dir.glob("*.eml") if m.stat().st_mtime >= since] \
        if settings.mail_dir.exists() else []
    docs = [d for c in clinics for d in (settings.documents_dir / c.workflow_id).glob("*.pdf")]
    console.print()
    verdict = "[green]all 3 onboardings launched[/]" if ok else "[red]not every onboarding launched in time[/]"
    console.print(f"{verdict} in {took:.1f} s; {len(mails)} e-mails in {settings.mail_dir}/, "
                  f"{len(docs)} signed PDFs in {settings.documents_dir}/")
    urls = stack.urls()
    ui = urls.get("temporal_ui", f"http://127.0.0.1:{settings.temporal_ui_port}")
    console.print(f"Temporal UI: {ui}/namespaces/{settings.temporal_namespace}/workflows")
    console.print("Visibility queries ops type in the UI (or `temporal workflow list --query ...`):")
    for q in VISIBILITY_QUERIES:
        console.print(f"  {q}", highlight=False, markup=False)
