"""Per-onboarding records: every upsert is idempotent, answers never regress, audit de-duplicates."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest

from domain.intake import Intake
from domain.onboarding import OversightPlan, Quote, StatePlan
from store import agreements, audit, common, onboardings, roster
from tests.db_fixtures import npi_for, pharmacy_record, physician_record

WF = "onboarding-glow-austin"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INTAKE = {
    "clinic_key": "glow-austin", "clinic_name": "Glow Aesthetics Austin LLC",
    "contact": {"name": "Dana Reyes", "email": "dana@glow.example", "phone": "+15125550100"},
    "states": ["TX", "OK"], "care_model": "hybrid", "services": ["neurotoxins", "testosterone_hrt"],
    "monthly_patients": 350, "locations": [], "midlevels": [], "requested_start": "2026-12-15",
}


def test_clinic_upsert_activate_and_status(engine) -> None:
    intake = Intake.model_validate(INTAKE)
    roster.upsert_physicians(engine, [physician_record(1)])
    onboardings.upsert_clinic(engine, intake)
    onboardings.upsert_clinic(engine, intake)
    clinic = onboardings.get_clinic(engine, "glow-austin")
    assert (clinic["status"], clinic["states"], clinic["intake"]["clinic_key"]) == ("pending", ["TX", "OK"], "glow-austin")

    onboardings.activate_clinic(engine, "glow-austin", npi_for(1), T0)
    onboardings.upsert_clinic(engine, intake.model_copy(update={"clinic_name": "Glow Renamed"}))  # keeps the status
    clinic = onboardings.get_clinic(engine, "glow-austin")
    assert (clinic["status"], clinic["physician_npi"], clinic["activated_at"], clinic["name"]) == (
        "active", npi_for(1), T0, "Glow Renamed")

    onboardings.set_clinic_status(engine, "glow-austin", "cancelled")
    assert onboardings.get_clinic(engine, "glow-austin")["status"] == "cancelled"
    with pytest.raises(ValueError, match="status: 'closed' is not one of"):
        onboardings.set_clinic_status(engine, "glow-austin", "closed")
    with pytest.raises(common.NotFound, match="clinic_key nope"):
        onboardings.activate_clinic(engine, "nope", npi_for(1), T0)


def test_onboarding_record_and_plan(engine) -> None:
    onboardings.record_onboarding(engine, WF, "glow-austin", stage="needs_assessment", started_at=T0)
    onboardings.record_onboarding(engine, WF, "glow-austin", stage="matching", sla_status="at_risk")
    onboardings.record_onboarding(engine, WF, "glow-austin", stage="matching", sla_status="at_risk")
    row = onboardings.get_onboarding(engine, WF)
    assert (row["stage"], row["sla_status"], row["started_at"], row["plan"]) == ("matching", "at_risk", T0, None)

    plan = OversightPlan(as_of=date(2026, 12, 1), states={"TX": StatePlan(state="TX", dea_required=True)},
                         dea_required_states=["TX"], quote=Quote(monthly_usd=1500))
    onboardings.save_plan(engine, WF, plan)
    assert onboardings.get_plan(engine, WF) == plan
    with pytest.raises(ValueError, match="stage: 'done' is not one of"):
        onboardings.record_onboarding(engine, WF, "glow-austin", stage="done")
    with pytest.raises(ValueError, match="colour: not an onboarding field"):
        onboardings.record_onboarding(engine, WF, "glow-austin", colour="red")
    with pytest.raises(common.NotFound):
        onboardings.save_plan(engine, "onboarding-unknown", plan)
    assert onboardings.get_onboarding(engine, "onboarding-unknown") is None


def test_offers_upsert_never_reopen_and_history(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1), physician_record(2), physician_record(3)])
    exp = T0 + timedelta(hours=4)
    for n in (1, 2):
        onboardings.upsert_offer(engine, WF, npi_for(n), "open", T0, exp)
        onboardings.upsert_offer(engine, WF, npi_for(n), "open", T0, exp)
    onboardings.upsert_offer(engine, WF, npi_for(1), "accepted", T0, exp, answered_at=T0 + timedelta(hours=1))
    onboardings.upsert_offer(engine, WF, npi_for(2), "declined", T0, exp, answered_at=T0 + timedelta(hours=3), reason="busy")
    onboardings.upsert_offer(engine, WF, npi_for(1), "open", T0, exp)  # a late retry of the send activity
    offers = {o.npi: o for o in onboardings.list_offers(engine, WF)}
    assert len(offers) == 2
    assert (offers[npi_for(1)].status, offers[npi_for(2)].reason) == ("accepted", "busy")

    # a second onboarding: npi 1 declines after 3 h, npi 3 never answers
    onboardings.upsert_offer(engine, "onboarding-b", npi_for(1), "declined", T0, exp, answered_at=T0 + timedelta(hours=3))
    onboardings.upsert_offer(engine, "onboarding-b", npi_for(3), "expired", T0, exp)
    history = onboardings.offer_history(engine)
    assert history == {npi_for(1): (2.0, 0.5), npi_for(2): (3.0, 0.0)}
    assert onboardings.offer_history(engine, [npi_for(2)]) == {npi_for(2): (3.0, 0.0)}

    with pytest.raises(ValueError, match="status: 'maybe'"):
        onboardings.upsert_offer(engine, WF, npi_for(1), "maybe", T0, exp)
    with pytest.raises(common.NotFound, match="no such physician"):
        onboardings.upsert_offer(engine, WF, npi_for(9), "open", T0, exp)


def test_protocols_saved_once_and_reapproval_on_change(engine) -> None:
    body = "Neurotoxin protocol v1"
    sha = hashlib.sha256(body.encode()).hexdigest()
    onboardings.save_protocol(engine, WF, "neurotoxins", "2026.1", body, sha)
    onboardings.save_protocol(engine, WF, "neurotoxins", "2026.1", body, sha)
    assert [p.status for p in onboardings.list_protocols(engine, WF)] == ["pending_approval"]
    assert onboardings.approve_protocols(engine, WF, npi_for(1), T0) == 1
    assert onboardings.approve_protocols(engine, WF, npi_for(1), T0) == 0
    onboardings.save_protocol(engine, WF, "neurotoxins", "2026.1", body, sha)  # unchanged: stays approved
    assert onboardings.list_protocols(engine, WF)[0].status == "approved"
    body2 = body + " (TX overlay)"
    onboardings.save_protocol(engine, WF, "neurotoxins", "2026.2", body2, hashlib.sha256(body2.encode()).hexdigest())
    assert onboardings.list_protocols(engine, WF)[0].status == "pending_approval"
    with pytest.raises(ValueError, match="sha256: does not match"):
        onboardings.save_protocol(engine, WF, "laser", "2026.1", body, "0" * 64)
    with pytest.raises(ValueError, match=r"service\[0\]: 'botox'"):
        onboardings.save_protocol(engine, WF, "botox", "2026.1", body, sha)


def test_pharmacy_assignment_confirmation_sticks(engine) -> None:
    roster.upsert_pharmacies(engine, [pharmacy_record("austin-rx")])
    onboardings.upsert_pharmacy_assignment(engine, WF, "austin-rx", ["testosterone_hrt"], "packet_sent", T0)
    onboardings.upsert_pharmacy_assignment(engine, WF, "austin-rx", ["testosterone_hrt"], "packet_sent", T0)
    onboardings.upsert_pharmacy_assignment(engine, WF, "austin-rx", ["testosterone_hrt"], "confirmed", T0)
    onboardings.upsert_pharmacy_assignment(engine, WF, "austin-rx", ["testosterone_hrt"], "packet_sent", T0)
    [got] = onboardings.list_pharmacy_assignments(engine, WF)
    assert (got.pharmacy_id, got.kind, got.status, got.name) == ("austin-rx", "503A", "confirmed", "austin-rx Compounding")
    with pytest.raises(common.NotFound, match="pharmacy_id ghost"):
        onboardings.upsert_pharmacy_assignment(engine, WF, "ghost", [], "packet_sent", T0)


def test_agreements_upsert_by_kind_and_envelope(engine) -> None:
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", document_path="/d/md.pdf", sha256="ab" * 32)
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", envelope_id="env-1", status="sent", status_at=T0)
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", envelope_id="env-1", status="sent", status_at=T0)
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", status="completed", status_at=T0 + timedelta(hours=2))
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", status="delivered", status_at=T0 + timedelta(hours=1))
    got = agreements.get_agreement(engine, WF, "medical_director")
    assert (got["status"], got["envelope_id"], got["sent_at"], got["completed_at"], got["document_path"]) == (
        "completed", "env-1", T0, T0 + timedelta(hours=2), "/d/md.pdf")
    assert agreements.agreement_by_envelope(engine, "env-1")["kind"] == "medical_director"
    # the same send again, later (a workflow reset re-runs it): the completed envelope stays completed
    agreements.upsert_agreement(engine, WF, "medical_director", "v3", envelope_id="env-1", status="sent",
                                status_at=T0 + timedelta(days=2))
    assert agreements.get_agreement(engine, WF, "medical_director")["status"] == "completed"

    agreements.upsert_agreement(engine, WF, "collaborative_practice_TX", "v1", envelope_id="env-2", status="sent", status_at=T0)
    with pytest.raises(ValueError, match="envelope_id env-2: already belongs"):
        agreements.upsert_agreement(engine, WF, "medical_director", "v3", envelope_id="env-2")
    # void and resend: the new envelope starts afresh
    agreements.upsert_agreement(engine, WF, "collaborative_practice_TX", "v1", envelope_id="env-3", status="sent",
                          status_at=T0 + timedelta(days=1))
    assert agreements.agreement_by_envelope(engine, "env-2") is None
    assert [a["kind"] for a in agreements.list_agreements(engine, WF)] == ["collaborative_practice_TX", "medical_director"]
    assert agreements.get_agreement(engine, WF, "collaborative_practice_TX")["sent_at"] == T0 + timedelta(days=1)
    assert agreements.get_agreement(engine, WF, "nope") is None


def test_audit_idem_key_and_notifications(engine) -> None:
    assert audit.audit(engine, WF, "ops", "plan_approved", {"findings": 2, "at": T0}, reason="reviewed", at=T0,
                      idem_key=f"{WF}:plan_approved")
    assert not audit.audit(engine, WF, "ops", "plan_approved", {"findings": 2}, idem_key=f"{WF}:plan_approved")
    assert audit.audit(engine, WF, "system", "note", at=T0 + timedelta(minutes=1))
    assert audit.audit(engine, WF, "system", "note", at=T0 + timedelta(minutes=1))  # no key: a real second entry
    entries = audit.list_audit(engine, WF)
    assert [e["action"] for e in entries] == ["plan_approved", "note", "note"]
    assert entries[0]["detail"] == {"findings": 2, "at": "2026-12-01T09:00:00Z"} and entries[0]["at"] == T0
    with pytest.raises(ValueError, match="actor"):
        audit.audit(engine, WF, "", "x")

    assert not audit.notification_sent(engine, f"{WF}:launch:clinic")
    assert audit.mark_notification_sent(engine, f"{WF}:launch:clinic", "clinic", "You are live")
    assert not audit.mark_notification_sent(engine, f"{WF}:launch:clinic", "clinic", "You are live")
    assert audit.notification_sent(engine, f"{WF}:launch:clinic")


def test_protocols_shown_with_content_and_approval_bound_to_sha256s(engine) -> None:
    from domain.assessment import assess
    from domain.codes import Service
    from domain.protocols import build_protocol

    intake = Intake.model_validate(INTAKE)
    plan = assess(intake, date(2026, 11, 1))
    onboardings.upsert_clinic(engine, intake)
    onboardings.record_onboarding(engine, WF, "glow-austin", stage="protocol_setup", sla_status="on_track",
                                  started_at=T0)
    onboardings.save_plan(engine, WF, plan)
    shas = {}
    for service in ("neurotoxins", "testosterone_hrt"):
        content = build_protocol(Service(service), intake, plan, version=f"{service}.v2")
        body = f"standing order {service}"
        shas[service] = hashlib.sha256(body.encode()).hexdigest()
        # testosterone is saved without content, as before contents were kept: rebuilt for show
        onboardings.save_protocol(engine, WF, service, f"{service}.v2", body, shas[service],
                                  content=content.model_dump(mode="json") if service == "neurotoxins" else None)
    shown = {p["service"]: p for p in onboardings.protocols_shown(engine, WF)}
    neuro, trt = shown["neurotoxins"], shown["testosterone_hrt"]
    for p in (neuro, trt):
        assert set(p) >= {"service", "version", "sha256", "status", "document", "delegation", "dosing", "gfe",
                          "contraindications", "labs", "adverse_events"}
        assert hashlib.sha256(p["document"].encode()).hexdigest() == p["sha256"] and p["status"] == "pending_approval"
    assert neuro["content_matches_document"] and not trt["content_matches_document"]
    assert trt["dosing"][0] | {"max": "50 to 400 mg every 2 to 4 weeks (labelled range)"} == trt["dosing"][0]
    assert {d["role"] for d in neuro["delegation"]} == {"MD", "NP", "PA", "RN"}
    assert trt["gfe"]["required"] and trt["gfe"]["by"] == ["MD", "NP", "PA"]

    # an approval bound to one document's SHA-256 approves that one only
    assert onboardings.approve_protocols(engine, WF, npi_for(1), T0, sha256s=[shas["neurotoxins"], "f" * 64]) == 1
    assert [p.status for p in onboardings.list_protocols(engine, WF)] == ["approved", "pending_approval"]
    with pytest.raises(common.NotFound):
        onboardings.protocols_shown(engine, "onboarding-nobody")
