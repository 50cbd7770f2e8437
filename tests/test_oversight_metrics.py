"""The API's oversight gauges from the oversight store (SQLite and Postgres): renewal notices due per
ladder step (due today and not yet sent), chart reviews of live clinics past due and not submitted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.renewals import Credential
from observability.business import BusinessMetrics, oversight_counts
from store import oversight
from tests.db_fixtures import npi_for
from tests.test_oversight_sweep import live_clinic

pytestmark = pytest.mark.timeout(120)


def _review(engine, key: str, n: int, cycle: int, due_at: datetime) -> str:
    review_id = f"{key}-cr-{cycle}"
    oversight.open_review(engine, review_id, key, npi_for(n), cycle, 10, due_at - timedelta(days=14), due_at)
    return review_id


def test_notices_due_per_step_and_overdue_reviews_come_from_the_store(engine):
    now = datetime.now(UTC)
    today = now.date()
    a = live_clinic(engine, 1, licence_expires=today + timedelta(days=25))  # TX licence: the 30-day step
    b = live_clinic(engine, 2, licence_expires=today + timedelta(days=5),  # TX licence: 7, midlevel: 14
                    midlevel_expires=today + timedelta(days=10))
    gone = live_clinic(engine, 3, licence_expires=today - timedelta(days=3))  # lapsed, but offboarded below
    counts = oversight_counts(engine, now)
    assert counts.notices_due == {"90": 0, "60": 0, "30": 1, "14": 1, "7": 1, "0": 0, "lapsed": 1}
    # the sweep sent the 30-day notice: no longer due; an offboarded clinic's credentials are not tracked
    oversight.record_notice(engine, Credential(credential="license", holder_id=npi_for(1), state="TX",
                                               expires_on=today + timedelta(days=25)), 30, [a], at=now)
    oversight.mark_offboarded(engine, gone)
    assert oversight_counts(engine, now).notices_due == {"90": 0, "60": 0, "30": 0, "14": 1, "7": 1, "0": 0,
                                                         "lapsed": 0}
    overdue = _review(engine, a, 1, 1, now - timedelta(days=1))
    _review(engine, a, 1, 2, now + timedelta(days=3))  # open, not due yet
    done = _review(engine, b, 2, 1, now - timedelta(days=2))
    oversight.submit_review(engine, done, npi_for(2), 10, 0, "", now - timedelta(days=3))  # submitted: not overdue
    _review(engine, gone, 3, 1, now - timedelta(days=5))  # overdue, but the clinic left oversight
    assert oversight_counts(engine, now).reviews_overdue == 1
    assert [r["review_id"] for r in oversight.overdue_reviews(engine, now)] == [overdue]

    async def no_client():
        raise ConnectionError("Temporal down: the store's gauges are still served")

    text = asyncio.run(BusinessMetrics(lambda: engine, no_client).render()).decode()
    assert 'mdco_renewal_notices_due{step="14"} 1.0' in text and 'mdco_renewal_notices_due{step="7"} 1.0' in text
    assert 'mdco_renewal_notices_due{step="30"} 0.0' in text and 'mdco_renewal_notices_due{step="lapsed"} 0.0' in text
    assert "mdco_chart_reviews_overdue 1.0" in text
