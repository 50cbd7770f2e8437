"""A database from an earlier release gets the columns added since (nullable, ALTER TABLE ... ADD
COLUMN at start), on SQLite and Postgres; existing rows keep their values with NULL in the new column."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from store import agreements
from store.db import add_missing_columns, init_db, make_engine

pytestmark = pytest.mark.timeout(60)


def test_an_old_agreements_table_gets_the_renewal_date_column(db_url):
    engine = make_engine(db_url)
    try:
        init_db(engine)
        with engine.begin() as conn:  # the release-1 shape of two tables: without the later columns
            conn.execute(text("ALTER TABLE agreements DROP COLUMN renews_on"))
            conn.execute(text("ALTER TABLE chart_reviews DROP COLUMN sample_charts"))
            conn.execute(text("INSERT INTO agreements (workflow_id, kind, template_version, status) "
                              "VALUES ('onboarding-old', 'medical_director', 'v1', 'completed')"))
        assert "renews_on" not in {c["name"] for c in inspect(engine).get_columns("agreements")}
        init_db(engine)  # the next start
        assert "renews_on" in {c["name"] for c in inspect(engine).get_columns("agreements")}
        assert "sample_charts" in {c["name"] for c in inspect(engine).get_columns("chart_reviews")}
        row = agreements.get_agreement(engine, "onboarding-old", "medical_director")
        assert row["status"] == "completed" and row["renews_on"] is None
        assert add_missing_columns(engine) == []  # nothing left to add: safe on every start
    finally:
        engine.dispose()
