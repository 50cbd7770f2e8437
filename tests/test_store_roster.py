"""Roster and pharmacy imports: create / update / never duplicate, all-or-nothing, licence filter."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from domain.records import License, PhysicianRecord
from store import common, roster
from store import tables as t
from store.db import transaction
from tests.db_fixtures import npi_for, pharmacy_record, physician_record


def _count(engine, model) -> int:
    with transaction(engine, write=False) as s:
        return s.exec(select(func.count()).select_from(model)).one()[0]


def test_import_creates_then_updates_without_duplicates(engine) -> None:
    first = [physician_record(1, ("TX", "OK"), dea_states=("TX",), therapies=("neurotoxins", "testosterone_hrt")),
             physician_record(2, ("FL",))]
    assert roster.upsert_physicians(engine, first) == roster.ImportSummary(created=2, updated=0)
    assert roster.get_physician(engine, npi_for(1)) == first[0]

    changed = physician_record(1, ("OK", "KS"), therapies=("laser",), max_clinics=9, active_clinics=4,
                               last_name="Renamed")
    summary = roster.upsert_physicians(engine, [changed, physician_record(3, ("TX",))])
    assert summary == roster.ImportSummary(created=1, updated=1)

    got = roster.get_physician(engine, npi_for(1))
    assert got == changed  # children replaced, active_clinics taken from the file
    assert [lic.state for lic in got.licenses] == ["OK", "KS"] and got.dea == []
    assert _count(engine, t.Physician) == 3
    assert _count(engine, t.License) == 2 + 1 + 1  # npi 1: OK, KS; npi 2: FL; npi 3: TX
    assert roster.upsert_physicians(engine, [changed]) == roster.ImportSummary(created=0, updated=1)
    assert roster.get_physician(engine, npi_for(1)) == changed
    assert roster.get_physician(engine, npi_for(99)) is None


def test_practice_zip_round_trips_and_an_import_without_it_clears_it(engine) -> None:
    with_zip = physician_record(1, ("FL",), practice_zip="33131")
    roster.upsert_physicians(engine, [with_zip, physician_record(2, ("FL",))])
    assert roster.get_physician(engine, npi_for(1)).practice_zip == "33131"
    assert [p.practice_zip for p in roster.list_physicians(engine, ["FL"])] == ["33131", None]
    roster.upsert_physicians(engine, [physician_record(1, ("FL",))])  # the file no longer carries it
    assert roster.get_physician(engine, npi_for(1)).practice_zip is None


def test_failed_import_changes_nothing(engine) -> None:
    before = [physician_record(n, ("TX",)) for n in range(1, 4)]
    roster.upsert_physicians(engine, before)
    # Passes the pydantic checks but breaks a NOT NULL column after physicians were already written.
    broken = physician_record(9, ("TX",)).model_copy(
        update={"licenses": [License.model_construct(state="TX", number=None, expires=date(2030, 1, 1))]})
    renamed = [physician_record(n, ("CA",), last_name="Changed") for n in range(1, 4)]
    with pytest.raises(ValueError, match="nothing imported") as err:
        roster.upsert_physicians(engine, [*renamed, broken])
    assert "Last" not in str(err.value) and "example" not in str(err.value)  # no PII in the reason
    assert roster.list_physicians(engine) == before
    assert _count(engine, t.License) == 3


def test_bad_batches_are_rejected_before_writing(engine) -> None:
    with pytest.raises(ValueError, match=f"npi: {npi_for(1)}"):
        roster.upsert_physicians(engine, [physician_record(1), physician_record(1)])
    twice_tx = physician_record(2, ("TX", "OK")).model_copy(
        update={"licenses": [License(state="TX", number="A", expires=date(2030, 1, 1))] * 2})
    with pytest.raises(ValueError, match="licenses: TX listed more than once"):
        roster.upsert_physicians(engine, [twice_tx])
    assert _count(engine, t.Physician) == 0


def test_licensed_in_requires_every_state(engine) -> None:
    roster.upsert_physicians(engine, [
        physician_record(1, ("TX", "OK")), physician_record(2, ("TX",)),
        physician_record(3, ("OK", "FL")), physician_record(4, ("TX", "OK", "FL")),
    ])
    npis = lambda states: [p.npi for p in roster.list_physicians(engine, licensed_in=states)]  # noqa: E731
    assert npis(["TX", "OK"]) == sorted([npi_for(1), npi_for(4)])
    assert npis(["tx"]) == sorted([npi_for(1), npi_for(2), npi_for(4)])
    assert npis(["FL", "OK", "TX"]) == [npi_for(4)]
    assert npis(["NV"]) == []
    assert len(npis(None)) == len(npis([])) == 4
    with pytest.raises(ValueError, match=r"licensed_in\[1\]"):
        roster.list_physicians(engine, licensed_in=["TX", "XX"])


def test_exclusion_survives_reimport_until_cleared(engine) -> None:
    rec = physician_record(1)
    roster.upsert_physicians(engine, [rec])
    roster.set_exclusion(engine, rec.npi, excluded=True, review=False)
    roster.upsert_physicians(engine, [rec])
    assert roster.get_physician(engine, rec.npi).excluded is True
    roster.set_exclusion(engine, rec.npi, excluded=False, review=True)
    got = roster.get_physician(engine, rec.npi)
    assert (got.excluded, got.exclusion_review) == (False, True)
    with pytest.raises(common.NotFound, match="npi 123"):
        roster.set_exclusion(engine, "123", excluded=True, review=False)


def test_pharmacies_create_update_no_duplicates(engine) -> None:
    assert roster.upsert_pharmacies(engine, [pharmacy_record("austin-rx"), pharmacy_record("big-b", kind="503B")]) \
        == roster.ImportSummary(created=2, updated=0)
    changed = pharmacy_record("austin-rx", licensed_states=["TX"], services=["peptides"])
    assert roster.upsert_pharmacies(engine, [changed]) == roster.ImportSummary(created=0, updated=1)
    got = roster.list_pharmacies(engine)
    assert [p.pharmacy_id for p in got] == ["austin-rx", "big-b"]
    assert got[0] == changed and got[1].kind == "503B"
    with pytest.raises(ValueError, match="pharmacy_id: x"):
        roster.upsert_pharmacies(engine, [pharmacy_record("x"), pharmacy_record("x")])


def test_ten_thousand_physicians_filter(engine) -> None:
    states = ("TX", "OK", "FL", "CA", "NY")
    records = [physician_record(n, (states[n % 5], states[(n + 1) % 5]), dea_states=(states[n % 5],))
              for n in range(10_000)]
    assert roster.upsert_physicians(engine, records).created == 10_000
    both = roster.list_physicians(engine, licensed_in=["TX", "OK"])  # speed: bench/matching.py
    assert len(both) == 2_000  # n % 5 == 0 holds TX+OK
    assert all(isinstance(p, PhysicianRecord) and {"TX", "OK"} <= {x.state for x in p.licenses} for p in both)


def test_trim_to_states_loads_only_the_licences_matching_reads(engine) -> None:
    roster.upsert_physicians(engine, [physician_record(1, ("TX", "OK", "FL"), dea_states=("TX", "FL"))])
    (full,) = roster.list_physicians(engine, licensed_in=["TX", "OK"])
    (trimmed,) = roster.list_physicians(engine, licensed_in=["TX", "OK"], trim_to_states=True)
    assert {x.state for x in full.licenses} == {"TX", "OK", "FL"}
    assert {x.state for x in trimmed.licenses} == {"TX", "OK"} and {x.state for x in trimmed.dea} == {"TX"}
    assert trimmed.therapies == full.therapies and trimmed.max_clinics == full.max_clinics


def test_pharmacy_compliance_file_round_trip_and_reimport(engine) -> None:
    """The optional columns are stored and read back; a re-import replaces the columns it carries and
    keeps the ones it does not carry."""
    full = pharmacy_record(
        "austin-rx", on_file=["licenses", "dea", "fda_registration", "attestations"],
        licenses=[{"state": "TX", "number": "PH1", "expires": date(2027, 3, 31)},
                  {"state": "OK", "number": "NR2", "expires": date(2026, 6, 30)}],
        dea={"number": "FA1234563", "expires": date(2028, 1, 31)},
        attestations={"usp795": date(2026, 2, 1), "usp797": date(2026, 3, 1)})
    plain = pharmacy_record("plain-rx")
    assert roster.upsert_pharmacies(engine, [full, plain]) == roster.ImportSummary(created=2, updated=0)
    got = {p.pharmacy_id: p for p in roster.list_pharmacies(engine)}
    assert got["austin-rx"] == full.model_copy(update={"licenses": sorted(full.licenses, key=lambda x: x.state)})
    assert got["plain-rx"] == plain and got["plain-rx"].on_file == []

    renewed = pharmacy_record("austin-rx", on_file=["licenses"],
                              licenses=[{"state": "OK", "number": "NR2", "expires": date(2027, 6, 30)}])
    assert roster.upsert_pharmacies(engine, [renewed]) == roster.ImportSummary(created=0, updated=1)
    again = {p.pharmacy_id: p for p in roster.list_pharmacies(engine)}["austin-rx"]
    assert [(x.state, x.expires) for x in again.licenses] == [("OK", date(2027, 6, 30))]
    assert again.dea == full.dea and again.attestations == full.attestations  # not carried: kept
    assert again.on_file == ["licenses", "dea", "fda_registration", "attestations"]

    no_dea = pharmacy_record("austin-rx", on_file=["dea"])  # the column carried, the cell empty: no DEA
    roster.upsert_pharmacies(engine, [no_dea])
    assert {p.pharmacy_id: p for p in roster.list_pharmacies(engine)}["austin-rx"].dea is None
