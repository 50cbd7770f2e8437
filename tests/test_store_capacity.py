"""Capacity reservations: idempotent take/release, and no over-booking under a thread race."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from store import roster
from store import tables as t
from store.db import transaction
from tests.db_fixtures import npi_for, physician_record


def _active(engine, n: int) -> int:
    return roster.get_physician(engine, npi_for(n)).active_clinics


def test_reserve_is_idempotent_and_release_decrements_once(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1, max_clinics=2, active_clinics=1), physician_record(2)])
    assert roster.reserve_physician(engine, "onboarding-a", npi_for(1)).ok
    assert roster.reserve_physician(engine, "onboarding-a", npi_for(1)).ok  # retried activity
    assert _active(engine, 1) == 2

    other = roster.reserve_physician(engine, "onboarding-a", npi_for(2))
    assert not other.ok and npi_for(1) in other.reason
    full = roster.reserve_physician(engine, "onboarding-b", npi_for(1))
    assert (full.ok, full.reason) == (False, "at capacity")

    assert roster.release_physician(engine, "onboarding-a") is True
    assert roster.release_physician(engine, "onboarding-a") is False
    assert _active(engine, 1) == 1
    assert roster.get_reservation(engine, "onboarding-a")["released_at"] is not None

    # after a release the same workflow may reserve again, on another physician
    assert roster.reserve_physician(engine, "onboarding-a", npi_for(2)).ok
    assert (_active(engine, 1), _active(engine, 2)) == (1, 1)
    assert roster.get_reservation(engine, "onboarding-a")["released_at"] is None


def test_reserve_refuses_unknown_and_excluded_physicians(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1)])
    roster.set_exclusion(engine, npi_for(1), excluded=True, review=False)
    assert roster.reserve_physician(engine, "onboarding-a", npi_for(1)).reason == "excluded"
    assert "no such physician" in roster.reserve_physician(engine, "onboarding-a", npi_for(9)).reason
    assert _active(engine, 1) == 0
    assert roster.release_physician(engine, "onboarding-a") is False


def test_fifty_threads_never_overbook_ten_slots(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1, max_clinics=3), physician_record(2, max_clinics=4, active_clinics=1),
                                    physician_record(3, max_clinics=4)])  # 3 + 3 + 4 = 10 free slots
    npis = [npi_for(1), npi_for(2), npi_for(3)]
    start = threading.Barrier(50)

    def race(i: int) -> bool:
        start.wait()
        return roster.reserve_physician(engine, f"onboarding-race-{i}", npis[i % 3]).ok

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(race, range(50)))

    assert sum(results) == 10
    with transaction(engine, write=False) as s:
        assert s.exec(select(func.count()).select_from(t.CapacityReservation)).one()[0] == 10
    for p in roster.list_physicians(engine):
        assert p.active_clinics == p.max_clinics


def test_one_workflow_retried_concurrently_takes_one_slot(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1, max_clinics=5)])
    start = threading.Barrier(12)

    def race(_: int) -> bool:
        start.wait()
        return roster.reserve_physician(engine, "onboarding-same", npi_for(1)).ok

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert all(pool.map(race, range(12)))
    assert _active(engine, 1) == 1
