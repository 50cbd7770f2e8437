"""Stage 1: turn an intake into an oversight plan (per-state rules, DEA need, chart review, pharmacy
model, findings) and a monthly quote, all from the sourced rule data in ``domain/data``.

Dated facts are read on the *rule day*: the requested start, or ``as_of`` when that is later — the
plan describes the law the clinic will operate under when oversight begins. A fact the data marks
``unknown`` is planned for as the stricter requirement and raised as a warning so ops verify it.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from domain.codes import CareModel, MidlevelRole, Service
from domain.intake import Intake
from domain.onboarding import ChartReview, Finding, OversightPlan, Quote, QuoteLine, StateChartReview, StatePlan
from domain.rules import StateNote, StateRules, in_force, price_table, service_catalog, state_rules

_MIDLEVEL_ROLES = (MidlevelRole.NP, MidlevelRole.PA)

#: What an unverified fact is planned as: the stricter requirement.
CONSERVATIVE = {"np_practice": "restricted", "pa_supervision": "supervision", "gfe_mode": "in_person"}


def rule_day(intake: Intake, as_of: date) -> date:
    """The day on which dated facts are evaluated."""
    return max(as_of, intake.requested_start)


def assess(intake: Intake, as_of: date) -> OversightPlan:
    """The oversight plan and quote for ``intake`` as known on ``as_of`` (pure and deterministic)."""
    day = rule_day(intake, as_of)
    findings: list[Finding] = []
    dea_states = list(intake.states) if intake.controlled_services else []
    oversight_mode, oversight_reason = "remote", _remote_reason(intake)
    states: dict[str, StatePlan] = {}
    for st in intake.states:
        plan, state_findings, on_site_reason = _state_plan(intake, st, day, st in dea_states)
        states[st] = plan
        findings += state_findings
        if on_site_reason and oversight_mode == "remote":
            oversight_mode, oversight_reason = "on_site", on_site_reason

    pharmacy_model: dict[str, str] = {}
    for service in intake.services:
        pharmacy_model[service.value], service_findings = _product_route(intake, service, day)
        findings += service_findings
    findings += _ryan_haight(intake, day)
    chart, chart_findings = _chart_review(intake, states, day)
    findings += chart_findings
    plan = OversightPlan(
        as_of=as_of, states=states, dea_required_states=dea_states, oversight_mode=oversight_mode,
        oversight_reason=oversight_reason, chart_review=chart, pharmacy_model=pharmacy_model,
        findings=findings, quote=Quote(monthly_usd=0))
    plan.quote = quote(intake, plan)
    return plan


def _remote_reason(intake: Intake) -> str:
    if intake.care_model == CareModel.telehealth:
        return "telehealth clinic and no state in the plan requires the supervising physician on site"
    return "no state in the plan requires the supervising physician on site"


# ---------------------------------------------------------------------------- per state
def _applies(note: StateNote, intake: Intake, has_midlevels: bool) -> bool:
    if note.services and not set(note.services) & set(intake.services):
        return False
    return has_midlevels or not note.needs_midlevels


def _unknown(st: str, field: str, day: date, source: str, planned: str) -> Finding:
    return Finding(rule_id=f"unknown.{field}.{st}", severity="warning",
                   message=f"{st}: {field} is not verified in the rule data for {day}; planned as {planned} "
                           "until ops confirm it", source=source)


def _state_plan(intake: Intake, st: str, day: date, dea: bool) -> tuple[StatePlan, list[Finding], str]:
    """One state's requirements on ``day``, its findings, and why it needs on-site oversight ('' if not)."""
    rules = state_rules().states[st]
    roles = Counter(m.role for m in intake.midlevels if m.state == st)
    has_midlevels = any(roles[r] for r in _MIDLEVEL_ROLES)
    plan = StatePlan(state=st, dea_required=dea)
    findings: list[Finding] = []
    sources: dict[str, str] = {}
    for field, planned in CONSERVATIVE.items():
        fact = in_force(getattr(rules, field), day)
        value = fact.value if fact else "unknown"
        sources[field] = fact.source if fact else "state_rules.yaml"
        setattr(plan, field, value)
        if value == "unknown":
            findings.append(_unknown(st, field, day, fact.source if fact else "state_rules.yaml", planned))
            plan.notes.append(f"{field} unverified: planned as {planned}")
    gfe = plan.gfe_mode if plan.gfe_mode != "unknown" else CONSERVATIVE["gfe_mode"]
    if gfe == "in_person" and intake.care_model == CareModel.telehealth:
        why = "unverified, planned as in person" if plan.gfe_mode == "unknown" else "state rule"
        findings.append(Finding(
            rule_id=f"gfe.in_person.{st}", severity="warning",
            message=f"{st}: the good-faith exam must be in person ({why}); a telehealth-only clinic needs an "
                    "in-person step", source=sources["gfe_mode"]))
    findings += _ratio_cap(plan, rules, roles, day)

    on_site_reason = ""
    for note in rules.notes:
        if not note.in_force(day) or not _applies(note, intake, has_midlevels):
            continue
        plan.notes.append(f"{note.value} (from {note.effective_from})")
        findings.append(Finding(rule_id=f"note.{st}", severity="info", message=f"{st}: {note.value}", source=note.source))
        on_site_here = any(loc.state == st for loc in intake.locations)
        if note.on_site_care_requires_local_physician and intake.care_model != CareModel.telehealth and on_site_here:
            on_site_reason = f"{st}: {note.source} requires a physician practising near the office"
            plan.director_local = True
            plan.director_board_certifications = sorted({*plan.director_board_certifications,
                                                         *note.director_board_certifications})
            plan.director_within_miles = note.director_within_miles or plan.director_within_miles
    if roles[MidlevelRole.RN]:
        plan.notes.append("RNs act under standing orders and delegation; they do not count against ratio caps")
    return plan, findings, on_site_reason


