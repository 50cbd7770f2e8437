"""The oversight verbs of ``mdco`` (CONTRACT.md): ``renewals``, ``oversight sweep|status``, ``reviews
submit|charts``, ``events report|ack``, ``offboard``, ``audit-packet``.

Mounted in ``starter/cli.py`` with one line, ``register(app)``. ``ID`` is the clinic key or
``oversight-<clinic_key>``. Exit codes: 0 done, 1 failed (Temporal or the database down), 2 refused or
invalid input (the reason on stderr, nothing changed).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from config import get_settings

oversight_app = typer.Typer(no_args_is_help=True, help="Ongoing oversight of live clinics.")
reviews_app = typer.Typer(no_args_is_help=True, help="Chart reviews by the clinic's medical director.")
events_app = typer.Typer(no_args_is_help=True, help="Adverse events reported by clinics.")

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def register(app: typer.Typer) -> None:
    """Add the oversight verbs to the ``mdco`` app."""
    app.add_typer(oversight_app, name="oversight")
    app.add_typer(reviews_app, name="reviews")
    app.add_typer(events_app, name="events")
    app.command("renewals")(renewals)
    app.command("offboard")(offboard)
    app.command("audit-packet")(audit_packet)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _engine():
    from store.db import engine_from_settings

    return engine_from_settings(get_settings())


def _activities():
    from activities.onboarding import OnboardingActivities
    from activities.oversight import OversightActivities

    return OversightActivities(OnboardingActivities(get_settings(), _engine()))


def clinic_key_of(id: str) -> str:
    """``oversight-<key>``, ``onboarding-<key>`` or the bare key -> the clinic key."""
    for prefix in ("oversight-", "onboarding-"):
        if id.startswith(prefix):
            return id[len(prefix):]
    return id


def _clinic(id: str) -> dict:
    from store import onboardings

    clinic = onboardings.get_clinic(_engine(), clinic_key_of(id))
    if clinic is None:
        _fail(f"{id}: no such clinic")
    return clinic


def _day(value: Optional[str], option: str) -> date:
    try:
        return date.fromisoformat(value) if value else date.today()
    except ValueError:
        _fail(f"{option}: {value!r} is not a date YYYY-MM-DD")
        raise


async def _temporal(action) -> Any:
    """Run ``action(client)``; None when Temporal cannot be reached (the store already holds the facts)."""
    from mdco_temporal.client import connect

    try:
        client = await connect(get_settings())
    except RuntimeError:
        err.print(f"[yellow]warning:[/yellow] Temporal at {get_settings().temporal_address} not reachable",
                  highlight=False)
        return None
    return await action(client)


# ---------------------------------------------------------------------------- renewals and the sweep
def renewals(within: int = typer.Option(90, "--within", help="days ahead (default 90); lapsed ones always shown"),
             as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today)"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Credentials of physicians, midlevels and pharmacies serving live clinics that expire within DAYS."""
    if within < 0:
        _fail("--within: must be 0 or more days")
    views = [v for v in _activities().renewals(_day(as_of, "--as-of")) if v.days_left <= within]
    if as_json:
        _json([v.model_dump(mode="json") for v in views])
        return
    table = Table("holder", "credential", "state", "expires", "days", "step", "sent", "clinics")
    for v in views:
        table.add_row(v.npi or v.pharmacy_id or v.holder_id, v.credential, v.state or "-", v.expires_on.isoformat(),
                      str(v.days_left), str(v.step if v.step is not None else "-"),
                      ",".join(map(str, v.notified_steps)) or "-", ", ".join(v.clinics))
    out.print(table)


