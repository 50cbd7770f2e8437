"""Roster and pharmacy file parsing: CONTRACT.md layouts, every bad row reported with its line."""

import json
from datetime import date

import pytest

from domain.roster import (PHARMACY_COLUMNS, PHYSICIAN_COLUMNS, RosterFormatError, detect_format, parse_pharmacies,
                           parse_physicians)

HEADER = ",".join(PHYSICIAN_COLUMNS)
GOOD = ("1234567893,Ana,Cruz,MD,ana@md.example,+15125550111,TX,TX:Q1234:2027-08-31;OK:45678:2027-03-31,"
        "TX:BC1234563:2027-05-31,neurotoxins;dermal_fillers;testosterone_hrt,5,1,2027-12-31,internal_medicine,true")
OTHER = ("1245319599,Ben,Abbott,DO,ben@md.example,+15125550112,OK,OK:77:2028-01-01,,laser,3,0,2028-01-01,,no")


def row(**changes: str) -> str:
    cells = dict(zip(PHYSICIAN_COLUMNS, GOOD.split(",")))
    cells.update(changes)
    return ",".join(cells[c] for c in PHYSICIAN_COLUMNS)


def test_contract_example_parses():
    records, errors = parse_physicians(f"{HEADER}\n{GOOD}\n{OTHER}\n", "csv")
    assert errors == []
    ana, ben = records
    assert ana.npi == "1234567893" and ana.degree == "MD" and ana.telehealth is True
    assert [(lic.state, lic.number, lic.expires) for lic in ana.licenses] == [
        ("TX", "Q1234", date(2027, 8, 31)), ("OK", "45678", date(2027, 3, 31))]
    assert ana.dea[0].number == "BC1234563" and ana.therapies[2] == "testosterone_hrt"
    assert ben.dea == [] and ben.telehealth is False and ben.board_certifications == []


@pytest.mark.parametrize("value,expected", [("true", True), ("yes", True), ("1", True), ("False", False),
                                            ("no", False), ("0", False)])
def test_telehealth_spellings(value, expected):
    records, errors = parse_physicians(f"{HEADER}\n{row(telehealth=value)}\n", "csv")
    assert errors == [] and records[0].telehealth is expected


def test_every_bad_row_is_reported_with_its_line_and_field():
    text = "\n".join([
        HEADER,
        row(npi="1234567890"),                      # line 2
        GOOD,                                       # line 3 ok
        row(dea="TX:BC1234564:2027-05-31"),         # line 4 check digit
        row(npi="1245319599", last_name="Smith"),   # line 5 DEA initial mismatch
        row(home_state="ZZ", degree="RN"),          # line 6 two problems
        row(therapies="neurotoxins;botox"),         # line 7
        row(active_clinics="6"),                    # line 8 active > max
        row(licenses="TX:Q1:2027-02-30"),           # line 9 bad date
        row(email="not-an-email"),                  # line 10
        row(telehealth="maybe"),                    # line 11
        row(licenses=""),                           # line 12
        GOOD,                                       # line 13 duplicate NPI of line 3
    ]) + "\n"
    records, errors = parse_physicians(text, "csv")
    by_line: dict[int, list[str]] = {}
    for e in errors:
        by_line.setdefault(e.line, []).append(e.reason)
    assert sorted(by_line) == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert by_line[2] == ["npi: 1234567890 fails the NPI check digit (Luhn with prefix 80840)"]
    assert by_line[4][0].startswith("dea: TX number BC1234564 fails")
    assert "last-name initial" in by_line[5][0]
    assert {r.split(":")[0] for r in by_line[6]} == {"home_state", "degree"}
    assert by_line[7][0].startswith("therapies: unknown service 'botox'")
    assert by_line[8] == ["active_clinics: 6 exceeds max_clinics 5"]
    assert by_line[9][0].startswith("licenses:") and "ISO date" in by_line[9][0]
    assert by_line[10][0].startswith("email:")
    assert by_line[11][0].startswith("telehealth:")
    assert by_line[12][0].startswith("licenses:")
    assert by_line[13] == ["npi: duplicate 1234567893 (first seen on line 3)"]
    assert [r.npi for r in records] == ["1234567893"]


