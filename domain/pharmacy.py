"""Stage 4: which compounding pharmacies fill the clinic's compounded services.

503A pharmacies dispense patient-specific prescriptions and ship into the patients' states, so a
pharmacy must be licensed in *every* intake state. We choose the fewest pharmacies that cover all
compounded services (exact, over service subsets), breaking ties by pharmacy_id so the answer is stable.

The pharmacy file's optional compliance columns rule when the file carries them (CONTRACT.md): the
licences (unexpired, per state) replace ``licensed_states``; a 503B needs its FDA registration; a
scheduled drug needs an unexpired DEA registration; each capability a preparation needs must be
attested under its USP chapter within the policy's age (``domain/data/pharmacy_policy.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from importlib import resources

from pydantic import Field

from domain.codes import Capability, Service
from domain.intake import Intake
from domain.onboarding import OversightPlan, PharmacyAssignment
from domain.records import PharmacyRecord
from domain.rules import Sourced, parse_rule_data, service_catalog

COMPOUNDING_KINDS = ("503A", "503B")


class AttestationPolicy(Sourced):
    max_age_days: int = Field(gt=0)
    chapter_for_capability: dict[Capability, str]
    chapter_sources: dict[str, str]


class OutsourcingPolicy(Sourced):
    registration_required: bool


class ControlledPolicy(Sourced):
    dea_required: bool


class PharmacyPolicy(Sourced):
    version: int
    attestations: AttestationPolicy
    licensure: Sourced
    outsourcing: OutsourcingPolicy
    controlled_substances: ControlledPolicy


@lru_cache(maxsize=1)
def pharmacy_policy() -> PharmacyPolicy:
    text = resources.files("domain").joinpath("data", "pharmacy_policy.yaml").read_text(encoding="utf-8")
    return parse_rule_data(PharmacyPolicy, text, "pharmacy_policy.yaml")


def why_not(ph: PharmacyRecord, service: Service, kind: str, states: Iterable[str], on: date,
            policy: PharmacyPolicy | None = None) -> list[str]:
    """Every reason ``ph`` may not fill ``service`` as ``kind`` for patients in ``states`` on ``on``
    (empty: it qualifies)."""
    pol = policy or pharmacy_policy()
    info = service_catalog().services[service]
    reasons: list[str] = []
    if ph.kind.value != kind:
        reasons.append(f"is a {ph.kind.value}, {kind} needed")
    if service not in ph.services:
        reasons.append(f"does not offer {service.value}")
    if "licenses" in ph.on_file:
        for st in states:
            lic = ph.license_in(st)
            if lic is None:
                reasons.append(f"no pharmacy licence in {st}")
            elif lic.expires < on:
                reasons.append(f"licence in {st} expired {lic.expires.isoformat()}")
    else:
        missing = [st for st in states if st not in ph.licensed_states]
        if missing:
            reasons.append(f"not licensed in {', '.join(missing)}")
    missing_caps = [c.value for c in info.capabilities_needed if c not in ph.capabilities]
    if missing_caps:
        reasons.append(f"lacks {', '.join(missing_caps)} capability")
    if "attestations" in ph.on_file:
        max_age = pol.attestations.max_age_days
        for cap in info.capabilities_needed:
            chapter = pol.attestations.chapter_for_capability[cap]
            attested = ph.attestations.get(chapter)  # type: ignore[call-overload]
            if attested is None:
                reasons.append(f"no {chapter} attestation ({cap.value})")
            elif attested > on:
                reasons.append(f"{chapter} attestation dated in the future ({attested.isoformat()})")
            elif (on - attested).days > max_age:
                reasons.append(f"{chapter} attestation of {attested.isoformat()} is older than {max_age} days")
    if (kind == "503B" and "fda_registration" in ph.on_file and pol.outsourcing.registration_required
            and ph.fda_registration is None):
        reasons.append("503B without an FDA outsourcing-facility registration")
    if info.dea_schedule and "dea" in ph.on_file and pol.controlled_substances.dea_required:
        if ph.dea is None:
            reasons.append(f"no DEA registration (schedule {info.dea_schedule})")
        elif ph.dea.expires < on:
            reasons.append(f"DEA registration expired {ph.dea.expires.isoformat()}")
    return reasons


def select_pharmacies(intake: Intake, plan: OversightPlan, pharmacies: list[PharmacyRecord], *,
                      on: date | None = None, exclude: Iterable[str] = (),
                      only: Iterable[Service] | None = None) -> tuple[list[PharmacyAssignment], list[str]]:
    """Assignments covering every compounded service with the fewest pharmacies, and the problems
    (services no pharmacy on file can fill, with why the ones offering it failed).

    ``on``: the day credentials must be valid (default: the plan's date); ``exclude``: pharmacies not
    to ask (they declined); ``only``: cover just these services (a declined pharmacy's)."""
    day = on or plan.as_of
    states = list(intake.states)
    skip = set(exclude)
    wanted = None if only is None else set(only)
    needed = [s for s in intake.services if plan.pharmacy_model.get(s.value) in COMPOUNDING_KINDS
              and (wanted is None or s in wanted)]
    ordered = sorted((p for p in pharmacies if p.pharmacy_id not in skip), key=lambda p: p.pharmacy_id)
    policy = pharmacy_policy()
    covers: list[tuple[PharmacyRecord, int]] = []
    failed: dict[int, list[str]] = {}
    for ph in ordered:
        mask = 0
        for i, s in enumerate(needed):
            reasons = why_not(ph, s, plan.pharmacy_model[s.value], states, day, policy)
            if not reasons:
                mask |= 1 << i
            elif s in ph.services:
                failed.setdefault(i, []).append(f"{ph.pharmacy_id}: {', '.join(reasons)}")
        if mask:
            covers.append((ph, mask))

    problems: list[str] = []
    fillable = 0
    for _, mask in covers:
        fillable |= mask
    for i, s in enumerate(needed):
        if not fillable & (1 << i):
            kind = plan.pharmacy_model[s.value]
            caps = ", ".join(c.value for c in service_catalog().services[s].capabilities_needed) or "no special"
            problem = (f"{s.value}: no {kind} pharmacy on file offers it with {caps} capability "
                       f"and a licence in every clinic state ({', '.join(intake.states)})")
            if skip:
                problem += f" (declined: {', '.join(sorted(skip))})"
            if failed.get(i):
                problem += "; " + "; ".join(failed[i])
            problems.append(problem)

    # best[mask] = (pharmacy count, sorted ids) of the smallest, then lexicographically first, cover
    best: dict[int, tuple[int, tuple[str, ...]]] = {0: (0, ())}
    for mask in range(1 << len(needed)):
        if mask not in best:
            continue
        count, ids = best[mask]
        for ph, cover in covers:
            new = mask | cover
            if new == mask:
                continue
            option = (count + 1, tuple(sorted((*ids, ph.pharmacy_id))))
            if new not in best or option < best[new]:
                best[new] = option
    chosen_ids = best[fillable][1]

    by_id = {ph.pharmacy_id: (ph, mask) for ph, mask in covers}
    assigned = 0
    out: list[PharmacyAssignment] = []
    for pid in chosen_ids:
        ph, mask = by_id[pid]
        mine = mask & ~assigned
        assigned |= mine
        services = [s for i, s in enumerate(needed) if mine & (1 << i)]
        out.append(PharmacyAssignment(pharmacy_id=ph.pharmacy_id, name=ph.name, kind=ph.kind, services=services))
    return out, problems
