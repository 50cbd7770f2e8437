"""Protocols and agreements rendered from versioned Jinja2 templates in ``domain/templates``.

Templates are named ``<name>.v<N>.<ext>.j2``; the highest N is used and its version string
(``<name>.v<N>``) is recorded with the document, so an approval always points at the exact text.
Rendering is strict (a missing value is an error, never a blank), and HTML is autoescaped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel

from domain.codes import MidlevelRole, Service
from domain.intake import Intake, Midlevel
from domain.onboarding import AgreementSpec, OversightPlan
from domain.protocols import ProtocolContent, build_protocol
from domain.records import PhysicianRecord
from domain.rules import service_catalog

_VERSIONED = re.compile(r"^(?P<dir>[a-z_]+)/(?P<name>[a-z0-9_]+)\.v(?P<n>[0-9]+)\.(?P<ext>md|html)\.j2$")
_SUPERVISED_ROLES = (MidlevelRole.NP, MidlevelRole.PA)


class SignerSpec(BaseModel):
    """A signer of an agreement, with the anchor strings the e-sign tabs attach to."""

    name: str
    email: str
    routing_order: int
    role: str  # clinic | medical_director | midlevel
    anchor: str  # signature tab anchor, e.g. /sn1/
    date_anchor: str = ""  # date-signed tab anchor, e.g. /ds1/


class TemplateNotFound(LookupError):
    """No template for that document name."""


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("domain", "templates"),
        undefined=StrictUndefined,
        autoescape=lambda name: name is not None and ".html" in name,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=64)
def latest_template(directory: str, name: str) -> tuple[str, str]:
    """``(template path, version string)`` of the highest version of ``directory/name``."""
    best: tuple[int, str] | None = None
    for path in _env().list_templates():
        m = _VERSIONED.match(path)
        if m and m["dir"] == directory and m["name"] == name:
            if best is None or int(m["n"]) > best[0]:
                best = (int(m["n"]), path)
    if best is None:
        raise TemplateNotFound(f"no template {directory}/{name}.v<N>.*.j2")
    return best[1], f"{name}.v{best[0]}"


def _common(intake: Intake, plan: OversightPlan, physician: PhysicianRecord) -> dict[str, Any]:
    return {
        "clinic_name": intake.clinic_name,
        "clinic_key": intake.clinic_key,
        "care_model": intake.care_model.value,
        "states": list(intake.states),
        "services": [s.value for s in intake.services],
        "state_plans": [plan.states[s] for s in intake.states if s in plan.states],
        "dea_states": plan.dea_required_states,
        "chart_review": plan.chart_review,
        "oversight_mode": plan.oversight_mode,
        "quote": plan.quote,
        "physician_name": physician.display_name,
        "physician_npi": physician.npi,
        "requested_start": intake.requested_start.isoformat(),
        "effective": intake.requested_start.isoformat(),
    }


def protocol_document(service: Service | str, intake: Intake, plan: OversightPlan,
                      physician: PhysicianRecord) -> tuple[str, str, ProtocolContent]:
    """``(template_version, markdown body, content)`` of one service's standing order: the content from
    ``domain.protocols.build_protocol`` (sourced data, the plan's state rules), rendered by the latest
    ``protocols/<service>`` template. A fact that is ``unknown`` reads "needs review: <what to check>"."""
    service = Service(service)
    path, version = latest_template("protocols", service.value)
    content = build_protocol(service, intake, plan, version=version)
    info = service_catalog().services[service]
    body = _env().get_template(path).render(
        **_common(intake, plan, physician), template_version=version, service=info, content=content,
        as_of=plan.as_of.isoformat(), sources=_sources(content),
        pharmacy_model=plan.pharmacy_model.get(service.value, info.pharmacy_model))
    return version, body, content


def render_protocol(service: Service | str, intake: Intake, plan: OversightPlan,
                    physician: PhysicianRecord) -> tuple[str, str]:
    """``(template_version, markdown body)`` of the standing-order protocol for one service."""
    version, body, _ = protocol_document(service, intake, plan, physician)
    return version, body


def _sources(content: ProtocolContent) -> list[str]:
    """Every source the protocol cites, once, in the order they first appear."""
    found = [*(d.source for d in content.delegation), *(g.source for g in content.gfe),
             *(c.source for c in content.contraindications), *(d.source for d in content.dosing),
             *(lab.source for lab in content.labs), *(e["source"] for e in content.adverse_events)]
    return list(dict.fromkeys(s for s in found if s))


def _supervised(intake: Intake, state: str) -> list[Midlevel]:
    return [m for m in intake.midlevels if m.state == state and m.role in _SUPERVISED_ROLES]


def agreements_for(intake: Intake, plan: OversightPlan) -> list[AgreementSpec]:
    """The agreements this clinic needs: the medical-director agreement always, a collaborative
    practice agreement per state with NP/PA midlevels, except Texas, where the one prescriptive-authority
    agreement of Tex. Occ. Code §157.0512 covers every NP/PA there (one agreement where one suffices)."""
    _, md_version = latest_template("agreements", "medical_director")
    specs = [AgreementSpec(agreement_kind="medical_director", template_version=md_version,
                           title=f"Medical Director Agreement — {intake.clinic_name}")]
    _, cp_version = latest_template("agreements", "collaborative_practice")
    for st in intake.states:
        if _supervised(intake, st) and st != "TX":
            specs.append(AgreementSpec(agreement_kind=f"collaborative_practice_{st}", template_version=cp_version,
                                       title=f"Collaborative Practice Agreement ({st}) — {intake.clinic_name}"))
    if "TX" in intake.states and _supervised(intake, "TX"):
        specs.append(AgreementSpec(agreement_kind="prescriptive_authority_TX", template_version=cp_version,
                                   title=f"Prescriptive Authority Agreement (TX) — {intake.clinic_name}"))
    return specs


def signers_for(intake: Intake, physician: PhysicianRecord,
                midlevels: list[Midlevel] | None = None) -> list[SignerSpec]:
    """Routing order: the clinic contact (1), then the medical director (2), then each NP/PA named by
    the agreement who has an e-mail (3, 4, …). A midlevel without an e-mail is named in the document
    but not routed to (their acknowledgment is collected outside the envelope)."""
    signers = [
        SignerSpec(name=intake.contact.name, email=str(intake.contact.email), routing_order=1, role="clinic",
                   anchor="/sn1/", date_anchor="/ds1/"),
        SignerSpec(name=physician.display_name, email=str(physician.email), routing_order=2, role="medical_director",
                   anchor="/sn2/", date_anchor="/ds2/"),
    ]
    for m in midlevels or []:
        if m.role in _SUPERVISED_ROLES and m.email:
            n = len(signers) + 1
            signers.append(SignerSpec(name=m.name, email=str(m.email), routing_order=n, role="midlevel",
                                      anchor=f"/sn{n}/", date_anchor=f"/ds{n}/"))
    return signers


_ROLE_TITLES = {"clinic": "For the Clinic", "medical_director": "Medical Director", "midlevel": "Practitioner"}
PROTOCOL_PACKET = "protocol_packet"


def protocol_packet_spec(intake: Intake, sha256s: list[str]) -> AgreementSpec:
    """The protocol packet as an agreement of its own kind, bound to the approved documents' SHA-256s."""
    _, version = latest_template("agreements", PROTOCOL_PACKET)
    return AgreementSpec(agreement_kind=PROTOCOL_PACKET, template_version=version, sha256s=sorted(sha256s),
                         title=f"Protocol Packet — {intake.clinic_name}")


def packet_signers(intake: Intake, physician: PhysicianRecord) -> list[SignerSpec]:
    """The medical director signs first (1); then every midlevel with an e-mail, whatever their role
    (standing orders bind RNs too), acknowledges in parallel (2). The clinic contact does not sign."""
    signers = [SignerSpec(name=physician.display_name, email=str(physician.email), routing_order=1,
                          role="medical_director", anchor="/sn1/", date_anchor="/ds1/")]
    for m in intake.midlevels:
        if m.email:
            n = len(signers) + 1
            signers.append(SignerSpec(name=m.name, email=str(m.email), routing_order=2, role="midlevel",
                                      anchor=f"/sn{n}/", date_anchor=f"/ds{n}/"))
    return signers


def render_protocol_packet(spec: AgreementSpec, intake: Intake, plan: OversightPlan, physician: PhysicianRecord,
                           protocols: list[dict]) -> tuple[str, list[SignerSpec]]:
    """``(cover html, signers)`` of the protocol packet; ``protocols`` (``service``, ``template_version``,
    ``sha256``) must be exactly the approved documents the spec names, or nothing is sent."""
    shown = sorted(p["sha256"] for p in protocols)
    if shown != sorted(spec.sha256s):
        raise ValueError("protocol_packet: the stored protocols are not the approved ones (their SHA-256s differ); "
                         "they need a new approval")
    signers = packet_signers(intake, physician)
    html = _render_signed(PROTOCOL_PACKET, spec, intake, plan, physician, signers, acknowledging=len(signers) > 1,
                          protocols=sorted(protocols, key=lambda p: p["service"]))
    return html, signers


def _render_signed(name: str, spec: AgreementSpec, intake: Intake, plan: OversightPlan,
                   physician: PhysicianRecord, signers: list[SignerSpec], **extra: Any) -> str:
    """Render ``agreements/<name>`` with its signature blocks, in exactly the template version the spec
    names: an onboarding that listed its agreements before a newer version still sends the text it listed."""
    context = _common(intake, plan, physician)
    context["signers"] = [{**s.model_dump(), "role_title": _ROLE_TITLES[s.role]} for s in signers]
    context["title"] = spec.title
    version = spec.template_version
    path = f"agreements/{version}.html.j2"
    if not version.startswith(f"{name}.v") or path not in _env().list_templates():
        raise ValueError(f"agreement {spec.agreement_kind}: no template {version} "
                         f"(the latest is {latest_template('agreements', name)[1]})")
    return _env().get_template(path).render(**context, **extra, template_version=version)


def render_agreement(spec: AgreementSpec, intake: Intake, plan: OversightPlan,
                     physician: PhysicianRecord) -> tuple[str, list[SignerSpec]]:
    """``(html, signers)`` for one agreement; the HTML carries /snN/ and /dsN/ anchors per signer."""
    kind = spec.agreement_kind
    signing_midlevels: list[Midlevel] = []  # the medical-director agreement: clinic and MD only
    if kind == "medical_director":
        name, extra = "medical_director", {"midlevels": list(intake.midlevels)}
    else:
        m = re.fullmatch(r"(collaborative_practice|prescriptive_authority)_([A-Z]{2})", kind)
        if not m or m[2] not in intake.states:
            raise ValueError(f"agreement_kind {kind!r} is not an agreement for this clinic's states")
        state = m[2]
        midlevels = _supervised(intake, state)
        if not midlevels:
            raise ValueError(f"agreement_kind {kind!r}: no NP/PA midlevels in {state}")
        name = "collaborative_practice"
        lic = physician.license_in(state)
        extra = {"state": state, "state_plan": plan.states[state], "midlevels": midlevels,
                 "prescriptive_authority": m[1] == "prescriptive_authority",
                 "controlled": [s.value for s in intake.controlled_services],
                 "locations": list(intake.locations), "physician_license": lic.number if lic else ""}
        signing_midlevels = midlevels
    signers = signers_for(intake, physician, signing_midlevels)
    return _render_signed(name, spec, intake, plan, physician, signers, **extra), signers