@pytest.mark.parametrize("header,needle", [
    (HEADER.replace(",telehealth", ""), "missing columns telehealth"),
    (HEADER + ",favourite_colour", "unknown columns favourite_colour"),
    (HEADER + ",npi", "duplicate columns npi"),
])
def test_header_problems_are_reported_on_line_1(header, needle):
    records, errors = parse_physicians(f"{header}\n{GOOD}\n", "csv")
    assert records == [] and len(errors) == 1 and errors[0].line == 1 and needle in errors[0].reason


def test_empty_file_and_ragged_row():
    assert parse_physicians("", "csv")[1][0].line == 1
    _, errors = parse_physicians(f"{HEADER}\n1234567893,Ana\n", "csv")
    assert errors[0].line == 2 and "cells" in errors[0].reason


def test_quoted_multiline_cell_keeps_line_numbers():
    text = f'{HEADER}\n{row(board_certifications=chr(34) + "a" + chr(10) + "b" + chr(34))}\n{row(npi="1")}\n'
    _, errors = parse_physicians(text, "csv")
    assert [e.line for e in errors] == [4]


def test_optional_supervised_midlevels_column():
    text = f"{HEADER},supervised_midlevels\n{GOOD},TX:3;OK:1\n{row(npi='1245319599', dea='')},TX:x\n"
    records, errors = parse_physicians(text, "csv")
    assert records[0].supervised_midlevels == {"TX": 3, "OK": 1}
    assert [(e.line, e.reason.split(":")[0]) for e in errors] == [(3, "supervised_midlevels")]


def test_optional_practice_zip_column():
    text = (f"{HEADER},practice_zip\n{GOOD},33131\n{row(npi='1245319599', dea='')},\n"
            f"{row(npi='1234567901', dea='')},3313\n{row(npi='1234567919', dea='')},00000\n")
    records, errors = parse_physicians(text, "csv")
    assert [r.practice_zip for r in records] == ["33131", None]  # an empty cell: no practice ZIP on file
    assert [(e.line, e.reason) for e in errors] == [
        (4, "practice_zip: '3313' is not a 5-digit ZIP code (or ZIP+4)"),
        (5, "practice_zip: 00000 is not a known US ZIP code")]


def test_json_roster_with_lists_and_objects():
    data = [
        {"npi": "1234567893", "first_name": "Ana", "last_name": "Cruz", "degree": "MD", "email": "ana@md.example",
         "phone": "+15125550111", "home_state": "TX",
         "licenses": [{"state": "TX", "number": "Q1234", "expires": "2027-08-31"}, "OK:45678:2027-03-31"],
         "dea": ["TX:BC1234563:2027-05-31"], "therapies": ["neurotoxins"], "max_clinics": 5, "active_clinics": 1,
         "malpractice_expires": "2027-12-31", "board_certifications": ["im"], "telehealth": True,
         "supervised_midlevels": {"TX": 2}},
        {"npi": "1234567893"},
        "nope",
        {"npi": "1245319599", "first_name": "Ben", "last_name": "Abbott", "degree": "DO", "email": "b@md.example",
         "phone": "+15125550112", "home_state": "OK", "licenses": [], "therapies": [], "max_clinics": 2,
         "active_clinics": 0, "malpractice_expires": "2028-01-01", "telehealth": False, "colour": "red"},
    ]
    records, errors = parse_physicians(json.dumps(data), "json")
    assert len(records) == 1 and records[0].licenses[1].state == "OK" and records[0].supervised_midlevels == {"TX": 2}
    assert [e.line for e in errors] == [2, 3, 4]
    assert "missing fields" in errors[0].reason and "must be an object" in errors[1].reason
    assert "unknown fields colour" in errors[2].reason


def test_json_must_be_a_list():
    assert "list" in parse_physicians("{}", "json")[1][0].reason
    assert "not valid JSON" in parse_physicians("[", "json")[1][0].reason


def test_detect_format():
    assert detect_format("a/b/roster.CSV") == "csv" and detect_format("x.json") == "json"
    with pytest.raises(RosterFormatError, match="unknown roster format"):
        detect_format("roster.xlsx")


PH_HEADER = ",".join(PHARMACY_COLUMNS)
PH_GOOD = ("austin-rx,Austin Compounding,503A,TX;OK;FL,non_sterile;sterile;hazardous,"
           "testosterone_hrt;glp1_weight_loss;peptides,rx@austin.example")


