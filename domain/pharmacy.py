"""Stage 4: which compounding pharmacies fill the clinic's compounded services.

503A pharmacies dispense patient-specific prescriptions and ship into the patients' states, so a
pharmacy must be licensed in *every* intake state. We choose the fewest pharmacies that cover all
compounded services (exact, over service subsets), breaking ties by pharmacy_id so the answer is stable.
"""

from __future__ import annotations

from domain.codes import Service
from domain.intake import Intake
from domain.onboarding import OversightPlan, PharmacyAssignment
from domain.records import PharmacyRecord
from domain.rules import service_catalog

COMPOUNDING_KINDS = ("503A", "503B")


def _can_fill(ph: PharmacyRecord, service: Service, kind: str, states: set[str]) -> bool:
    needed = set(service_catalog().services[service].capabilities_needed)
    return (ph.kind.value == kind and service in ph.services and states <= set(ph.licensed_states)
            and needed <= set(ph.capabilities))


def select_pharmacies(intake: Intake, plan: OversightPlan,
                      pharmacies: list[PharmacyRecord]) -> tuple[list[PharmacyAssignment], list[str]]:
    """Assignments covering every compounded service with the fewest pharmacies, and the problems
    (services no pharmacy on file can fill)."""
    states = set(intake.states)
    needed = [s for s in intake.services if plan.pharmacy_model.get(s.value) in COMPOUNDING_KINDS]
    ordered = sorted(pharmacies, key=lambda p: p.pharmacy_id)
    covers: list[tuple[PharmacyRecord, int]] = []
    for ph in ordered:
        mask = 0
        for i, s in enumerate(needed):
            if _can_fill(ph, s, plan.pharmacy_model[s.value], states):
                mask |= 1 << i
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
            problems.append(f"{s.value}: no {kind} pharmacy on file offers it with {caps} capability "
                            f"and a licence in every clinic state ({', '.join(intake.states)})")

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
