"""≥ 50 onboardings accept at the same moment for 10 physician slots: exactly 10 win, none over-books.

Runs the real ``reserve_physician`` activity (the one the workflow's ``accept_offer`` update calls)
from 60 threads released by one barrier, on SQLite and on Postgres.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.onboarding import OnboardingActivities
from config import Settings
from store import roster
from store import tables as t
from store.db import transaction
from tests.db_fixtures import npi_for, physician_record

pytestmark = pytest.mark.timeout(120)

ONBOARDINGS = 60
#: (physician number, max_clinics, already active): free slots 3 + 2 + 2 + 1 + 1 + 1 = 10
ROSTER = ((1, 4, 1), (2, 2, 0), (3, 3, 1), (4, 1, 0), (5, 2, 1), (6, 1, 0))
FULL = (7, 2, 2)  # a physician already at capacity draws some accepts too


def test_sixty_accepts_for_ten_slots_never_overbook(engine, tmp_path):
    roster.upsert_physicians(engine, [physician_record(n, max_clinics=m, active_clinics=a) for n, m, a in (*ROSTER, FULL)])
    free = sum(m - a for _, m, a in ROSTER)
    assert free == 10
    acts = OnboardingActivities(Settings(var_dir=tmp_path / "var"), engine)
    targets = [npi_for(ROSTER[i % len(ROSTER)][0]) if i % 10 else npi_for(FULL[0]) for i in range(ONBOARDINGS)]
    barrier = threading.Barrier(ONBOARDINGS)

    def accept(i: int):
        wf = f"onboarding-race-{i:03d}"
        barrier.wait()  # every accept hits the database at the same moment
        return wf, targets[i], ActivityEnvironment().run(acts.reserve_physician, wf, targets[i])

    with ThreadPoolExecutor(ONBOARDINGS) as pool:
        outcomes = list(pool.map(accept, range(ONBOARDINGS)))

    winners = [(wf, npi) for wf, npi, r in outcomes if r.ok]
    losers = [r for _, _, r in outcomes if not r.ok]
    assert len(winners) == 10 and len(losers) == ONBOARDINGS - 10
    assert {r.reason for r in losers} == {"at capacity"}  # a clear answer, not an error

    by_npi = Counter(npi for _, npi in winners)
    for n, max_clinics, active in (*ROSTER, FULL):
        p = roster.get_physician(engine, npi_for(n))
        assert p.active_clinics <= p.max_clinics == max_clinics
        assert p.active_clinics == active + by_npi[npi_for(n)]
    with transaction(engine, write=False) as s:
        held = s.exec(select(t.CapacityReservation.workflow_id, t.CapacityReservation.npi)
                      .where(t.CapacityReservation.released_at.is_(None))).all()
    assert sorted((r.workflow_id, r.npi) for r in held) == sorted(winners)