def test_pharmacies_contract_example_and_errors():
    text = "\n".join([
        PH_HEADER, PH_GOOD,
        "b,Bad,504A,TX;XX,sterile;magic,botox,nope",
        PH_GOOD,
        "c,C,503B,,sterile,iv_nutrients,c@rx.example",
    ]) + "\n"
    records, errors = parse_pharmacies(text, "csv")
    assert len(records) == 1 and records[0].kind == "503A" and records[0].licensed_states == ["TX", "OK", "FL"]
    fields = [(e.line, e.reason.split(":")[0]) for e in errors]
    assert fields == [(3, "kind"), (3, "licensed_states"), (3, "capabilities"), (3, "services"), (3, "email"),
                      (4, "pharmacy_id"), (5, "licensed_states")]


def test_pharmacies_json():
    data = [{"pharmacy_id": "p1", "name": "P1", "kind": "503B", "licensed_states": ["TX"], "capabilities": ["sterile"],
             "services": ["iv_nutrients"], "email": "p1@rx.example"}]
    records, errors = parse_pharmacies(json.dumps(data), "json")
    assert errors == [] and records[0].kind == "503B"


def test_unknown_format_argument():
    with pytest.raises(ValueError):
        parse_physicians("", "xml")  # type: ignore[arg-type]


COMPLIANCE_HEADER = PH_HEADER + ",licenses,dea,fda_registration,attestations"


def test_pharmacy_compliance_columns_parse():
    text = "\n".join([
        COMPLIANCE_HEADER,
        PH_GOOD + ",TX:PH1:2027-03-31;OK:NR2:2027-06-30,FA1234563:2028-01-31,,usp795:2026-02-01;usp797:2026-03-01",
        "big-b,Big B,503B,TX,sterile,iv_nutrients,b@rx.example,TX:OF9:2027-01-31,,3012345678:2025-09-15,usp797:2026-05-01",
    ]) + "\n"
    records, errors = parse_pharmacies(text, "csv")
    assert errors == []
    a, b = records
    assert a.on_file == ["licenses", "dea", "fda_registration", "attestations"]
    assert [(x.state, x.number, x.expires) for x in a.licenses] == [("TX", "PH1", date(2027, 3, 31)),
                                                                  ("OK", "NR2", date(2027, 6, 30))]
    assert (a.dea.number, a.dea.expires) == ("FA1234563", date(2028, 1, 31)) and a.fda_registration is None
    assert a.attestations == {"usp795": date(2026, 2, 1), "usp797": date(2026, 3, 1)}
    assert b.dea is None and (b.fda_registration.fei, b.fda_registration.last_inspection) == ("3012345678", date(2025, 9, 15))


def test_pharmacy_compliance_errors_name_line_and_field():
    text = "\n".join([
        COMPLIANCE_HEADER,
        PH_GOOD + ",TX:PH1:2027-13-01,FA1234564:2028-01-31,12:2025-01-01,usp799:2026-01-01",
        PH_GOOD.replace("austin-rx", "two") + ",TX-PH1,FA1234563,ABC1234:2025-01-01,usp795:2026-01-01;usp795:2026-02-01",
    ]) + "\n"
    records, errors = parse_pharmacies(text, "csv")
    assert records == []
    assert [(e.line, e.reason.split(":")[0]) for e in errors] == [
        (2, "licenses"), (2, "dea"), (2, "fda_registration"), (2, "attestations"),
        (3, "licenses"), (3, "dea"), (3, "fda_registration"), (3, "attestations")]
    assert "fails the DEA format or check digit" in errors[1].reason and "usp799" in errors[3].reason


def test_pharmacy_compliance_json_objects():
    data = [{"pharmacy_id": "p1", "name": "P1", "kind": "503B", "licensed_states": ["TX"], "capabilities": ["sterile"],
             "services": ["iv_nutrients"], "email": "p1@rx.example",
             "licenses": [{"state": "TX", "number": "OF1", "expires": "2027-01-31"}],
             "fda_registration": {"fei": "3012345678", "last_inspection": "2025-09-15"},
             "attestations": {"usp797": "2026-05-01"}}]
    records, errors = parse_pharmacies(json.dumps(data), "json")
    assert errors == [] and records[0].on_file == ["licenses", "fda_registration", "attestations"]
    assert records[0].attestations == {"usp797": date(2026, 5, 1)}
