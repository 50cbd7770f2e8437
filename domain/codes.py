"""Shared vocabularies: jurisdictions, services, roles, stages."""

from __future__ import annotations

from enum import StrEnum

import us

#: The 50 states plus DC, by USPS code (from the ``us`` package, not typed by hand).
JURISDICTIONS: frozenset[str] = frozenset([s.abbr for s in us.states.STATES] + [us.states.DC.abbr])


class Service(StrEnum):
    neurotoxins = "neurotoxins"
    dermal_fillers = "dermal_fillers"
    laser = "laser"
    testosterone_hrt = "testosterone_hrt"
    female_hrt = "female_hrt"
    glp1_weight_loss = "glp1_weight_loss"
    peptides = "peptides"
    iv_nutrients = "iv_nutrients"
    ketamine = "ketamine"


#: Services that involve a DEA-controlled substance (testosterone and ketamine: Schedule III).
CONTROLLED_SERVICES: frozenset[Service] = frozenset({Service.testosterone_hrt, Service.ketamine})

#: Services usually filled by a compounding pharmacy (the rest are FDA-approved products or devices).
COMPOUNDED_SERVICES: frozenset[Service] = frozenset(
    {Service.testosterone_hrt, Service.female_hrt, Service.glp1_weight_loss, Service.peptides,
     Service.iv_nutrients, Service.ketamine}
)


class CareModel(StrEnum):
    on_site = "on_site"
    telehealth = "telehealth"
    hybrid = "hybrid"


class MidlevelRole(StrEnum):
    NP = "NP"
    PA = "PA"
    RN = "RN"


class Stage(StrEnum):
    needs_assessment = "needs_assessment"
    matching = "matching"
    protocol_setup = "protocol_setup"
    pharmacy_coordination = "pharmacy_coordination"
    agreements = "agreements"
    launched = "launched"
    cancelled = "cancelled"
    blocked = "blocked"


class SlaStatus(StrEnum):
    on_track = "on_track"
    at_risk = "at_risk"
    breached = "breached"
    met = "met"


class PharmacyKind(StrEnum):
    outsourcing_503b = "503B"
    compounding_503a = "503A"


class Capability(StrEnum):
    non_sterile = "non_sterile"
    sterile = "sterile"
    hazardous = "hazardous"


def workflow_id_for(clinic_key: str) -> str:
    """The onboarding workflow id is the business key (one onboarding per clinic)."""
    return f"onboarding-{clinic_key}"


def oversight_id_for(clinic_key: str) -> str:
    return f"oversight-{clinic_key}"


def normalize_workflow_id(id_or_key: str) -> str:
    """Accept ``onboarding-<key>`` or the bare ``<key>``."""
    return id_or_key if id_or_key.startswith("onboarding-") else workflow_id_for(id_or_key)