def _ratio_cap(plan: StatePlan, rules: StateRules, roles: Counter, day: date) -> list[Finding]:
    """Set the plan's caps, one per group of roles the state caps; over a legal cap blocks. A role the
    state's verified caps leave out (an NP outside full practice, a PA) gets the policy cap, as an
    unverified cap does: NPs count toward a cap wherever one may apply."""
    st = plan.state
    caps = [c for c in rules.supervision_ratio_cap if c.in_force(day)]
    if len(caps) == 1 and caps[0].value == "none":
        plan.notes.append(f"No state supervision ratio cap ({caps[0].source})")
        return []
    findings: list[Finding] = []
    numeric = sorted((c for c in caps if isinstance(c.value, int)), key=lambda c: sorted(r.value for r in c.applies_to))
    for cap in numeric:
        who = "/".join(r.value for r in cap.applies_to)
        count = sum(roles[r] for r in cap.applies_to)
        plan.ratio_caps["/".join(sorted(r.value for r in cap.applies_to))] = cap.value
        plan.notes.append(f"Supervision ratio: at most {cap.value} {who} per physician (from {cap.effective_from})")
        if count > cap.value:
            own = len(caps) == 1 or MidlevelRole.PA in cap.applies_to  # the PA cap keeps the rule id it always had
            findings.append(Finding(rule_id=f"ratio_cap.{st}" + ("" if own else f".{who}"),
                                    severity="blocking", source=cap.source,
                                    message=f"{st} allows {cap.value} {who} per physician; the clinic has {count}"))
    covered = {r for c in numeric for r in c.applies_to}
    supervised = [MidlevelRole.PA] + ([MidlevelRole.NP] if plan.np_practice != "full" else [])
    uncovered = [r for r in supervised if r not in covered]
    if uncovered:
        source = caps[0].source if caps and not numeric else "state_rules.yaml"
        findings += _policy_cap(plan, uncovered, roles, day, source, partial=bool(numeric))
    plan.supervision_ratio_cap = min(plan.ratio_caps.values())
    return findings


def _policy_cap(plan: StatePlan, capped_roles: list[MidlevelRole], roles: Counter, day: date, source: str, *,
                partial: bool) -> list[Finding]:
    """Plan the company's cap for roles whose state cap is not verified; over it blocks until ops verify."""
    st = plan.state
    policy = state_rules().defaults.ratio_cap_when_unknown
    who = "/".join(r.value for r in capped_roles)
    count = sum(roles[r] for r in capped_roles)
    plan.ratio_caps["/".join(sorted(r.value for r in capped_roles))] = policy.value
    what = f"{who} cap" if partial else "Supervision ratio cap"
    plan.notes.append(f"{what} unverified: planned as at most {policy.value} {who} per physician (policy)")
    if not count:
        return []
    if count > policy.value:
        return [Finding(rule_id=f"ratio_cap.policy.{st}", severity="blocking",
                        message=f"{st}: the state's ratio cap is not verified and the clinic has {count} {who}, over "
                                f"the policy cap of {policy.value}; ops must verify the state cap before matching",
                        source=policy.source)]
    return [_unknown(st, "supervision_ratio_cap", day, source, f"at most {policy.value} {who} per physician (policy)")]


