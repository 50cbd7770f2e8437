"""Protocols and agreements: versioned, strict templates with the plan's state overlays and signer anchors."""

from datetime import date

import pytest
from jinja2 import UndefinedError

from domain import documents
from domain.assessment import assess
from domain.codes import Service
from domain.documents import agreements_for, latest_template, render_agreement, render_protocol
from domain.intake import Intake, Midlevel, parse_intake
from domain.onboarding import AgreementSpec
from domain.records import PhysicianRecord

AS_OF = date(2026, 11, 1)
INTAKE = Intake.model_validate({
    "clinic_key": "glow-austin", "clinic_name": "Glow <Aesthetics> & Co", "contact": {
        "name": "Dana Reyes", "email": "dana@clinic.example", "phone": "+15125550100"},
    "states": ["TX", "OK", "CO"], "care_model": "hybrid",
    "services": [s.value for s in Service], "monthly_patients": 350,
    "locations": [{"state": "TX", "city": "Austin", "zip": "78701"}],
    "midlevels": [{"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP123456"},
                  {"name": "Pat Doe", "role": "PA", "state": "OK", "license_number": "PA77"},
                  {"name": "Rae Ng", "role": "RN", "state": "CO", "license_number": "RN1"}],
    "requested_start": "2026-12-15",
})
PLAN = assess(INTAKE, AS_OF)
DOC = PhysicianRecord.model_validate({
    "npi": "1234567893", "first_name": "Ana", "last_name": "Cruz", "degree": "MD", "email": "ana@md.example",
    "phone": "+15125550111", "home_state": "TX", "licenses": [{"state": "TX", "number": "Q1", "expires": "2028-01-01"}],
    "max_clinics": 5, "active_clinics": 1, "malpractice_expires": "2028-01-01"})


@pytest.mark.parametrize("service", list(Service))
def test_every_service_has_a_protocol_with_overlays(service):
    version, body = render_protocol(service, INTAKE, PLAN, DOC)
    assert version == f"{service.value}.v2"
    for needle in ("Scope and indications", "Contraindications", "Good-faith examination", "## 5. Dosing",
                   "Adverse events", "10% of charts every 30 days", "### TX", "### OK", "### CO",
                   "at most 7 per physician", "Dr. Ana Cruz, MD"):
        assert needle in body, needle
    if service in (Service.testosterone_hrt, Service.ketamine):
        assert "DEA schedule III" in body


def test_protocol_body_is_deterministic_and_has_the_dated_texas_iv_note():
    assert render_protocol("iv_nutrients", INTAKE, PLAN, DOC) == render_protocol("iv_nutrients", INTAKE, PLAN, DOC)
    assert "H.B. 3749" in render_protocol("iv_nutrients", INTAKE, PLAN, DOC)[1]


def test_agreements_needed():
    kinds = [s.agreement_kind for s in agreements_for(INTAKE, PLAN)]
    # one agreement where one suffices: in TX the prescriptive-authority agreement (Tex. Occ. Code §157.0512)
    # covers its NP/PAs, no second collaborative agreement; no CO agreement: only an RN there
    assert kinds == ["medical_director", "collaborative_practice_OK", "prescriptive_authority_TX"]
    assert {s.template_version for s in agreements_for(INTAKE, PLAN) if s.agreement_kind != "medical_director"} == {
        "collaborative_practice.v2"}
    solo = INTAKE.model_copy(update={"midlevels": []})
    assert [s.agreement_kind for s in agreements_for(solo, PLAN)] == ["medical_director"]


