"""Database fixtures: every store test runs on SQLite AND on a fresh Postgres database.

``db_url`` is a URL to an empty database (a file under ``tmp_path`` or a new ``mdco_t_<random>``
database on ``MDCO_TEST_POSTGRES_URL``); ``engine`` is an engine on it with the schema created.
Postgres being unreachable FAILS the test unless ``MDCO_SKIP_POSTGRES=1``: production runs on it.
Also: ``physician_record`` / ``pharmacy_record`` build valid synthetic roster records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from domain.identifiers import dea_with_check_digit, npi_with_check_digit
from domain.records import DeaRegistration, License, PharmacyRecord, PhysicianRecord
from store.db import init_db, make_engine

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_conninfo() -> str:
    url = os.environ.get("MDCO_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("MDCO_SKIP_POSTGRES") == "1":
            pytest.skip(f"Postgres unreachable and MDCO_SKIP_POSTGRES=1 ({type(exc).__name__})")
        pytest.fail(f"Postgres unreachable at MDCO_TEST_POSTGRES_URL (set MDCO_SKIP_POSTGRES=1 to skip): {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A freshly created, empty Postgres database; dropped (connections terminated first) afterwards."""
    name = f"mdco_t_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(_admin_conninfo()).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with _admin_connection() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'mdco.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_db(eng)
    try:
        yield eng
    finally:
        eng.dispose()


# ---------------------------------------------------------------- synthetic records
def npi_for(n: int) -> str:
    """A valid NPI (Luhn with prefix 80840) for a small integer, e.g. ``npi_for(7)``."""
    return npi_with_check_digit(f"{100_000_000 + n:09d}")


def physician_record(n: int, states: tuple[str, ...] = ("TX",), *, max_clinics: int = 5, active_clinics: int = 0,
                     therapies: tuple[str, ...] = ("neurotoxins",), dea_states: tuple[str, ...] = (),
                     **overrides) -> PhysicianRecord:
    """A valid synthetic physician number ``n`` licensed in ``states``."""
    data = dict(
        npi=npi_for(n), first_name=f"First{n}", last_name=f"Last{n}", degree="MD",
        email=f"md{n}@md.example", phone="+15125550111", home_state=states[0],
        licenses=[License(state=s, number=f"L{n}{s}", expires=date(2030, 1, 31)) for s in states],
        dea=[DeaRegistration(state=s, number=dea_with_check_digit("BL", f"{n % 1_000_000:06d}"),
                             expires=date(2029, 5, 31)) for s in dea_states],
        therapies=list(therapies), max_clinics=max_clinics, active_clinics=active_clinics,
        malpractice_expires=date(2031, 12, 31), board_certifications=["internal_medicine"], telehealth=True,
    )
    data.update(overrides)
    return PhysicianRecord.model_validate(data)


def pharmacy_record(pharmacy_id: str, **overrides) -> PharmacyRecord:
    data = dict(pharmacy_id=pharmacy_id, name=f"{pharmacy_id} Compounding", kind="503A",
                licensed_states=["TX", "OK"], capabilities=["non_sterile", "sterile"],
                services=["testosterone_hrt", "glp1_weight_loss"], email=f"rx@{pharmacy_id}.example")
    data.update(overrides)
    return PharmacyRecord.model_validate(data)
