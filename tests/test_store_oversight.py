"""store/oversight.py on SQLite and Postgres: renewal notices once per step and expiry, suspensions,
chart reviews (only the director submits), adverse events, offboarding."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from domain.intake import Intake
from domain.renewals import LAPSED, Credential
from store import oversight, onboardings, roster
from store.common import NotFound
from store.oversight import Refused
from store.tables import now_utc
from tests.db_fixtures import npi_for, physician_record
from tests.fake_activities import sample_intake

pytestmark = pytest.mark.timeout(60)


def live_clinic(engine, n: int = 1) -> str:
    key = f"clinic-{uuid.uuid4().hex[:8]}"
    roster.upsert_physicians(engine, [physician_record(n, ("TX", "OK"))])
    onboardings.upsert_clinic(engine, Intake.model_validate(sample_intake(key)))
    onboardings.activate_clinic(engine, key, npi_for(n), now_utc())
    return key


def test_a_notice_is_recorded_once_per_credential_expiry_and_step(engine):
    c = Credential(credential="license", holder_id=npi_for(1), state="TX", expires_on=date(2027, 3, 1))
    assert oversight.record_notice(engine, c, 30, ["b", "a"])
    assert not oversight.record_notice(engine, c, 30, ["a"])  # a retried sweep
    assert oversight.record_notice(engine, c, LAPSED, ["a"])
    moved = c.model_copy(update={"expires_on": date(2028, 3, 1)})
    assert oversight.record_notice(engine, moved, 30, ["a"])  # a new expiry date: its own ladder
    sent = oversight.sent_notices(engine, [c.key])
    assert sorted((r.expires_on, str(r.step)) for r in sent) == [
        (date(2027, 3, 1), "30"), (date(2027, 3, 1), "lapsed"), (date(2028, 3, 1), "30")]
    assert oversight.sent_notices(engine, ["nothing"]) == []
    assert [n["clinics"] for n in oversight.list_notices(engine, "b")] == [["a", "b"]]
    assert len(oversight.list_notices(engine)) == 3
    with pytest.raises(ValueError):
        oversight.record_notice(engine, c, "soon", ["a"])


def test_suspensions_are_idempotent_and_can_be_lifted(engine):
    at = now_utc()
    assert oversight.suspend(engine, "clinic-a", "TX", "license:x:TX:-", "licence lapsed", at)
    assert not oversight.suspend(engine, "clinic-a", "TX", "exclusion:x", "excluded", at)  # keeps the first cause
    (row,) = oversight.suspensions(engine, "clinic-a")
    assert (row["state"], row["cause"]) == ("TX", "license:x:TX:-")
    assert oversight.lift(engine, "clinic-a", "TX", at) and not oversight.lift(engine, "clinic-a", "TX", at)
    assert oversight.suspensions(engine, "clinic-a") == []
    assert len(oversight.suspensions(engine, "clinic-a", active_only=False)) == 1
    assert oversight.suspend(engine, "clinic-a", "TX", "exclusion:x", "excluded", at)  # suspended again
    assert oversight.suspensions(engine, "clinic-a")[0]["cause"] == "exclusion:x"


def test_only_the_clinics_director_submits_a_review(engine):
    key = live_clinic(engine, 1)
    roster.upsert_physicians(engine, [physician_record(2, ("TX",))])
    opened = now_utc()
    rid = f"{key}-cr-1"
    assert oversight.open_review(engine, rid, key, npi_for(1), 1, 10, opened, opened + timedelta(days=14))
    assert not oversight.open_review(engine, rid, key, npi_for(1), 1, 10, opened, opened + timedelta(days=14))
    row = oversight.get_review(engine, rid)
    assert oversight.review_status(row, opened) == "open"
    assert oversight.review_status(row, opened + timedelta(days=15)) == "overdue"
    assert [r["review_id"] for r in oversight.overdue_reviews(engine, opened + timedelta(days=15))] == [rid]
    with pytest.raises(Refused, match="not the medical director"):
        oversight.submit_review(engine, rid, npi_for(2), 10, 0, "", opened)
    with pytest.raises(ValueError, match="more than"):
        oversight.submit_review(engine, rid, npi_for(1), 3, 4, "", opened)
    with pytest.raises(NotFound):
        oversight.submit_review(engine, "nope", npi_for(1), 3, 0, "", opened)
    assert oversight.get_review(engine, rid)["status"] == "open"  # nothing changed by the refusals
    done = oversight.submit_review(engine, rid, npi_for(1), 35, 2, "two missing GFEs", opened + timedelta(days=3))
    assert (done["status"], done["charts_reviewed"], done["deficiencies"]) == ("submitted", 35, 2)
    assert oversight.submit_review(engine, rid, npi_for(1), 35, 2, "", opened)["notes"] == "two missing GFEs"
    with pytest.raises(Refused, match="already submitted"):
        oversight.submit_review(engine, rid, npi_for(1), 36, 2, "", opened)
    assert oversight.review_status(oversight.get_review(engine, rid), opened + timedelta(days=30)) == "submitted"
    assert oversight.overdue_reviews(engine, opened + timedelta(days=30)) == []
    assert oversight.mark_review_escalated(engine, rid, "director")
    assert not oversight.mark_review_escalated(engine, rid, "director")
    assert oversight.mark_review_escalated(engine, rid, "director+3")
    for bad in ("boss", "ops+3", "director+", "director+x"):
        with pytest.raises(ValueError, match="level"):
            oversight.mark_review_escalated(engine, rid, bad)
    assert [r["review_id"] for r in oversight.list_reviews(engine, key)] == [rid]


def test_adverse_events_are_acknowledged_by_the_director_or_escalated(engine):
    key = live_clinic(engine, 3)
    at = now_utc()
    ev = oversight.report_event(engine, "ae-1", key, "serious", "syncope after IV", at, at + timedelta(hours=24))
    assert ev["status"] == "open"
    assert oversight.report_event(engine, "ae-1", key, "serious", "other", at, at)["summary"] == "syncope after IV"
    with pytest.raises(ValueError, match="severity"):
        oversight.report_event(engine, "ae-2", key, "deadly", "x", at, at)
    with pytest.raises(NotFound):
        oversight.report_event(engine, "ae-3", "no-such-clinic", "minor", "x", at, at)
    with pytest.raises(Refused):
        oversight.ack_event(engine, "ae-1", npi_for(4), "", at)
    assert oversight.escalate_event(engine, "ae-1", at) and not oversight.escalate_event(engine, "ae-1", at)
    acked = oversight.ack_event(engine, "ae-1", npi_for(3), "seen", at + timedelta(hours=30))
    assert (acked["status"], acked["acked_by"]) == ("acknowledged", npi_for(3))
    assert not oversight.escalate_event(engine, "ae-1", at)
    assert [e["event_id"] for e in oversight.list_events(engine, key)] == ["ae-1"]


def test_offboarding_takes_the_clinic_out_of_oversight(engine):
    key = live_clinic(engine, 5)
    assert key in [c["key"] for c in oversight.live_clinics(engine)]
    assert oversight.mark_offboarded(engine, key) and not oversight.mark_offboarded(engine, key)
    assert key not in [c["key"] for c in oversight.live_clinics(engine)]
    with pytest.raises(Refused, match="not under oversight"):
        oversight.report_event(engine, "ae-9", key, "minor", "x", now_utc(), now_utc())
    with pytest.raises(NotFound):
        oversight.mark_offboarded(engine, "no-such-clinic")


def test_the_launched_onboarding_of_a_clinic(engine):
    key = live_clinic(engine, 6)
    assert oversight.launched_onboarding(engine, key) is None
    onboardings.record_onboarding(engine, f"onboarding-{key}", key, stage="launched", launched_at=now_utc())
    assert oversight.launched_onboarding(engine, key)["workflow_id"] == f"onboarding-{key}"
