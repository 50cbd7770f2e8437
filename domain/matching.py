"""Stage 2: which physicians may supervise this clinic, and in what order to offer it to them.

Hard rules exclude a physician with named reasons (ops read them in ``mdco match --explain``);
the rest are scored 0..100 and ranked by score desc, then NPI asc, so results are reproducible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from domain.codes import CareModel, MidlevelRole, Service
from domain.geo import miles_between, same_county
from domain.identifiers import valid_npi
from domain.intake import Intake
from domain.onboarding import MatchResult, OversightPlan
from domain.records import PhysicianRecord

#: Score weights (sum 100).
W_COVERAGE, W_LOAD, W_HISTORY, W_PROXIMITY = 20.0, 35.0, 25.0, 20.0
#: A median response at or beyond this many hours earns no response points.
SLOW_RESPONSE_HOURS = 24.0

History = dict[str, tuple[float, float]]  # npi -> (median response hours, accept rate 0..1)


@dataclass(frozen=True)
class _Need:
    """What the clinic needs, computed once per ranking (not per physician)."""

    start: date
    margin_end: date
    margin_days: int
    states: tuple[str, ...]
    dea_states: tuple[str, ...]
    controlled: str
    services: tuple[tuple[Service, str], ...]
    caps: tuple[tuple[str, str, int, int], ...]  # state, roles capped ("NP/PA"), cap, new midlevels of those roles
    remote_care: bool
    needs_local: bool
    local_states: frozenset[str]
    exclude_npis: frozenset[str]
    #: state, the boards one of which its rule requires of a local director (certified or eligible)
    boards: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: state, miles, the office ZIPs there: a local director's practice ZIP within the miles (or same county)
    near: tuple[tuple[str, int, tuple[str, ...]], ...] = ()


def _need(intake: Intake, plan: OversightPlan, exclude_npis: set[str] | frozenset[str], margin_days: int) -> _Need:
    new = Counter((m.state, m.role.value) for m in intake.midlevels if m.role in (MidlevelRole.NP, MidlevelRole.PA))
    locations = frozenset(loc.state for loc in intake.locations)
    local = [st for st, sp in plan.states.items() if sp.director_local]
    return _Need(
        start=intake.requested_start,
        margin_end=intake.requested_start + timedelta(days=margin_days),
        margin_days=margin_days,
        states=tuple(intake.states),
        dea_states=tuple(plan.dea_required_states),
        controlled=", ".join(s.value for s in intake.controlled_services),
        services=tuple((s, s.value) for s in intake.services),
        caps=tuple((st, roles, cap, n) for st, roles, cap in _caps(plan)
                   if (n := sum(new[st, r] for r in roles.split("/")))),
        remote_care=intake.care_model in (CareModel.telehealth, CareModel.hybrid),
        needs_local=intake.care_model != CareModel.telehealth and plan.oversight_mode == "on_site",
        local_states=frozenset(local) or locations or frozenset(intake.states),
        exclude_npis=frozenset(exclude_npis),
        boards=tuple((st, tuple(plan.states[st].director_board_certifications)) for st in local
                     if plan.states[st].director_board_certifications),
        near=tuple((st, miles, tuple(loc.zip for loc in intake.locations if loc.state == st)) for st in local
                   if (miles := plan.states[st].director_within_miles)),
    )


def _caps(plan: OversightPlan) -> list[tuple[str, str, int]]:
    """(state, roles, cap) per cap of the plan; a plan from before per-role caps counts NPs and PAs together."""
    out = []
    for st, sp in plan.states.items():
        if sp.ratio_caps:
            out += [(st, roles, cap) for roles, cap in sp.ratio_caps.items()]
        elif sp.supervision_ratio_cap is not None:
            out.append((st, "NP/PA", sp.supervision_ratio_cap))
    return out


def holds_board(doc: PhysicianRecord, boards: tuple[str, ...], on: date) -> bool:
    """Whether a roster entry (``BOARD`` or ``BOARD:EXPIRES``; board eligibility written e.g.
    ``dermatology_eligible``) names one of ``boards`` and has not expired by ``on``."""
    for entry in doc.board_certifications:
        name, _, expires = entry.partition(":")
        name = name.strip().lower().replace(" ", "_").replace("-", "_")
        if name.removesuffix("_eligible").removesuffix("_board") in boards and not (expires and expires.strip() < on.isoformat()):
            return True
    return False


def ineligibility(doc: PhysicianRecord, need: _Need, *, first_only: bool = False) -> list[str]:
    """Every hard rule the physician fails (only the first when ``first_only``); empty = eligible."""
    reasons: list[str] = []
    add = reasons.append

    def done() -> bool:
        return first_only and bool(reasons)

    if doc.npi in need.exclude_npis:
        add("already offered or declined for this onboarding")
    if not valid_npi(doc.npi):
        add("invalid NPI")
    if doc.excluded:
        add("excluded (OIG LEIE)")
    if doc.exclusion_review:
        add("flagged for exclusion review")
    if doc.active_clinics >= doc.max_clinics:
        add(f"at capacity ({doc.active_clinics}/{doc.max_clinics} clinics)")
    if need.remote_care and not doc.telehealth:
        add("not available for telehealth")
    if doc.malpractice_expires < need.start:
        add("malpractice coverage lapses before the start")
    if done():
        return reasons
    therapies = doc.therapies
    for service, name in need.services:
        if service not in therapies:
            add(f"no experience in {name}")
    if done():
        return reasons
    lic = {x.state: x.expires for x in doc.licenses}
    for st in need.states:
        exp = lic.get(st)
        if exp is None:
            add(f"no licence in {st}")
        elif exp < need.start:
            add(f"{st} licence expires {exp}, before the requested start")
        elif exp <= need.margin_end:
            add(f"{st} licence expires {exp}, within {need.margin_days} days after the requested start")
    if need.dea_states:
        dea = {x.state: x.expires for x in doc.dea}
        for st in need.dea_states:
            exp = dea.get(st)
            if exp is None:
                add(f"no DEA registration in {st} (controlled: {need.controlled})")
            elif exp <= need.margin_end:
                add(f"{st} DEA registration expires {exp}, within {need.margin_days} days after the requested start")
    for st, roles, cap, new in need.caps:
        would = new + doc.supervised_midlevels.get(st, 0)  # the roster does not split by role: all count
        if would > cap:
            add(f"ratio cap: the {st} plan allows {cap} {roles} per physician; would supervise {would}")
    if need.needs_local and doc.home_state not in need.local_states:
        add(f"home state {doc.home_state} is not a clinic location state ({', '.join(sorted(need.local_states))}),"
            " required for on-site oversight")
    for st, boards in need.boards:
        if not holds_board(doc, boards, need.start):
            add(f"{st}: the director of this office must be board certified or eligible in "
                f"{' or '.join(b.replace('_', ' ') for b in boards)}")
    for st, miles, offices in need.near:
        far = [z for z in offices if doc.practice_zip and not _near(doc.practice_zip, z, miles)]
        if far:
            add(f"{st}: primary practice ZIP {doc.practice_zip} is more than {miles} miles from the office at "
                f"{', '.join(far)} and outside its county (a contiguous county: ops confirm and assign by hand)")
    return reasons


def _near(practice: str, office: str, miles: int) -> bool:
    distance = miles_between(practice, office)
    return same_county(practice, office) or (distance is not None and distance <= miles)


def rank(physicians: list[PhysicianRecord], intake: Intake, plan: OversightPlan, *,
         exclude_npis: set[str] | frozenset[str] = frozenset(), licence_margin_days: int = 60,
         top: int | None = None, history: History | None = None, explain: bool = True) -> MatchResult:
    """Eligible physicians ranked best first, and (with ``explain``) every ineligible one with all
    its reasons; without ``explain`` the excluded list is left empty and screening stops at a
    physician's first failed rule, which is what the offer fan-out needs.

    Score (0..100) = coverage + load + history + proximity:
    - coverage (20): share of the services the clinic did *not* request that the physician also
      practises — room for the clinic to add therapies without a new director;
    - load (35): ``35 * (1 - active/max)`` — free capacity answers faster and supervises better;
    - history (25): ``12.5 * accept_rate + 12.5 * max(0, 1 - median_h/24)``; no history counts 12.5;
    - proximity (20): 20 if the home state hosts a clinic location, 12 if it is an intake state, else 0.
    """
    history = history or {}
    need = _need(intake, plan, exclude_npis, licence_margin_days)
    others = frozenset(Service) - set(intake.services)
    location_states = {loc.state for loc in intake.locations}
    intake_states = set(intake.states)

    # Plain dicts, validated once at the end (in pydantic-core): a model per physician would
    # dominate the time for a large roster.
    candidates: list[dict] = []
    excluded: list[dict] = []
    for doc in physicians:
        reasons = ineligibility(doc, need, first_only=not explain)
        if reasons:
            if explain:
                excluded.append({"npi": doc.npi, "display_name": doc.display_name, "reasons": reasons})
            continue

        extra = len(others.intersection(doc.therapies))
        coverage = W_COVERAGE * extra / len(others) if others else W_COVERAGE
        load = W_LOAD * (1 - doc.active_clinics / doc.max_clinics)
        past = history.get(doc.npi)
        if past is None:
            hist, hist_why = W_HISTORY / 2, "no response history"
        else:
            median_h, accept = past
            speed = max(0.0, 1 - median_h / SLOW_RESPONSE_HOURS)
            hist = W_HISTORY / 2 * min(max(accept, 0.0), 1.0) + W_HISTORY / 2 * speed
            hist_why = f"median response {median_h:g} h, accepts {accept:.0%}"
        if doc.home_state in location_states:
            prox, prox_why = W_PROXIMITY, f"home state {doc.home_state} hosts a clinic location"
        elif doc.home_state in intake_states:
            prox, prox_why = W_PROXIMITY * 0.6, f"home state {doc.home_state} is an intake state"
        else:
            prox, prox_why = 0.0, f"home state {doc.home_state} is outside the clinic's states"
        candidates.append({"npi": doc.npi, "display_name": doc.display_name,
                           "score": round(coverage + load + hist + prox, 2), "reasons": [
            f"coverage {coverage:.1f}/{W_COVERAGE:g} ({extra} extra therapies)",
            f"load {load:.1f}/{W_LOAD:g} ({doc.active_clinics}/{doc.max_clinics} clinics)",
            f"history {hist:.1f}/{W_HISTORY:g} ({hist_why})",
            f"proximity {prox:.1f}/{W_PROXIMITY:g} ({prox_why})",
        ]})

    candidates.sort(key=lambda c: (-c["score"], c["npi"]))
    excluded.sort(key=lambda e: e["npi"])
    return MatchResult.model_validate(
        {"candidates": candidates[:top] if top is not None else candidates, "excluded": excluded})


def fresh_first(result: MatchResult, reoffer_npis: list[str], top: int) -> MatchResult:
    """The ranked candidates with the physicians being re-offered (their offer for this onboarding
    expired unanswered) after every fresh one, each part in rank order; the first ``top``. A
    physician nobody has asked yet gets the placement before anyone is asked twice."""
    again = set(reoffer_npis)
    result.candidates = sorted(result.candidates, key=lambda c: c.npi in again)[:top]
    return result