# ---------------------------------------------------------------------------- per service
def _product_route(intake: Intake, service: Service, day: date) -> tuple[str, list[Finding]]:
    """The pharmacy model for one service ("none" | "503A" | "503B") and the findings about its route.

    An FDA-approved product needs no compounding. A compounded route whose FDA enforcement discretion
    has ended on ``day`` blocks; with no recorded choice sales must pick one.
    """
    info = service_catalog().services[service]
    choice = intake.product_choices.get(service)
    name = service.value
    if choice == "fda_approved" or not info.compounded:
        if choice != "fda_approved":
            return "none", []
        if not info.approved_alternatives:
            return "none", [Finding(rule_id=f"product_choice.{name}", severity="warning",
                                    message=f"{name}: FDA-approved product chosen, but the catalog lists none; "
                                            "ops must confirm which product the clinic will use")]
        return "none", [Finding(rule_id=f"product_choice.{name}", severity="info",
                                message=f"{name}: FDA-approved product chosen ({', '.join(info.approved_alternatives)}); "
                                        "no compounding pharmacy needed", source="intake product_choices")]
    if choice is not None:
        model = "503A" if choice == "compounded_503a" else "503B"
    else:
        model = info.pharmacy_model
        if model == "503B" and intake.care_model == CareModel.telehealth:
            model = "503A"  # 503B is office use; telehealth patients need patient-specific prescriptions
    findings: list[Finding] = []
    if choice == "compounded_503b" and intake.care_model == CareModel.telehealth:
        findings.append(Finding(rule_id=f"pharmacy.503b_telehealth.{name}", severity="warning",
                                message=f"{name}: 503B office-use stock cannot be dispensed to telehealth patients; "
                                        "ops must confirm the dispensing path"))
    statuses = [s for s in info.fda_status if s.kind == model and s.drug]
    ended = [s for s in statuses if s.effective_from <= day]
    for s in statuses:
        if s.effective_from > day:
            findings.append(Finding(
                rule_id=f"fda.compounding_discretion_ending.{s.drug}", severity="warning",
                message=f"{name}: FDA enforcement discretion for {model} compounding of {s.drug} ends "
                        f"{s.effective_from}; plan the move to {_alternative(info.approved_alternatives, s.drug)}",
                source=s.source))
    if ended and choice is None:
        drugs = ", ".join(f"{s.drug} (since {s.effective_from})" for s in ended)
        findings.append(Finding(
            rule_id=f"product_choice.missing.{name}", severity="blocking",
            message=f"{name}: compounded {model} {drugs} may no longer be ordered: FDA enforcement discretion ended. "
                    f"Sales must record product_choices.{name}: fda_approved "
                    f"({', '.join(info.approved_alternatives)}) or a lawful compounded route",
            source=ended[0].source))
    for s in ended if choice is not None else []:
        findings.append(Finding(
            rule_id=f"fda.compounding_discretion.{s.drug}", severity="blocking",
            message=f"{name}: {choice} chosen, but FDA enforcement discretion for {model} compounding of {s.drug} "
                    f"ended {s.effective_from}; prescribe {_alternative(info.approved_alternatives, s.drug)} or ops "
                    "must approve a documented patient-specific clinical need",
            source=s.source))
    return model, findings


def _alternative(alternatives: list[str], drug: str) -> str:
    return next((a for a in alternatives if drug in a.lower()), "the FDA-approved product")