def test_agreements_render_with_anchors_signers_and_escaping():
    specs = {s.agreement_kind: s for s in agreements_for(INTAKE, PLAN)}
    html, signers = render_agreement(specs["medical_director"], INTAKE, PLAN, DOC)
    assert [(s.routing_order, s.role, s.anchor, s.date_anchor, s.email) for s in signers] == [
        (1, "clinic", "/sn1/", "/ds1/", "dana@clinic.example"), (2, "medical_director", "/sn2/", "/ds2/", "ana@md.example")]
    for anchor in ("/sn1/", "/sn2/", "/ds1/", "/ds2/"):
        assert anchor in html
    assert "Glow &lt;Aesthetics&gt; &amp; Co" in html and "<Aesthetics>" not in html
    assert f"USD {PLAN.quote.monthly_usd}" in html
    ok, _ = render_agreement(specs["collaborative_practice_OK"], INTAKE, PLAN, DOC)
    assert "Pat Doe" in ok and "Sam Lee" not in ok and "Collaboration" in ok
    pa, _ = render_agreement(specs["prescriptive_authority_TX"], INTAKE, PLAN, DOC)
    assert "Sam Lee" in pa and "Pat Doe" not in pa and "testosterone_hrt, ketamine" in pa


def test_texas_prescriptive_authority_agreement_has_the_statutory_elements():
    """Tex. Occ. Code §157.0512(e)-(f) as amended by H.B. 278 (2019): the elements and monthly meetings."""
    spec = next(s for s in agreements_for(INTAKE, PLAN) if s.agreement_kind == "prescriptive_authority_TX")
    pa, _ = render_agreement(spec, INTAKE, PLAN, DOC)
    for needle in ("Prescriptive authority agreement (Tex. Occ. Code §157.0512)", "This one agreement covers every",
                   "reviewed, signed and dated by the parties", "TX licence Q1", "AP123456", "Austin 78701",
                   "Consultation and referral", "Patient emergencies", "Communication and sharing of information",
                   "Alternate physicians", "chart review of 10% of charts every 30 days",
                   "meetings at least once a month, in a manner the physician and the\npractitioners determine",
                   "TX's own: 10% every 30 days, company policy", "at most 7 NP/PA per physician",
                   "at least once a month in a manner the physician and the APRN/PA determine"):
        assert needle in pa, needle
    assert "first 90 days" not in pa and "quarterly" not in pa


def test_an_agreement_listed_with_an_older_template_renders_that_version():
    """A running onboarding's specs were made before collaborative_practice.v2: they still render, in v1."""
    old = AgreementSpec(agreement_kind="collaborative_practice_TX", template_version="collaborative_practice.v1",
                        title="Collaborative Practice Agreement (TX) — old")
    html, _ = render_agreement(old, INTAKE, PLAN, DOC)
    assert "Template collaborative_practice.v1" in html and "Sam Lee" in html


MAILED = INTAKE.model_copy(update={"midlevels": [
    m.model_copy(update={"email": email}) for m, email in zip(INTAKE.midlevels, ("sam@np.example", None, "rae@rn.example"))
] + [Midlevel(name="Kim Ito", role="PA", state="TX", license_number="PA9", email="kim@pa.example")]})


def test_midlevel_email_is_optional_and_validated():
    assert INTAKE.midlevels[0].email is None
    problems = parse_intake({**INTAKE.model_dump(mode="json"), "midlevels": [
        {"name": "Sam Lee", "role": "NP", "state": "TX", "license_number": "AP1", "email": "not-an-email"}]})[1]
    assert [p.field for p in problems] == ["midlevels[0].email"]