@oversight_app.command("sweep")
def sweep(as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today)")) -> None:
    """Run the daily compliance sweep now (the code the `mdco-compliance-sweep` Schedule runs daily): the
    alerts go to the clinics' oversight workflows and a clinic a lapse or exclusion suspended gets a
    replacement placement, as the Schedule's run does."""
    from domain.oversight import replacement_reasons

    day = _day(as_of, "--as-of")
    acts = _activities()
    summary = acts.sweep(day)
    replacing = replacement_reasons(summary.alerts)
    replacements: list[dict] = []

    async def deliver(client) -> bool:
        from temporalio.service import RPCError

        from activities.replacement import ReplacementActivities, ReplacementRequest
        from domain.codes import oversight_id_for
        from workflows.compliance import ALERT_SIGNAL

        for alert in summary.alerts:
            try:
                await client.get_workflow_handle(oversight_id_for(alert.clinic_key)).signal(ALERT_SIGNAL, alert)
            except RPCError:
                err.print(f"oversight of {alert.clinic_key} not running: alert kept in the store", highlight=False)
        starter = ReplacementActivities(acts._onb, client)  # the Schedule's start_replacement activity
        for clinic_key, reason in replacing.items():
            started = await starter.start_replacement(ReplacementRequest(clinic_key=clinic_key, reason=reason))
            replacements.append({"clinic_key": clinic_key, **started.model_dump()})
        return True

    if summary.alerts and not asyncio.run(_temporal(deliver)):
        for clinic_key in replacing:
            err.print(f"[yellow]warning:[/yellow] no replacement placement started for {clinic_key} (suspended): "
                      f"start one with mdco replace {clinic_key} --reason TEXT", highlight=False)
    _json(summary.model_dump(mode="json", exclude={"alerts"}) | {"alerts": len(summary.alerts),
                                                                 "replacements": replacements})


