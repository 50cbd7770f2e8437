"""``mdco pharmacies import FILE`` with bad rows, as ops run it (a real subprocess on SQLite and Postgres):
every bad row is reported with its line number and reason, and nothing is imported or changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.roster import PHARMACY_COLUMNS
from store import roster
from tests.esign_fixtures import free_port

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
HEADER = ",".join(PHARMACY_COLUMNS) + ",licenses,dea,fda_registration,attestations"
GOOD = ("austin-rx,Austin Compounding,503A,TX;OK,non_sterile;sterile,testosterone_hrt,rx@austin.example,"
        "TX:PH1:2027-03-31;OK:NR2:2027-06-30,FA1234563:2028-01-31,,usp795:2026-02-01;usp797:2026-03-01")
OUTSOURCING = ("big-b,Big B Outsourcing,503B,TX,sterile,iv_nutrients,b@rx.example,TX:OF9:2027-01-31,,"
               "3012345678:2025-09-15,usp797:2026-05-01")


def mdco(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MDCO_DATABASE_URL": db_url, "MDCO_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "MDCO_VAR_DIR": str(tmp_path / "var"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_bad_pharmacy_rows_name_line_and_reason_and_import_nothing(engine, db_url, tmp_path):
    bad = tmp_path / "pharmacies.csv"
    bad.write_text("\n".join([
        HEADER,
        GOOD,                                                                     # line 2: fine
        OUTSOURCING.replace("503B", "504B"),                                      # line 3: kind
        GOOD.replace("austin-rx", "lapsed-rx").replace("2027-03-31", "2027-13-31"),  # line 4: licence date
        GOOD.replace("austin-rx", "no-dea").replace("FA1234563", "FA1234564"),      # line 5: DEA check digit
        GOOD,                                                                     # line 6: duplicate of line 2
    ]) + "\n")
    proc = mdco(db_url, tmp_path, "pharmacies", "import", str(bad))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())  # rich may wrap long lines
    assert "bad row(s); nothing imported" in err
    for needle in ("line 3: kind:", "line 4: licenses:", "line 5: dea:", "fails the DEA format or check digit",
                   "line 6: pharmacy_id: duplicate austin-rx"):
        assert needle in err, needle
    assert "line 2:" not in err
    assert roster.list_pharmacies(engine) == []  # nothing imported, not even the good rows

    good = tmp_path / "good.csv"
    good.write_text("\n".join([HEADER, GOOD, OUTSOURCING]) + "\n")
    proc = mdco(db_url, tmp_path, "pharmacies", "import", str(good))
    assert proc.returncode == 0, proc.stderr
    assert "pharmacies: 2 created, 0 updated" in proc.stdout
    before = {p.pharmacy_id: p for p in roster.list_pharmacies(engine)}

    # a later file that would change austin-rx but carries one bad row changes nothing
    bad.write_text("\n".join([HEADER, GOOD.replace("TX;OK", "TX"), OUTSOURCING.replace("3012345678", "12")]) + "\n")
    proc = mdco(db_url, tmp_path, "pharmacies", "import", str(bad))
    assert proc.returncode == 2 and "line 3: fda_registration:" in " ".join(proc.stderr.split())
    assert {p.pharmacy_id: p for p in roster.list_pharmacies(engine)} == before
    assert before["austin-rx"].licensed_states == ["TX", "OK"]