def test_midlevels_with_email_sign_the_agreements_that_name_them_after_the_md():
    specs = {s.agreement_kind: s for s in agreements_for(MAILED, PLAN)}
    html, signers = render_agreement(specs["prescriptive_authority_TX"], MAILED, PLAN, DOC)
    assert [(s.routing_order, s.role, s.email, s.anchor, s.date_anchor) for s in signers] == [
        (1, "clinic", "dana@clinic.example", "/sn1/", "/ds1/"),
        (2, "medical_director", "ana@md.example", "/sn2/", "/ds2/"),
        (3, "midlevel", "sam@np.example", "/sn3/", "/ds3/"),
        (4, "midlevel", "kim@pa.example", "/sn4/", "/ds4/")]
    for anchor in ("/sn3/", "/ds3/", "/sn4/", "/ds4/"):
        assert html.count(anchor) == 1, anchor
    # OK's PA has no e-mail: named in the document, not routed to; the RN in CO never signs
    ok, ok_signers = render_agreement(specs["collaborative_practice_OK"], MAILED, PLAN, DOC)
    assert [s.role for s in ok_signers] == ["clinic", "medical_director"] and "Pat Doe" in ok and "/sn3/" not in ok
    md, md_signers = render_agreement(specs["medical_director"], MAILED, PLAN, DOC)
    assert [s.role for s in md_signers] == ["clinic", "medical_director"] and "/sn3/" not in md
    assert "Sam Lee" in md  # named as overseen, but the MD agreement is signed by clinic + MD only


def test_send_agreement_routes_the_envelope_to_every_signer(esign_server, tmp_path):
    """Activity-level check on the local e-sign server: ``send_agreement`` maps routing order to
    recipient id, so the envelope carries clinic, MD and both e-mailed TX midlevels, in order."""
    from temporalio.testing import ActivityEnvironment

    from activities.onboarding import OnboardingActivities
    from domain.messages import AgreementRequest
    from esign.sandbox import list_envelopes
    from store import roster
    from store.db import init_db, make_engine

    settings, _ = esign_server
    settings = settings.model_copy(update={"var_dir": tmp_path, "docusign_ca_cert": settings.resolved_docusign_ca_cert,
                                           "docusign_private_key_path": settings.resolved_docusign_private_key_path})
    engine = make_engine(f"sqlite:///{tmp_path / 'mdco.db'}")
    init_db(engine)
    roster.upsert_physicians(engine, [DOC])
    wf = f"onboarding-signers-{tmp_path.name[-12:]}".lower().replace("_", "-")
    spec = next(s for s in agreements_for(MAILED, PLAN) if s.agreement_kind == "prescriptive_authority_TX")
    acts = OnboardingActivities(settings, engine)
    try:
        view = ActivityEnvironment().run(acts.send_agreement, AgreementRequest(
            workflow_id=wf, intake=MAILED, plan=PLAN, npi=DOC.npi, spec=spec))
    finally:
        engine.dispose()
    [env] = list_envelopes(settings, f"{wf}:")
    assert env["envelopeId"] == view.envelope_id and env["status"] == "sent"
    assert [(r["recipientId"], r["routingOrder"]) for r in env["recipients"]] == [
        ("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")]


def test_bad_agreement_specs_are_rejected():
    with pytest.raises(ValueError, match="not an agreement for this clinic"):
        render_agreement(AgreementSpec(agreement_kind="collaborative_practice_NY", template_version="collaborative_practice.v1",
                                       title="x"), INTAKE, PLAN, DOC)
    with pytest.raises(ValueError, match="no NP/PA midlevels in CO"):
        render_agreement(AgreementSpec(agreement_kind="collaborative_practice_CO", template_version="collaborative_practice.v1",
                                       title="x"), INTAKE, PLAN, DOC)
    with pytest.raises(ValueError, match="no template medical_director.v0 \\(the latest is medical_director.v1\\)"):
        render_agreement(AgreementSpec(agreement_kind="medical_director", template_version="medical_director.v0",
                                       title="x"), INTAKE, PLAN, DOC)


def test_templates_are_strict_and_versioned():
    assert latest_template("agreements", "medical_director") == ("agreements/medical_director.v1.html.j2",
                                                                 "medical_director.v1")
    with pytest.raises(documents.TemplateNotFound):
        latest_template("protocols", "botox")
    template = documents._env().get_template("agreements/medical_director.v1.html.j2")
    with pytest.raises(UndefinedError):
        template.render(title="only a title")