@oversight_app.command("status")
def status(id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The clinic's oversight: status, suspended states, chart reviews, adverse events, renewals."""
    clinic = _clinic(id)
    data = _activities().oversight_status(clinic["key"])
    if as_json:
        _json(data)
        return
    out.print(f"[bold]{data['workflow_id']}[/bold] {data['status']} · director NPI {data['physician_npi']}"
              + (f" · suspended in {', '.join(data['suspended_states'])}" if data["suspended_states"] else ""),
              highlight=False)
    for r in data["chart_reviews"]:
        out.print(f"  review {r['review_id']}: {r['status']} (due {r['due_at']})", highlight=False)
        for a in r["corrective_actions"]:
            out.print(f"    corrective action {a['action_id']}: {a['status']} (due {a['due_at']})", highlight=False)
    for e in data["adverse_events"]:
        out.print(f"  event {e['event_id']}: {e['severity']} {e['status']}", highlight=False)
    for v in data["renewals"]:
        sent = ", ".join(map(str, v["notified_steps"])) or "none"
        out.print(f"  {v['credential']} {v['state'] or ''} expires {v['expires_on']} "
                  f"(step {v['step'] if v['step'] is not None else '-'}; notices sent: {sent})", highlight=False)


@oversight_app.command("reapprove-protocols")
def oversight_reapprove_protocols(
        id: str, npi: str = typer.Option(..., "--npi"),
        sha256: Optional[list[str]] = typer.Option(None, "--sha256", help="a SHA-256 of a protocol read (repeat for "
                                                                          "each; default: the ones the review asks)"),
) -> None:
    """The annual protocol review: the clinic's director re-approves the protocol texts in force, bound to
    their SHA-256s (anyone else, or other SHA-256s: refused, exit 2, nothing changed)."""
    from store.common import NotFound
    from store.tables import now_utc

    clinic = _clinic(id)
    try:
        row = _activities().reapprove_protocols(clinic["key"], npi, sha256, now_utc())
    except (NotFound, ValueError) as exc:
        _fail(str(exc))
    out.print(f"protocol review {row['review_id']} approved by NPI {row['approved_by']} "
              f"({len(row['sha256s'])} protocols)", highlight=False)


# ---------------------------------------------------------------------------- chart reviews and events
@reviews_app.command("submit")
def reviews_submit(review_id: str, npi: str = typer.Option(..., "--npi"), charts: int = typer.Option(..., "--charts"),
                   deficiencies: int = typer.Option(..., "--deficiencies"),
                   notes: str = typer.Option("", "--notes")) -> None:
    """The clinic's medical director records a chart review (anyone else: refused, exit 2)."""
    from store import oversight
    from store.common import NotFound
    from store.tables import now_utc

    try:
        row = oversight.submit_review(_engine(), review_id, npi, charts, deficiencies, notes, now_utc())
    except (NotFound, ValueError) as exc:
        _fail(str(exc))
    out.print(f"review {row['review_id']} submitted: {row['charts_reviewed']} charts, "
              f"{row['deficiencies']} deficiencies", highlight=False)
    if row["corrective_action"]:
        action = row["corrective_action"]
        out.print(f"corrective action {action['action_id']} opened, due {action['due_at'].date().isoformat()}",
                  highlight=False)


@reviews_app.command("charts")
def reviews_charts(id: str, charts: int = typer.Option(..., "--charts", help="charts (patient encounters) in the "
                                                                            "period, 0 or more"),
                   period_start: Optional[str] = typer.Option(None, "--period-start", help="YYYY-MM-DD (default: "
                                                              "the day the last chart review opened)"),
                   period_end: Optional[str] = typer.Option(None, "--period-end", help="YYYY-MM-DD (default today)"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """The clinic (ops for it) reports its chart count for a period (default: the current review cycle's):
    the next chart review samples the plan's percentage of it instead of the monthly patient volume. A
    re-report of the same period replaces the count; both are audited."""
    from api import service
    from store.common import NotFound

    start = _day(period_start, "--period-start") if period_start else None
    end = _day(period_end, "--period-end") if period_end else None
    try:
        row = service.report_chart_count(_engine(), clinic_key_of(id), charts, start, end, actor="ops:cli")
    except service.Invalid as exc:
        _fail("; ".join(f"--{p.field.replace('_', '-')}: {p.reason}" for p in exc.problems))
    except (service.NotFound, service.Rejected, NotFound, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        _json({k: row[k] for k in ("clinic_key", "period_start", "period_end", "charts", "previous", "changed")})
        return
    what = f"replaced {row['previous']}" if row["status"] == "replaced" else row["status"]
    out.print(f"{row['clinic_key']}: {row['charts']} charts from {row['period_start'].isoformat()} to "
              f"{row['period_end'].isoformat()} ({what})", highlight=False)


@reviews_app.command("close-action")
def reviews_close_action(action_id: str, npi: str = typer.Option(..., "--npi"),
                         notes: str = typer.Option(..., "--notes", help="what was done about the deficiencies")) -> None:
    """The clinic's medical director closes a corrective action (anyone else: refused, exit 2); an open one
    past its due date is reminded, then escalated to ops, by the daily sweep."""
    from domain.codes import oversight_id_for
    from store import audit, oversight
    from store.common import NotFound
    from store.tables import now_utc

    try:
        row = oversight.close_action(_engine(), action_id, npi, notes, now_utc())
    except (NotFound, ValueError) as exc:
        _fail(str(exc))
    wf = oversight_id_for(row["clinic_key"])
    audit.audit(_engine(), wf, f"physician:{npi}", "corrective_action_closed", at=row["closed_at"],
                detail={"action_id": action_id}, idem_key=f"{wf}:{action_id}:closed")
    out.print(f"corrective action {action_id} closed by NPI {row['closed_by']}", highlight=False)


async def ack_deadline(client, clinic_key: str, severity: str):
    """The acknowledgement deadline of an adverse event of ``severity`` from the Timing of the clinic's
    running oversight (``OversightWorkflow.ack_deadline``); None: the policy's applies (no oversight
    running, or its Timing sets none)."""
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from domain.codes import oversight_id_for
    from workflows.oversight import OversightWorkflow

    try:
        seconds = await client.get_workflow_handle(oversight_id_for(clinic_key)).query(
            OversightWorkflow.ack_deadline, severity)
    except (RPCError, WorkflowQueryFailedError):
        return None
    return timedelta(seconds=seconds) if seconds else None


@events_app.command("report")
def events_report(id: str, severity: str = typer.Option(..., "--severity", help="minor | serious | sentinel"),
                  summary: str = typer.Option(..., "--summary"), as_json: bool = typer.Option(False, "--json")) -> None:
    """The clinic reports an adverse event; the director must acknowledge it before the severity's deadline."""
    from api.service import start_event_watch
    from domain.oversight import AdverseEventWatch
    from domain.renewals import policy
    from store.common import NotFound
    from store.tables import now_utc

    if severity not in ("minor", "serious", "sentinel"):
        _fail(f"--severity: {severity!r} is not one of minor, serious, sentinel")
    if not summary.strip():
        _fail("--summary: must not be empty")
    clinic = _clinic(id)
    at = now_utc()
    due = at + (asyncio.run(_temporal(lambda client: ack_deadline(client, clinic["key"], severity)))
                or policy().ack_deadline(severity))  # type: ignore[arg-type]
    try:
        row = _activities().report_event(clinic["key"], severity, summary, at, due)
    except (NotFound, ValueError) as exc:
        _fail(str(exc))
    event_id, drafted = row["event_id"], row["medwatch"]
    asyncio.run(_temporal(lambda client: start_event_watch(client, get_settings(), AdverseEventWatch(
        event_id=event_id, clinic_key=clinic["key"], severity=severity, ack_due_at=due))))  # type: ignore[arg-type]
    draft = drafted["medwatch_path"] if drafted else None
    if as_json:
        _json({"event_id": event_id, "severity": severity, "status": row["status"], "ack_due_at": due.isoformat(),
               "medwatch_draft": draft, "medwatch_sha256": drafted["medwatch_sha256"] if drafted else None})
    else:
        out.print(f"event_id: {event_id} (acknowledge by {due.isoformat()})", highlight=False)
        if draft:
            out.print(f"draft MedWatch 3500 summary: {draft}", highlight=False)


@events_app.command("ack")
def events_ack(event_id: str, npi: str = typer.Option(..., "--npi"), notes: str = typer.Option("", "--notes")) -> None:
    """The clinic's medical director acknowledges an adverse event (anyone else: refused, exit 2)."""
    from store import oversight
    from store.common import NotFound
    from store.tables import now_utc

    try:
        row = oversight.ack_event(_engine(), event_id, npi, notes, now_utc())
    except (NotFound, ValueError) as exc:
        _fail(str(exc))

    from api.service import stop_event_watch

    asyncio.run(_temporal(lambda client: stop_event_watch(client, event_id)))
    out.print(f"event {event_id} acknowledged by NPI {row['acked_by']}", highlight=False)


# ---------------------------------------------------------------------------- ending an engagement
def offboard(id: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Ops end the engagement: oversight closes, capacity is released, every party is told."""
    from domain.codes import oversight_id_for
    from domain.oversight import OffboardRecord
    from store.tables import now_utc

    if not reason.strip():
        _fail("--reason: must not be empty")
    clinic = _clinic(id)
    if clinic["status"] != "active":
        _fail(f"clinic {clinic['key']} is not under oversight (status {clinic['status']})")
    wf = oversight_id_for(clinic["key"])

    async def end(client):
        from temporalio.service import RPCError

        from workflows.oversight import OversightWorkflow

        handle = client.get_workflow_handle(wf)
        try:
            await handle.signal(OversightWorkflow.end_engagement, reason.strip())
        except RPCError:
            return False
        await asyncio.wait_for(handle.result(), timeout=60)
        return True

    if not asyncio.run(_temporal(end)):  # no oversight workflow to close: offboard from here
        _activities().offboard_clinic(OffboardRecord(clinic_key=clinic["key"], physician_npi=clinic["physician_npi"],
                                                     reason=reason.strip(), at=now_utc()))
    out.print(f"{wf}: offboarded", highlight=False)


def audit_packet(id: str, out_file: Path = typer.Option(..., "--out", help="FILE.zip")) -> None:
    """The clinic's inspection-ready packet (zip with manifest.json and index.html)."""
    from activities.audit_packet import build_packet

    clinic = _clinic(id)
    if out_file.suffix != ".zip":
        _fail(f"--out: {out_file} must end in .zip")
    if not out_file.parent.exists():
        _fail(f"--out: folder {out_file.parent} does not exist")
    manifest = build_packet(_engine(), clinic["key"], out_file)
    out.print(f"{out_file}: {len(manifest['files'])} files", highlight=False)


__all__ = ["register", "clinic_key_of"]
