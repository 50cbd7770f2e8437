"""Stage 3: protocols as standing orders a director can defend — the structured content of each
service's protocol, built from sourced data (``domain/data/protocols.yaml``), the state rules in the
oversight plan and the oversight policy. Pure: no I/O beyond reading the packaged data.

Rules kept here: a bulk substance on FDA's 503A Category 2 list is never authorized; a compounded copy
of a commercially available drug is authorized only with a documented patient-specific clinical
difference; testosterone (and every service whose data says so) defaults to the FDA-approved product
unless the intake chose otherwise. A figure that is not verified stays ``unknown`` with what to check.
"""

from __future__ import annotations

import hashlib
from datetime import date
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

from domain.codes import MidlevelRole, Service
from domain.intake import Intake
from domain.onboarding import OversightPlan
from domain.renewals import policy as oversight_policy
from domain.rules import Sourced, parse_rule_data

UNKNOWN = "unknown"


class _Checked(Sourced):
    needs_review: str = ""


class _DoseFields(BaseModel):
    drug: str
    product: str
    route: str
    start: str
    titration: str
    maximum: str


class DrugDosing(_Checked, _DoseFields):
    """One drug and route of a service, as the data file sources it."""


class Lab(_Checked):
    test: str
    cadence: str


class Contraindication(_Checked):
    what: str


class AdverseEventRule(_Checked):
    event: str
    action: str
    severity: str
    threshold: str = ""


class ServiceProtocolData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_product: str
    drugs: list[DrugDosing] = Field(default_factory=list)
    labs: list[Lab] = Field(default_factory=list)
    contraindications: list[Contraindication] = Field(default_factory=list)
    adverse_events: list[AdverseEventRule] = Field(default_factory=list)


class NotCompoundable(Sourced):
    substance: str
    effective_from: date


class CopiesRule(Sourced):
    rule: str


class ProtocolLibrary(Sourced):
    version: int
    not_compoundable: list[NotCompoundable]
    commercially_available_copies: CopiesRule
    services: dict[Service, ServiceProtocolData]


@lru_cache(maxsize=1)
def protocol_library() -> ProtocolLibrary:
    text = resources.files("domain").joinpath("data", "protocols.yaml").read_text(encoding="utf-8")
    return parse_rule_data(ProtocolLibrary, text, "protocols.yaml")


# ---------------------------------------------------------------- the content (CONTRACT fields)
class Dosing(_DoseFields):
    """A drug in the protocol: authorized or not, and why."""

    authorized: bool
    why: str = ""
    source: str
    needs_review: str = ""


class Delegation(BaseModel):
    state: str
    role: str  # MD | NP | PA | RN
    may: list[str]
    supervision: str
    physician_duty: str
    source: str = "state_rules.yaml (see the oversight plan)"
    needs_review: str = ""


class Gfe(BaseModel):
    state: str
    who: str
    when: str
    mode: str
    source: str = "state_rules.yaml (see the oversight plan)"
    needs_review: str = ""