def _ryan_haight(intake: Intake, day: date) -> list[Finding]:
    """Telehealth or hybrid care with a controlled substance relies on the DEA flexibilities (dated)."""
    controlled = intake.controlled_services
    if not controlled or intake.care_model == CareModel.on_site:
        return []
    flex = service_catalog().federal.dea_telemedicine_flexibilities
    names = ", ".join(s.value for s in controlled)
    if flex.in_force(day):
        msg = (f"Controlled services ({names}) by telehealth rely on the DEA telemedicine flexibilities, which end "
               f"{flex.effective_to}; after that the Ryan Haight Act requires an in-person evaluation or a special registration")
    else:
        msg = (f"Controlled services ({names}) by telehealth: the DEA telemedicine flexibilities ended {flex.effective_to}; "
               f"the Ryan Haight Act requires an in-person evaluation before prescribing")
    return [Finding(rule_id="dea.ryan_haight", severity="warning", message=msg, source=flex.source)]


# ---------------------------------------------------------------------------- chart review
def _chart_review(intake: Intake, states: dict[str, StatePlan], day: date) -> tuple[ChartReview, list[Finding]]:
    """The strictest percentage and the strictest cadence over every state's own requirement (the
    company default where a state sets none or it is not verified); each state plan keeps its own."""
    book = state_rules()
    d = book.defaults.chart_review
    findings: list[Finding] = []
    for st in intake.states:
        fact = in_force(book.states[st].chart_review, day)
        value = fact.value if fact else "unknown"
        if value == "unknown":
            findings.append(_unknown(st, "chart_review", day, fact.source if fact else "state_rules.yaml",
                                     "the company default"))
        states[st].chart_review = (
            StateChartReview(percent=d.percent, cadence_days=d.cadence_days, basis="policy", source=d.source)
            if isinstance(value, str) else
            StateChartReview(percent=value.percent, cadence_days=value.cadence_days, basis="law", source=fact.source))
    own = [states[st].chart_review for st in intake.states]
    return ChartReview(percent=max(c.percent for c in own), cadence_days=min(c.cadence_days for c in own),
                       basis="law" if any(c.basis == "law" for c in own) else "policy"), findings


# ---------------------------------------------------------------------------- quote
def quote(intake: Intake, plan: OversightPlan) -> Quote:
    """Monthly retainer: base plus the four cost factors (state strictness, therapy risk, patient
    volume, scope of involvement), one explained line each.

    Every amount is non-negative and tiers grow, so the total never drops when the clinic grows.
    """
    table = price_table()
    levels = table.state_strictness
    strict = {st: levels[sp.np_practice if sp.np_practice in levels else "unknown"]  # type: ignore[index]
              for st, sp in plan.states.items()}
    n_dea = len(plan.dea_required_states)
    state_parts = [f"{st} {plan.states[st].np_practice} ${amt}" for st, amt in strict.items()]
    if n_dea:
        state_parts.append(f"DEA registration and controlled-substance oversight in {n_dea} state(s) "
                           f"${n_dea * table.controlled_per_dea_state}")
    risk = {s.value: table.service_risk[s] for s in intake.services}
    tier = next(t for t in table.volume_tiers if t.max_patients is None or intake.monthly_patients <= t.max_patients)
    n_mid = len(intake.midlevels)
    on_site = 0 if intake.care_model == CareModel.telehealth else len(intake.locations)
    local = table.on_site_oversight if plan.oversight_mode == "on_site" else 0
    scope = [f"{n_mid} midlevel(s) ${n_mid * table.per_midlevel}",
             f"{on_site} on-site location(s) ${on_site * table.per_on_site_location}"]
    if local:
        scope.append(f"on-site oversight ${local}")
    lines = [
        QuoteLine(factor="base", amount_usd=table.base, explanation="Base medical-director retainer"),
        QuoteLine(factor="state_strictness", amount_usd=sum(strict.values()) + n_dea * table.controlled_per_dea_state,
                  explanation="State strictness: " + "; ".join(state_parts)),
        QuoteLine(factor="therapy_risk", amount_usd=sum(risk.values()),
                  explanation="Therapy risk: " + "; ".join(f"{s} ${a}" for s, a in risk.items())),
        QuoteLine(factor="patient_volume", amount_usd=tier.amount,
                  explanation=f"Patient volume: {intake.monthly_patients}/month, tier {tier.label}"),
        QuoteLine(factor="scope_of_involvement",
                  amount_usd=n_mid * table.per_midlevel + on_site * table.per_on_site_location + local,
                  explanation="Scope of involvement: " + "; ".join(scope)),
    ]
    return Quote(monthly_usd=sum(line.amount_usd for line in lines), lines=lines)
