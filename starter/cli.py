"""``mdco``: what sales, ops and the simulated humans of the demo type (CONTRACT.md).

Exit codes: 0 done, 1 refused or failed, 2 invalid input (every problem listed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from config import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Onboard clinics onto a supervising medical director, durably (Temporal).")
roster_app = typer.Typer(no_args_is_help=True, help="Physician roster.")
pharmacies_app = typer.Typer(no_args_is_help=True, help="Compounding pharmacies.")
plan_app = typer.Typer(no_args_is_help=True, help="Ops decisions on the oversight plan.")
offer_app = typer.Typer(no_args_is_help=True, help="A physician's answer to an offer.")
protocols_app = typer.Typer(no_args_is_help=True, help="The protocols prepared for an onboarding, and their approval.")
pharmacy_app = typer.Typer(no_args_is_help=True, help="A pharmacy's answer.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Local e-sign server only.")
agreements_app = typer.Typer(no_args_is_help=True, help="Ops decisions on agreements.")
keys_app = typer.Typer(no_args_is_help=True, help="Payload encryption keys (MDCO_PAYLOAD_KEYS).")
from starter.exclusions_cli import exclusions_app  # noqa: E402
from starter.token_cli import token_app  # noqa: E402

app.add_typer(exclusions_app, name="exclusions")
from starter.oversight_cli import register as _register_oversight; _register_oversight(app)  # noqa: E402,E702
app.add_typer(token_app, name="token")
for sub, name in ((roster_app, "roster"), (pharmacies_app, "pharmacies"), (plan_app, "plan"), (offer_app, "offer"),
                  (protocols_app, "protocols"), (pharmacy_app, "pharmacy"), (sandbox_app, "sandbox"),
                  (agreements_app, "agreements"), (keys_app, "keys")):
    app.add_typer(sub, name=name)

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _run(coro: Any) -> Any:
    """Run one service call; map the service's typed errors to exit codes and clear messages."""
    from api import service

    try:
        return asyncio.run(coro)
    except service.NotFound as exc:
        _fail(str(exc))
    except service.Rejected as exc:
        _fail(f"rejected: {exc}", 2)  # CONTRACT.md: refused commands exit 2 and change nothing
    except service.Invalid as exc:
        _fail(str(exc), 2)
    except service.Unavailable as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        if "connect" in str(exc).lower():
            _fail(f"cannot reach Temporal at {get_settings().temporal_address} (is `mdco up` running?)")
        raise


def _call(operation: Any, *args: Any, **kwargs: Any) -> Any:
    """One ``api.service`` call with a fresh client: ``operation(client, *args, **kwargs)``; the
    invocation's own idempotency key goes with it (an update it sends acts once, even if resent)."""
    from api.idempotency import new_key, use_key

    async def go():
        use_key(new_key())
        return await operation(await _client(), *args, **kwargs)

    return _run(go())


async def _client():
    from mdco_temporal.client import connect

    return await connect(get_settings())


def _engine():
    from store.db import engine_from_settings

    return engine_from_settings(get_settings())


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _read_intake(path: Path):
    from domain.intake import parse_intake

    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        _fail(f"{path}: no such file", 2)
    except json.JSONDecodeError as exc:
        _fail(f"{path}: not valid JSON ({exc})", 2)
    intake, problems = parse_intake(raw)
    if problems:
        err.print(f"[red]{path}: {len(problems)} problem(s), nothing started[/red]")
        for p in problems:
            err.print(f"  {p.field}: {p.reason}", highlight=False)
        raise typer.Exit(2)
    return intake


# ---------------------------------------------------------------------------- imports
def _import(path: Path, kind: str) -> None:
    from domain import roster
    from store.roster import upsert_pharmacies, upsert_physicians

    try:
        fmt = roster.detect_format(path)
        text = path.read_text()
    except (roster.RosterFormatError, FileNotFoundError) as exc:
        _fail(f"{path}: {exc}", 2)
    parse = roster.parse_physicians if kind == "physicians" else roster.parse_pharmacies
    records, errors = parse(text, fmt)
    if errors:
        err.print(f"[red]{path}: {len(errors)} bad row(s); nothing imported[/red]")
        for e in errors:
            err.print(f"  line {e.line}: {e.reason}", highlight=False)
        raise typer.Exit(2)
    upsert = upsert_physicians if kind == "physicians" else upsert_pharmacies
    try:
        summary = upsert(_engine(), records)
    except ValueError as exc:
        _fail(f"{path}: {exc}", 2)
    out.print(f"{kind}: {summary.created} created, {summary.updated} updated")
    if kind == "physicians":  # screen new and updated physicians against the OIG LEIE list on file
        from store.exclusions import screen_after_roster_import

        screened = screen_after_roster_import(_engine(), npis=[r.npi for r in records])
        if screened.list_entries:
            out.print(f"OIG LEIE screen: {screened.screened} screened, {screened.excluded} excluded, "
                      f"{screened.review} flagged for ops review")
        else:
            out.print("OIG LEIE screen skipped: no exclusion list imported yet (mdco exclusions import FILE)")
    _run(_signal_waiting_onboardings())


