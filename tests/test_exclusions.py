"""OIG LEIE: the parser on a sample in the real column layout, screening rules, the stored list and
re-screens (set and clear with audit), the roster-import screen and ``mdco exclusions import``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config import get_settings
from domain.exclusions import LEIE_COLUMNS, parse_leie, screen
from domain.roster import parse_physicians
from starter.demo import DEMO_DIR
from starter.exclusions_cli import exclusions_app
from store import audit, exclusions, roster
from tests.db_fixtures import npi_for, physician_record

SAMPLE = Path(__file__).parent / "data" / "leie_sample.csv"
AS_OF = date(2026, 6, 1)
ANA, BEN, CARLA, DAVID, HIRO = "1478336732", "1709645497", "1194208751", "1647305642", "1559747237"


def demo_roster():
    records, errors = parse_physicians((DEMO_DIR / "physicians.csv").read_text(), "csv")
    assert not errors
    return records


def sample_entries():
    entries, errors = parse_leie(SAMPLE.read_text())
    assert errors == []
    return entries


def _row(**overrides: str) -> str:
    values = dict.fromkeys(LEIE_COLUMNS, "")
    values.update(LASTNAME="DOE", FIRSTNAME="JO", NPI="0000000000", DOB="00000000", STATE="TX", EXCLTYPE="1128b4",
                  EXCLDATE="20200101", REINDATE="00000000", WAIVERDATE="00000000")
    values.update(overrides)
    return ",".join(f'"{values[c]}"' for c in LEIE_COLUMNS)


# ---------------------------------------------------------------- parser
def test_parses_the_real_layout_with_empty_dates_and_absent_npis():
    entries = sample_entries()
    assert len(entries) == 7
    ana = entries[0]
    assert (ana.line, ana.npi, ana.state, ana.excl_type, ana.excl_date, ana.rein_date) == (
        2, ANA, "TX", "1128b4", date(2019, 3, 20), None)
    assert entries[1].rein_date == date(2022, 1, 15)
    assert entries[2].npi is None  # 0000000000
    business = entries[4]
    assert (business.last_name, business.business_name, business.npi) == ("", "SYNTHETIC WELLNESS SUPPLY LLC", None)


@pytest.mark.parametrize("overrides, line_reason", [
    ({"EXCLDATE": "2020-01-01"}, "EXCLDATE: '2020-01-01' is not a date YYYYMMDD"),
    ({"EXCLDATE": "00000000"}, "EXCLDATE: is required"),
    ({"REINDATE": "20201340"}, "REINDATE: '20201340' is not a calendar date"),
    ({"REINDATE": "20190101"}, "REINDATE: 2019-01-01 is before EXCLDATE 2020-01-01"),
    ({"NPI": "12345"}, "NPI: '12345' must be 10 digits"),
    ({"STATE": "Texas"}, "STATE: 'TEXAS' is not a 2-letter code"),
    ({"EXCLTYPE": ""}, "EXCLTYPE: is required"),
    ({"LASTNAME": "", "BUSNAME": ""}, "LASTNAME/BUSNAME: one of them is required"),
    ({"DOB": "1970"}, "DOB: '1970' is not a date YYYYMMDD"),
])
def test_bad_rows_are_reported_with_their_line(overrides, line_reason):
    text = ",".join(LEIE_COLUMNS) + "\n" + _row() + "\n" + _row(**overrides) + "\n"
    entries, errors = parse_leie(text)
    assert len(entries) == 1
    assert len(errors) == 1 and errors[0].line == 3 and errors[0].reason.startswith(line_reason), errors


def test_bad_header_and_field_count():
    _, errors = parse_leie("LASTNAME,FIRSTNAME,NPI\nA,B,0000000000\n")
    assert errors[0].line == 1 and "missing column(s) MIDNAME, BUSNAME" in errors[0].reason
    _, errors = parse_leie(",".join(LEIE_COLUMNS) + "\n" + _row() + ',"extra"\n')
    assert [(e.line, e.reason) for e in errors] == [(2, "has 19 fields, the header has 18")]
    assert parse_leie("")[1][0].reason.startswith("file is empty")


# ---------------------------------------------------------------- screening
def test_screen_npi_match_excludes_name_state_flags_and_reinstatement_clears():
    results = {r.npi: r for r in screen(demo_roster(), sample_entries(), AS_OF)}
    assert len(results) == len(demo_roster())
    assert results[ANA].excluded and not results[ANA].review and "1128b4 since 2019-03-20" in results[ANA].reason
    assert (results[BEN].excluded, results[BEN].review) == (False, False)
    assert "reinstated 2022-01-15" in results[BEN].reason
    assert (results[CARLA].excluded, results[CARLA].review) == (False, True)
    assert "name + state OK match without NPI" in results[CARLA].reason
    assert (results[DAVID].excluded, results[DAVID].review) == (False, False)  # same name, not his states
    assert (results[HIRO].excluded, results[HIRO].review) == (False, True)  # exclusion starts in 2030
    assert "takes effect 2030-01-01" in results[HIRO].reason
    flagged = {n for n, r in results.items() if r.excluded or r.review}
    assert flagged == {ANA, CARLA, HIRO}
    assert all("Cruz" not in r.reason and "CRUZ" not in r.reason for r in results.values())  # no names


def test_screen_respects_the_date():
    before = {r.npi: r for r in screen(demo_roster(), sample_entries(), date(2021, 6, 1))}
    assert before[BEN].excluded  # reinstated only in 2022
    ancient = {r.npi: r for r in screen(demo_roster(), sample_entries(), date(2010, 1, 1))}
    assert not ancient[ANA].excluded and ancient[ANA].review  # listed, exclusion not yet in force


# ---------------------------------------------------------------- store: list, re-screen, roster import
def _flags(engine, npi):
    p = roster.get_physician(engine, npi)
    return p.excluded, p.exclusion_review


def test_import_rescreen_and_clear_only_when_delisted(engine):
    roster.upsert_physicians(engine, demo_roster())
    with pytest.raises(ValueError, match="none imported yet"):
        exclusions.rescreen(engine, AS_OF)

    assert exclusions.import_exclusions(engine, sample_entries()) == 7
    assert exclusions.load_exclusions(engine) == sample_entries()
    s = exclusions.rescreen(engine, AS_OF)
    assert (s.list_entries, s.excluded, s.review, s.newly_excluded, s.newly_review) == (7, 1, 2, 1, 2)
    assert _flags(engine, ANA) == (True, False) and _flags(engine, CARLA) == (False, True)
    assert roster.reserve_physician(engine, "onboarding-x", ANA).reason == "excluded"

    # a roster re-import never clears the flag
    roster.upsert_physicians(engine, demo_roster())
    assert _flags(engine, ANA) == (True, False)
    assert exclusions.rescreen(engine, AS_OF).newly_excluded == 0  # idempotent

    # a new list without Ana and Carla (replace-all): both flags cleared, with an audit entry each
    keep = [e for e in sample_entries() if e.npi != ANA and e.last_name != "OWENS"]
    assert exclusions.import_exclusions(engine, keep) == 5
    assert exclusions.exclusion_count(engine) == 5
    s = exclusions.rescreen(engine, AS_OF)
    assert (s.cleared_excluded, s.cleared_review, s.excluded, s.review) == (1, 1, 0, 1)
    assert _flags(engine, ANA) == (False, False) and _flags(engine, CARLA) == (False, False)
    trail = audit.list_audit(engine, "roster")
    actions = [(a["action"], a["detail"].get("npi")) for a in trail if a["actor"] == "exclusion-screen"]
    assert ("exclusion_set", ANA) in actions and ("exclusion_cleared", ANA) in actions
    assert ("review_cleared", CARLA) in actions
    cleared = next(a for a in trail if a["action"] == "exclusion_cleared")
    assert cleared["reason"] == "no longer on the LEIE list"
    assert sum(a["action"] == "leie_imported" for a in trail) == 2


def test_screen_after_roster_import_flags_new_physicians_and_never_clears(engine):
    assert exclusions.screen_after_roster_import(engine).list_entries == 0  # no list: nothing to do
    exclusions.import_exclusions(engine, sample_entries())
    newcomer = physician_record(7, ("OK",), first_name="Carla", last_name="Owens")  # name + state match
    flagged_by_ops = physician_record(8, ("TX",), excluded=True)  # flag set by an earlier import
    roster.upsert_physicians(engine, [newcomer, flagged_by_ops])
    s = exclusions.screen_after_roster_import(engine, [newcomer.npi, flagged_by_ops.npi], as_of=AS_OF)
    assert (s.screened, s.newly_review, s.review, s.excluded, s.cleared_excluded) == (2, 1, 1, 1, 0)
    assert _flags(engine, npi_for(7)) == (False, True)
    assert _flags(engine, npi_for(8)) == (True, False)  # not listed, but an import-time screen never clears


# ---------------------------------------------------------------- CLI
def test_cli_import_prints_counts_without_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MDCO_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        from store.db import engine_from_settings

        roster.upsert_physicians(engine_from_settings(get_settings()), demo_roster())
        result = CliRunner().invoke(exclusions_app, ["import", str(SAMPLE), "--as-of", "2026-06-01"])
        assert result.exit_code == 0, result.output
        assert "LEIE entries: 7" in result.output
        assert "excluded: 1 (1 new, 0 cleared)" in result.output
        assert "flagged for review: 2 (2 new, 0 cleared)" in result.output
        assert "CRUZ" not in result.output.upper()

        bad = tmp_path / "bad.csv"
        bad.write_text(SAMPLE.read_text().replace('"20190320"', '"2019-03-20"'))
        result = CliRunner().invoke(exclusions_app, ["import", str(bad)])
        assert result.exit_code == 2
        assert "line 2: EXCLDATE: '2019-03-20' is not a date YYYYMMDD" in result.output
        assert exclusions.exclusion_count(engine_from_settings(get_settings())) == 7  # unchanged
    finally:
        get_settings.cache_clear()
