"""Stage 1: turn an intake into an oversight plan (per-state rules, DEA need, chart review, pharmacy
model, findings) and a monthly quote, all from the sourced rule data in ``domain/data``.

Dated facts are read on the *rule day*: the requested start, or ``as_of`` when that is later — the
plan describes the law the clinic will operate under when oversight begins.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from domain.codes import CareModel, MidlevelRole, Service
from domain.intake import Intake
from domain.onboarding import ChartReview, Finding, OversightPlan, Quote, QuoteLine, StatePlan
from domain.rules import StateNote, in_force, price_table, service_catalog, state_rules

_MIDLEVEL_ROLES = (MidlevelRole.NP, MidlevelRole.PA)


def rule_day(intake: Intake, as_of: date) -> date:
    """The day on which dated facts are evaluated."""
    return max(as_of, intake.requested_start)


def _applies(note: StateNote, intake: Intake, has_midlevels: bool) -> bool:
    if note.services and not set(note.services) & set(intake.services):
        return False
    return has_midlevels or not note.needs_midlevels


def assess(intake: Intake, as_of: date) -> OversightPlan:
    """The oversight plan and quote for ``intake`` as known on ``as_of``."""
    book, catalog = state_rules(), service_catalog()
    day = rule_day(intake, as_of)
    findings: list[Finding] = []
    controlled = intake.controlled_services
    dea_states = list(intake.states) if controlled else []
    remote_care = intake.care_model in (CareModel.telehealth, CareModel.hybrid)
    oversight_mode, oversight_reason = "remote", "no state in the plan requires the supervising physician on site"

    states: dict[str, StatePlan] = {}
    for st in intake.states:
        rules = book.states[st]
        roles = Counter(m.role for m in intake.midlevels if m.state == st)
        has_midlevels = any(roles[r] for r in _MIDLEVEL_ROLES)
        plan = StatePlan(state=st, dea_required=st in dea_states)
        for field in ("np_practice", "pa_supervision", "gfe_mode"):
            fact = in_force(getattr(rules, field), day)
            value = fact.value if fact else "unknown"
            setattr(plan, field, value)
            if value == "unknown":
                findings.append(Finding(
                    rule_id=f"unknown.{field}.{st}", severity="warning",
                    message=f"{st}: {field} is not verified in the rule data for {day}; ops must confirm it",
                    source=fact.source if fact else "state_rules.yaml"))
        cap = in_force(rules.supervision_ratio_cap, day)
        if cap is not None:
            plan.supervision_ratio_cap = cap.value
            capped = sum(roles[r] for r in cap.applies_to)
            who = "/".join(r.value for r in cap.applies_to)
            plan.notes.append(f"Supervision ratio: at most {cap.value} {who} per physician (from {cap.effective_from})")
            if capped > cap.value:
                findings.append(Finding(
                    rule_id=f"ratio_cap.{st}", severity="blocking",
                    message=f"{st} allows {cap.value} {who} per physician; the clinic has {capped}",
                    source=cap.source))
        if plan.gfe_mode == "in_person" and intake.care_model == CareModel.telehealth:
            findings.append(Finding(
                rule_id=f"gfe.in_person.{st}", severity="warning",
                message=f"{st} requires an in-person good-faith exam; a telehealth-only clinic needs an in-person step"))
        for note in rules.notes:
            if not note.in_force(day) or not _applies(note, intake, has_midlevels):
                continue
            plan.notes.append(f"{note.value} (from {note.effective_from})")
            findings.append(Finding(rule_id=f"note.{st}", severity="info", message=f"{st}: {note.value}", source=note.source))
            on_site_here = any(loc.state == st for loc in intake.locations)
            if note.on_site_care_requires_local_physician and intake.care_model == CareModel.on_site and on_site_here:
                oversight_mode = "on_site"
                oversight_reason = f"{st}: {note.source} requires a physician practising near the office"
        if roles[MidlevelRole.RN]:
            plan.notes.append("RNs act under standing orders and delegation; they do not count against ratio caps")
        states[st] = plan

    pharmacy_model: dict[str, str] = {}
    for service in intake.services:
        info = catalog.services[service]
        model = info.pharmacy_model
        if model == "503B" and intake.care_model == CareModel.telehealth:
            model = "503A"  # 503B is office use only; telehealth patients need patient-specific Rx
        pharmacy_model[service.value] = model

    findings += _federal_findings(intake, pharmacy_model, day, controlled, remote_care)
    chart = _chart_review(intake, day)
    plan = OversightPlan(
        as_of=as_of, states=states, dea_required_states=dea_states, oversight_mode=oversight_mode,
        oversight_reason=oversight_reason, chart_review=chart, pharmacy_model=pharmacy_model,
        findings=findings, quote=Quote(monthly_usd=0))
    plan.quote = quote(intake, plan)
    return plan


def _federal_findings(intake: Intake, pharmacy_model: dict[str, str], day: date,
                      controlled: list[Service], remote_care: bool) -> list[Finding]:
    catalog = service_catalog()
    out: list[Finding] = []
    if controlled and remote_care:
        flex = catalog.federal.dea_telemedicine_flexibilities
        names = ", ".join(s.value for s in controlled)
        if flex.in_force(day):
            msg = (f"Controlled services ({names}) by telehealth rely on the DEA telemedicine flexibilities, which end "
                   f"{flex.effective_to}; after that the Ryan Haight Act requires an in-person evaluation or a special registration")
        else:
            msg = (f"Controlled services ({names}) by telehealth: the DEA telemedicine flexibilities ended {flex.effective_to}; "
                   f"the Ryan Haight Act requires an in-person evaluation before prescribing")
        out.append(Finding(rule_id="dea.ryan_haight", severity="warning", message=msg, source=flex.source))
    for service in intake.services:
        info = catalog.services[service]
        kind = pharmacy_model[service.value]
        for status in info.fda_status:
            if status.kind == kind and status.drug and status.effective_from <= day:
                alternative = next((a for a in info.approved_alternatives if status.drug in a.lower()), "the FDA-approved product")
                out.append(Finding(
                    rule_id=f"fda.compounding_discretion.{status.drug}", severity="warning",
                    message=(f"{service.value}: FDA enforcement discretion for {kind} compounding of {status.drug} ended "
                             f"{status.effective_from}; prescribe {alternative} unless a patient-specific clinical need is documented"),
                    source=status.source))
    return out


def _chart_review(intake: Intake, day: date) -> ChartReview:
    """The strictest state chart-review rule in force, else the company default."""
    book = state_rules()
    best: tuple[int, int, str] | None = None
    for st in intake.states:
        fact = in_force(book.states[st].chart_review, day)
        if fact is None:
            continue
        key = (fact.value.percent, -fact.value.cadence_days, st)
        if best is None or key > best:
            best = key
    if best is None:
        d = book.defaults.chart_review
        return ChartReview(percent=d.percent, cadence_days=d.cadence_days, basis="policy")
    return ChartReview(percent=best[0], cadence_days=-best[1], basis="law")


def quote(intake: Intake, plan: OversightPlan) -> Quote:
    """Monthly retainer: base + per-state strictness + DEA states + therapy risk + volume tier + scope.

    Every amount is non-negative and tiers grow, so the total never drops when the clinic grows.
    """
    table = price_table()
    lines = [QuoteLine(factor="base", amount_usd=table.base, explanation="Base medical-director retainer")]
    for st, sp in plan.states.items():
        practice = sp.np_practice if sp.np_practice in table.state_strictness else "unknown"
        lines.append(QuoteLine(factor=f"state:{st}", amount_usd=table.state_strictness[practice],  # type: ignore[index]
                               explanation=f"{st}: {practice} practice environment"))
    if plan.dea_required_states:
        n = len(plan.dea_required_states)
        lines.append(QuoteLine(factor="dea", amount_usd=n * table.controlled_per_dea_state,
                               explanation=f"DEA registration and controlled-substance oversight in {n} state(s)"))
    for service in intake.services:
        lines.append(QuoteLine(factor=f"service:{service.value}", amount_usd=table.service_risk[service],
                               explanation=f"{service.value}: therapy risk"))
    tier = next(t for t in table.volume_tiers if t.max_patients is None or intake.monthly_patients <= t.max_patients)
    lines.append(QuoteLine(factor="volume", amount_usd=tier.amount,
                           explanation=f"Patient volume {intake.monthly_patients}/month: tier {tier.label}"))
    n_mid = len(intake.midlevels)
    lines.append(QuoteLine(factor="midlevels", amount_usd=n_mid * table.per_midlevel,
                           explanation=f"{n_mid} midlevel(s) supervised or collaborated with"))
    on_site = 0 if intake.care_model == CareModel.telehealth else len(intake.locations)
    lines.append(QuoteLine(factor="locations", amount_usd=on_site * table.per_on_site_location,
                           explanation=f"{on_site} on-site location(s) under oversight"))
    return Quote(monthly_usd=sum(line.amount_usd for line in lines), lines=lines)