class ProtocolContent(BaseModel):
    service: Service
    version: str
    data_version: str = ""
    product: str = ""  # fda_approved | compounded | compounded_503a | compounded_503b ("" without data)
    delegation: list[Delegation]
    dosing: list[Dosing]
    gfe: list[Gfe]
    contraindications: list[Contraindication]
    labs: list[Lab]
    adverse_events: list[dict]

    def data_sha256(self) -> str:
        """SHA-256 of the content as canonical JSON (what an approval binds to with the document)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def contract_fields(self) -> dict:
        """The CONTRACT fields of ``mdco protocols show --json`` (besides service, version, sha256,
        status and document): delegation, dosing, gfe, contraindications, labs, adverse_events."""
        modes = {g.mode for g in self.gfe}
        mode = ("in_person" if "in_person" in modes else "telehealth_allowed" if modes == {"telehealth_allowed"}
                else UNKNOWN)
        return {
            "delegation": [d.model_dump(mode="json") for d in self.delegation],
            "dosing": [{"drug": d.drug, "route": d.route, "start": d.start, "titration": d.titration,
                        "max": d.maximum, "product": d.product, "authorized": d.authorized, "why": d.why,
                        "source": d.source, "needs_review": d.needs_review} for d in self.dosing],
            "gfe": {"required": True, "by": list(GFE_BY), "mode": mode,
                    "states": [g.model_dump(mode="json") for g in self.gfe]},
            "contraindications": [c.model_dump(mode="json") for c in self.contraindications],
            "labs": [lab.model_dump(mode="json") for lab in self.labs],
            "adverse_events": list(self.adverse_events),
        }


def _not_compoundable(drug: str, day: date, lib: ProtocolLibrary) -> NotCompoundable | None:
    return next((n for n in lib.not_compoundable if n.substance.lower() == drug.lower() and n.effective_from <= day),
                None)


def _dosing(service: Service, intake: Intake, day: date, lib: ProtocolLibrary) -> list[Dosing]:
    data = lib.services.get(service)
    if data is None:
        return []
    chosen = intake.product_choices.get(service)
    compounded = chosen in ("compounded_503a", "compounded_503b") or (chosen is None and data.default_product == "compounded")
    out = []
    for d in data.drugs:
        banned = _not_compoundable(d.drug, day, lib)
        if banned is not None:
            out.append(Dosing(**d.model_dump(exclude={"needs_review", "source"}), authorized=False,
                              why=f"FDA 503A Category 2 bulk substance since {banned.effective_from.isoformat()}: "
                                  "never authorized", source=banned.source))
            continue
        why = ""
        if compounded and data.default_product == "fda_approved":
            why = (f"compounded instead of {d.product}: only with a documented patient-specific clinical difference "
                   f"({lib.commercially_available_copies.source})")
        elif not compounded:
            why = f"FDA-approved product: {d.product}"
        out.append(Dosing(**d.model_dump(exclude={"needs_review", "source"}), authorized=True, why=why,
                          source=d.source, needs_review=d.needs_review))
    return out


#: who may perform the good-faith exam (never an RN)
GFE_BY = ("MD", "NP", "PA")


def _cap_for(sp, role: str) -> int | None:
    """The cap that counts ``role`` in this state (a plan from before per-role caps: the one cap)."""
    if not sp.ratio_caps:
        return sp.supervision_ratio_cap
    return next((c for roles, c in sp.ratio_caps.items() if role in roles.split("/")), None)


def _delegation(intake: Intake, plan: OversightPlan) -> list[Delegation]:
    out = []
    for st in intake.states:
        sp = plan.states.get(st)
        if sp is None:
            continue
        caps = {r: _cap_for(sp, r) for r in ("NP", "PA")}
        cap = {r: f"; at most {c} per physician" if c else "" for r, c in caps.items()}
        prescribe = ["perform the good-faith exam", "order the labs of this protocol",
                     "prescribe within this protocol's dosing"]
        out += [
            Delegation(state=st, role="MD", may=[*prescribe, "delegate within this protocol", "review charts"],
                       supervision=f"medical director, licensed in {st}",
                       physician_duty="chart review per the plan; answers adverse-event escalations"),
            Delegation(state=st, role=MidlevelRole.NP.value, may=prescribe,
                       supervision=UNKNOWN if sp.np_practice == UNKNOWN else f"NP practice: {sp.np_practice}{cap['NP']}",
                       physician_duty="collaborate/supervise as the state requires; chart review per the plan",
                       needs_review=(f"the state's NP practice rules{cap['NP']}" if sp.np_practice == UNKNOWN else "")),
            Delegation(state=st, role=MidlevelRole.PA.value, may=prescribe,
                       supervision=UNKNOWN if sp.pa_supervision == UNKNOWN else f"PA: {sp.pa_supervision}{cap['PA']}",
                       physician_duty="supervise per the PA practice act; chart review per the plan",
                       needs_review=(f"the state's PA supervision rules{cap['PA']}" if sp.pa_supervision == UNKNOWN else "")),
            Delegation(state=st, role=MidlevelRole.RN.value,
                       may=["administer under this standing order after a documented good-faith exam"],
                       supervision=UNKNOWN, physician_duty=UNKNOWN,
                       needs_review="the state board of nursing's delegation rules (RNs never diagnose or prescribe)",
                       source="state board of nursing (to check)"),
        ]
    return out


def _gfe(intake: Intake, plan: OversightPlan) -> list[Gfe]:
    return [Gfe(state=st, who="the medical director or a supervised NP/PA (never an RN)",
                when="before the first treatment and when the treatment plan changes",
                mode=plan.states[st].gfe_mode,
                needs_review=(f"whether {st} allows the exam by telehealth (until then: in person)"
                              if plan.states[st].gfe_mode == UNKNOWN else ""))
            for st in intake.states if st in plan.states]


def build_protocol(service: Service, intake: Intake, plan: OversightPlan, *, version: str = "") -> ProtocolContent:
    """The structured standing order for one service of the clinic, on the plan's date."""
    lib = protocol_library()
    data = lib.services.get(service)
    ack = oversight_policy().adverse_events
    escalation = [{"event": f"any {sev} adverse event", "action": f"report in mdco; the director acknowledges within {h:g} h, "
                   "else ops are told", "severity": sev, "threshold": "", "needs_review": "", "source": ack.source}
                  for sev, h in sorted(ack.ack_deadline_hours.items(), key=lambda kv: kv[1])]
    missing = [] if data is not None else [Contraindication(
        what=UNKNOWN, needs_review=f"no sourced protocol data for {service.value} yet", source="protocols.yaml")]
    return ProtocolContent(
        service=service, version=version or f"protocols.v{lib.version}", data_version=f"protocols.v{lib.version}",
        product=(intake.product_choices.get(service) or data.default_product) if data else "",
        delegation=_delegation(intake, plan), dosing=_dosing(service, intake, plan.as_of, lib), gfe=_gfe(intake, plan),
        contraindications=(data.contraindications if data else missing), labs=(data.labs if data else []),
        adverse_events=[*(r.model_dump() for r in (data.adverse_events if data else [])), *escalation])