async def _signal_waiting_onboardings() -> None:
    """Onboardings waiting on the roster (or on pharmacies) try again after an import."""
    from workflows.onboarding import OnboardingWorkflow

    try:
        client = await _client()
        query = "WorkflowType = 'OnboardingWorkflow' AND ExecutionStatus = 'Running' AND WaitingOn IN ('roster', 'ops')"
        async for wf in client.list_workflows(query):
            await client.get_workflow_handle(wf.id).signal(OnboardingWorkflow.roster_updated)
            out.print(f"signalled {wf.id}")
    except RuntimeError:
        pass  # no Temporal running: an import alone is fine


@roster_app.command("import")
def roster_import(file: Path) -> None:
    """Import physicians (CSV or JSON); all-or-nothing, re-import updates by NPI."""
    _import(file, "physicians")


@pharmacies_app.command("import")
def pharmacies_import(file: Path) -> None:
    """Import pharmacies (CSV or JSON); all-or-nothing, re-import updates by pharmacy_id."""
    _import(file, "pharmacies")


# ---------------------------------------------------------------------------- assessment and matching
@app.command()
def assess(file: Path, as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The oversight plan and monthly quote for an intake, starting nothing."""
    from domain.assessment import assess as run_assessment

    intake = _read_intake(file)
    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        _fail(f"--as-of: {as_of!r} is not a date YYYY-MM-DD", 2)
    plan = run_assessment(intake, day)
    if as_json:
        _print_json(plan.model_dump(mode="json"))
        return
    out.print(f"[bold]{intake.clinic_name}[/bold] — plan as of {plan.as_of}; oversight {plan.oversight_mode}")
    table = Table("state", "NP practice", "PA", "ratio caps", "GFE", "DEA", "chart review")
    for st in plan.states.values():
        caps = ", ".join(f"{roles} {cap}" for roles, cap in st.ratio_caps.items()) or str(st.supervision_ratio_cap or "-")
        own = st.chart_review
        table.add_row(st.state, st.np_practice, st.pa_supervision, caps, st.gfe_mode, "yes" if st.dea_required else "no",
                      f"{own.percent}%/{own.cadence_days} d ({own.basis})" if own else "-")
    out.print(table)
    out.print(f"chart review: {plan.chart_review.percent}% every {plan.chart_review.cadence_days} days "
              f"({plan.chart_review.basis}; the strictest over the states)")
    for f in plan.findings:
        out.print(f"[{'red' if f.severity == 'blocking' else 'yellow'}]{f.severity}[/] {f.rule_id}: {f.message}")
    out.print(f"[bold]quote: ${plan.quote.monthly_usd}/month[/bold]")
    for line in plan.quote.lines:
        out.print(f"  {line.factor}: ${line.amount_usd} — {line.explanation}")


@app.command()
def match(id: str, explain: bool = typer.Option(False, "--explain", help="also show why others are excluded"),
          top: int = typer.Option(10, "--top")) -> None:
    """Ranked candidates for an onboarding, with scores (and exclusion reasons)."""
    from domain.codes import normalize_workflow_id
    from domain.intake import Intake
    from domain.matching import rank
    from store import onboardings, roster

    wf = normalize_workflow_id(id)
    engine = _engine()
    onboarding = onboardings.get_onboarding(engine, wf)
    plan = onboardings.get_plan(engine, wf)
    clinic = onboardings.get_clinic(engine, onboarding["clinic_key"]) if onboarding else None
    if not onboarding or not plan or not clinic:
        _fail(f"{wf}: no assessed onboarding with that id")
    intake = Intake.model_validate(clinic["intake"])
    physicians = roster.list_physicians(engine) if explain else roster.list_physicians(engine, list(intake.states))
    result = rank(physicians, intake, plan, top=top, history=onboardings.offer_history(engine), explain=explain)
    table = Table("#", "NPI", "physician", "score", "why")
    for i, c in enumerate(result.candidates, 1):
        table.add_row(str(i), c.npi, c.display_name, f"{c.score:.1f}", "; ".join(c.reasons))
    out.print(table)
    if explain:
        for e in result.excluded:
            out.print(f"[dim]{e.npi} {e.display_name}: {'; '.join(e.reasons)}[/dim]", highlight=False)
        _print_offer_rounds(wf)


def _print_offer_rounds(wf: str) -> None:
    """The offers made so far, with the round each belongs to (from the live workflow status)."""
    from api import service

    try:
        status = _call(service.get_status, wf)
    except typer.Exit:
        return  # no running workflow to ask (the ranking above still stands)
    if not status.offers:
        return
    out.print(f"offers so far (round {status.offer_round} now):")
    for o in status.offers:
        out.print(f"  round {o.round}: NPI {o.npi} {o.status}" + (f" ({o.reason})" if o.reason else ""),
                  highlight=False)


# ---------------------------------------------------------------------------- onboarding lifecycle
@app.command()
def onboard(file: Path, wait: bool = typer.Option(False, "--wait", help="wait until launched or cancelled"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Validate an intake and start its onboarding (or find the running one)."""
    from api import service

    intake = _read_intake(file)

    async def go():
        client = await _client()
        result = await service.start_onboarding(client, get_settings(), intake)
        final = None
        if wait:
            final = await client.get_workflow_handle(result.workflow_id).result()
        return result, final

    result, final = _run(go())
    if as_json:
        _print_json({"workflow_id": result.workflow_id, "status": result.status})
    else:
        out.print(f"{result.workflow_id}: {result.status}")
    if final is not None and not as_json:
        out.print(f"finished: {final.stage.value}")


@app.command()
def status(id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The onboarding's status (the workflow's query)."""
    from api import service

    st = _call(service.get_status, id)
    if as_json:
        _print_json(st.model_dump(mode="json"))
        return
    out.print(f"[bold]{st.workflow_id}[/bold] stage={st.stage.value} sla={st.sla_status.value} "
              f"waiting_on={st.waiting_on or '-'} {st.waiting_reason}", highlight=False)
    out.print(f"physician: {st.physician_npi or '-'}; quote ${st.quote_monthly_usd}/month")
    for o in st.offers:
        out.print(f"  offer {o.npi}: {o.status}")
    for p in st.pharmacies:
        out.print(f"  pharmacy {p.pharmacy_id} ({p.kind.value}): {p.status}")
    for e in st.envelopes:
        out.print(f"  envelope {e.envelope_id} {e.agreement_kind}: {e.status}")
    for t in st.timeline[-10:]:
        out.print(f"  [dim]{t.at:%Y-%m-%d %H:%M:%S} {t.stage}: {t.event}[/dim]", highlight=False)


@app.command("list")
def list_cmd(stage: Optional[str] = typer.Option(None, "--stage"), sla: Optional[str] = typer.Option(None, "--sla")) -> None:
    """Onboardings from Temporal visibility, filtered by stage and SLA status."""
    from api import service

    rows = _call(service.list_onboardings, stage=stage, sla=sla)
    table = Table("status", "stage", "SLA", "waiting on", "states")
    table.add_column("workflow id", overflow="fold")
    for r in rows:
        table.add_row(*(str(r.get(k, "")) for k in ("status", "stage", "sla_status", "waiting_on")),
                      ",".join(r.get("states") or []), str(r.get("workflow_id", "")))
    out.print(table)


@plan_app.command("approve")
def plan_approve(id: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Ops accept an assessment that has blocking findings."""
    from api import service

    out.print(_call(service.review_plan, id, reason))


def _answer(id: str, npi: str, accept: bool) -> None:
    from api import service

    answer = _call(service.answer_offer, id, npi, accept)
    out.print(f"{answer.status}: {answer.message}")
    if accept and not answer.accepted:
        raise typer.Exit(1)


@offer_app.command("accept")
def offer_accept(id: str, npi: str = typer.Option(..., "--npi")) -> None:
    """The offered physician accepts."""
    _answer(id, npi, True)


@offer_app.command("decline")
def offer_decline(id: str, npi: str = typer.Option(..., "--npi")) -> None:
    """The offered physician declines."""
    _answer(id, npi, False)


@protocols_app.command("approve")
def protocols_approve(id: str, npi: str = typer.Option(..., "--npi"),
                      sha256: Optional[list[str]] = typer.Option(
                          None, "--sha256", help="a SHA-256 of a document read (repeat for each; default: the ones "
                                                 "`mdco protocols show` prints now)")) -> None:
    """The matched physician approves the protocols: exactly the documents with those SHA-256s (refused,
    exit 2, when the protocols changed since)."""
    from api import service

    if not sha256:
        sha256 = [p["sha256"] for p in _protocols_shown(id)]
    out.print(_call(service.approve_protocols, id, npi, sha256s=sha256))
    for sha in sha256:
        out.print(f"  approved SHA-256 {sha}", highlight=False)


@protocols_app.command("show")
def protocols_show(id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The protocols prepared for the onboarding, with their content and SHA-256 (from the store)."""
    shown = _protocols_shown(id)
    if as_json:
        _print_json(shown)
        return
    if not shown:
        out.print("no protocols prepared yet")
    for p in shown:
        out.print(f"[bold]{p['service']}[/bold] {p['version']} {p['status']} SHA-256 {p['sha256']}", highlight=False)
        out.print(p["document"], markup=False, highlight=False)


def _protocols_shown(id: str) -> list[dict]:
    from api import service

    try:
        return service.protocols_shown(_engine(), id)
    except service.NotFound as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@pharmacy_app.command("confirm")
def pharmacy_confirm(id: str, pharmacy: str = typer.Option(..., "--pharmacy"),
                     account: str = typer.Option("", "--account", help="the prescriber account number opened")) -> None:
    """A pharmacy confirms the prescriber account."""
    from api import service

    out.print(_call(service.confirm_pharmacy, id, pharmacy, account_number=account))


@pharmacy_app.command("decline")
def pharmacy_decline(id: str, pharmacy: str = typer.Option(..., "--pharmacy"),
                     reason: str = typer.Option(..., "--reason")) -> None:
    """A pharmacy turns the prescriber account down; the next qualifying pharmacy is asked."""
    from api import service

    out.print(_call(service.decline_pharmacy, id, pharmacy, reason))


@sandbox_app.command("sign")
def sandbox_sign(id: str) -> None:
    """Local e-sign server only: every signer of the onboarding's open envelopes signs."""
    from domain.codes import normalize_workflow_id
    from esign.sandbox import sign_all

    signed = sign_all(get_settings(), normalize_workflow_id(id))
    out.print(f"signed {len(signed)} envelope(s): {', '.join(signed) or '-'}")


@keys_app.command("new")
def keys_new(key_id: str = typer.Option("k1", "--id", help="key id stored with every payload")) -> None:
    """Print a fresh ``keyid:base64key`` entry; put it FIRST in MDCO_PAYLOAD_KEYS to rotate."""
    from mdco_temporal.codec import new_key_spec

    sys.stdout.write(new_key_spec(key_id) + "\n")


@app.command()
def assign(id: str, npi: str = typer.Option(..., "--npi"), reason: str = typer.Option(..., "--reason")) -> None:
    """Ops assign a physician by hand (eligibility is re-checked, capacity taken)."""
    from api import service

    answer = _call(service.assign_physician, id, npi, reason)
    out.print(f"{answer.status}: {answer.message}")


@agreements_app.command("resend")
def agreements_resend(id: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Ops resend declined or expired agreements (a fresh envelope each)."""
    from api import service

    out.print(_call(service.resend_agreements, id, reason))


@app.command()
def retry(id: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Ops retry a blocked onboarding from the step that failed (after fixing its cause)."""
    from api import service

    out.print(_call(service.retry, id, reason))


@app.command()
def cancel(id: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Ops cancel an onboarding (capacity, offers and envelopes are released)."""
    from api import service

    out.print(_call(service.cancel, id, reason))


@app.command()
def replace(id: str, reason: str = typer.Option(..., "--reason"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Ops replace a live clinic's medical director: a replacement placement with the 12/24 h SLA
    (ID: the clinic key or oversight-<clinic_key>); prints its workflow id."""
    from api import service

    try:  # bad input is refused (exit 2, nothing started) before Temporal is asked, even when it is down
        service.replacement_target(_engine(), id, reason)
    except (service.Invalid, service.NotFound, service.Rejected) as exc:
        _fail(str(exc), 2)
    result = _call(service.start_replacement, get_settings(), _engine(), id, reason, actor="ops:cli")
    if as_json:
        _print_json({"workflow_id": result.workflow_id, "status": result.status})
    else:
        out.print(f"{result.status}: {result.workflow_id}")


@app.command()
def reconcile() -> None:
    """Release now what terminated onboardings left behind (capacity, open offers, envelopes); the
    worker's schedule mdco-reservation-reconcile does the same every 15 minutes. Prints the summary."""
    from activities.onboarding import OnboardingActivities
    from activities.reconcile import ReconcileActivities

    async def go():
        acts = ReconcileActivities(OnboardingActivities(get_settings(), _engine()), await _client())
        return await asyncio.to_thread(acts.reconcile)

    _print_json(_run(go()).model_dump(mode="json"))


@app.command()
def repair(id: Optional[str] = typer.Argument(None, help="a workflow id (default: every run the server reports stuck)"),
           apply: bool = typer.Option(False, "--apply", help="reset the repairable runs (default: only show)"),
           reason: str = typer.Option("workflow task fails on replay (nondeterminism)", "--reason"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Find onboardings/oversights whose workflow task fails on every attempt with a nondeterminism and
    reset each to the task before the divergence (README, "Repairing a stuck workflow"). Audited."""
    from temporalio.service import RPCError

    from domain.codes import normalize_workflow_id
    from mdco_temporal import repair as rp
    from store.audit import audit
    from worker import WORKFLOWS

    if id is not None and not id.strip():
        _fail("id: must not be empty", 2)
    if not reason.strip():
        _fail("reason: must not be empty (it goes into the audit trail)", 2)
    rp.quiet_replays()

    async def go():
        client = await _client()
        if id is None:
            ids = await rp.stuck_workflow_ids(client, [w.__name__ for w in WORKFLOWS])
        else:
            ids = [id if id.startswith(("onboarding-", "oversight-")) else normalize_workflow_id(id)]
        plans, engine = [], _engine()
        for wf in ids:
            try:
                plan = await rp.diagnose(client, wf, WORKFLOWS)
            except RPCError as exc:
                if id is not None and "not found" in str(exc).lower():
                    _fail(f"id: no workflow {wf}", 2)
                raise
            row = {"workflow_id": wf, "run_id": plan.run_id, "plan": plan.summary(), "new_run_id": "",
                   "updates_sent_again": []}
            if apply and plan.repairable:
                row["new_run_id"] = await rp.reset(client, plan, reason, identity="mdco repair")
                row["updates_sent_again"] = await rp.resend_rejected_updates(client, plan, row["new_run_id"],
                                                                             identity="mdco repair")
                audit(engine, wf, "ops:cli", "workflow_repaired", reason=reason, idem_key=f"repair-{plan.run_id}",
                      detail={"run_id": plan.run_id, "new_run_id": row["new_run_id"],
                              "diverging_event_id": plan.diverging_event_id, "reset_to_event_id": plan.reset_to_event_id,
                              "activities_rerun": len(plan.activities_rerun), "signals_reapplied": plan.signals_reapplied,
                              "updates_reapplied": plan.updates_reapplied,
                              "updates_sent_again": row["updates_sent_again"]})
            plans.append(row)
        return plans

    rows = _run(go())
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print("no stuck workflow")
    for row in rows:
        done = f" -> reset, new run {row['new_run_id']}" if row["new_run_id"] else ""
        done += "".join(f"; {what}" for what in row["updates_sent_again"])
        out.print(f"{row['workflow_id']}: {row['plan']}{done}", highlight=False)


# ---------------------------------------------------------------------------- embedded stack
@app.command()
def up(detach: bool = typer.Option(False, "--detach", help="return once every service is healthy")) -> None:
    """Start the embedded stack: Temporal dev server + UI, worker, API, local e-sign server, SMTP sink."""
    from starter.stack import Stack, StackError

    stack = Stack(get_settings())
    try:
        stack.start(detach=detach)
    except StackError as exc:
        _fail(str(exc))
    for name, url in stack.urls().items():
        out.print(f"{name}: {url}")
    if detach:
        out.print("stack running; stop it with `mdco down`")
        return
    out.print("stack running; Ctrl-C stops it")
    try:
        stack.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@app.command()
def down() -> None:
    """Stop what `mdco up --detach` started."""
    from starter.stack import down as stack_down

    stopped = stack_down(get_settings())
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def demo(keep: bool = typer.Option(False, "--keep", help="leave the stack up afterwards"),
         timeout: float = typer.Option(90.0, "--timeout", help="seconds the onboardings may take")) -> None:
    """Start the stack, run three sample onboardings to launch with simulated humans, stop."""
    from starter.demo import run_demo

    console = out if out.is_terminal else Console(emoji=False, width=150)  # logs/CI: room for the table
    raise typer.Exit(run_demo(get_settings(), keep=keep, timeout=timeout, console=console))


def main() -> None:
    """Entry point. Exits with ``os._exit`` after flushing: the Temporal client's native runtime
    threads can abort a normal interpreter shutdown, which would turn a success into a crash code."""
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # print the traceback as Python would, then exit 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
