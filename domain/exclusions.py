"""OIG LEIE exclusion screening: who may not supervise a clinic billed to federal programs.

Source: HHS-OIG List of Excluded Individuals/Entities, downloadable database
(https://oig.hhs.gov/exclusions/exclusions_list.asp, file ``UPDATED.csv``). Its layout is kept as
published: ``LEIE_COLUMNS``, dates ``YYYYMMDD`` with ``00000000`` for none, NPI ``0000000000`` for
none. Screening rules (issue 4): an NPI match that is in force on the screening date excludes; an
individual's name + state match on an entry without an NPI only flags the physician for ops review
(names are not unique, so a person must decide).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from domain.records import PhysicianRecord, RowError

#: The published header of the LEIE CSV, in order.
LEIE_COLUMNS = (
    "LASTNAME", "FIRSTNAME", "MIDNAME", "BUSNAME", "GENERAL", "SPECIALTY", "UPIN", "NPI", "DOB", "ADDRESS",
    "CITY", "STATE", "ZIP", "EXCLTYPE", "EXCLDATE", "REINDATE", "WAIVERDATE", "WVRSTATE",
)
EMPTY_DATE = "00000000"
ABSENT_NPI = "0000000000"
SOURCE = "HHS-OIG LEIE downloadable database, https://oig.hhs.gov/exclusions/exclusions_list.asp"


@dataclass(frozen=True)
class LeieEntry:
    """One listed individual or entity; only the fields screening and ops review need (no address/DOB)."""

    line: int
    last_name: str
    first_name: str
    mid_name: str
    business_name: str
    general: str
    specialty: str
    npi: str | None
    state: str
    excl_type: str
    excl_date: date
    rein_date: date | None = None
    waiver_date: date | None = None
    waiver_state: str = ""

    def in_force(self, as_of: date) -> bool:
        """Excluded on ``as_of``: the exclusion has started and no reinstatement has taken effect."""
        return self.excl_date <= as_of and (self.rein_date is None or self.rein_date > as_of)

    def reinstated(self, as_of: date) -> bool:
        return self.rein_date is not None and self.rein_date <= as_of


@dataclass(frozen=True)
class ScreenResult:
    """The screen's verdict for one physician; ``reason`` cites LEIE facts (no names, they are PII)."""

    npi: str
    excluded: bool
    review: bool
    reason: str = ""


# ---------------------------------------------------------------- parsing
def _date(raw: str, field: str, *, required: bool = False) -> date | None:
    raw = raw.strip()
    if not raw or raw == EMPTY_DATE:
        if required:
            raise ValueError(f"{field}: is required (YYYYMMDD)")
        return None
    if not re.fullmatch(r"\d{8}", raw):
        raise ValueError(f"{field}: {raw!r} is not a date YYYYMMDD")
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise ValueError(f"{field}: {raw!r} is not a calendar date") from None


def _npi(raw: str) -> str | None:
    raw = raw.strip()
    if not raw or raw == ABSENT_NPI:
        return None
    if not re.fullmatch(r"\d{10}", raw):
        raise ValueError(f"NPI: {raw!r} must be 10 digits (or {ABSENT_NPI} for none)")
    return raw


def _entry(row: dict[str, str], line: int) -> LeieEntry:
    last, business = row["LASTNAME"].strip(), row["BUSNAME"].strip()
    if not last and not business:
        raise ValueError("LASTNAME/BUSNAME: one of them is required")
    state = row["STATE"].strip().upper()
    if state and not re.fullmatch(r"[A-Z]{2}", state):
        raise ValueError(f"STATE: {state!r} is not a 2-letter code")
    excl_type = row["EXCLTYPE"].strip()
    if not excl_type:
        raise ValueError("EXCLTYPE: is required")
    excl_date = _date(row["EXCLDATE"], "EXCLDATE", required=True)
    rein_date = _date(row["REINDATE"], "REINDATE")
    if rein_date is not None and excl_date is not None and rein_date < excl_date:
        raise ValueError(f"REINDATE: {rein_date} is before EXCLDATE {excl_date}")
    _date(row["DOB"], "DOB")  # validated, not kept
    return LeieEntry(
        line=line, last_name=last, first_name=row["FIRSTNAME"].strip(), mid_name=row["MIDNAME"].strip(),
        business_name=business, general=row["GENERAL"].strip(), specialty=row["SPECIALTY"].strip(),
        npi=_npi(row["NPI"]), state=state, excl_type=excl_type, excl_date=excl_date,  # type: ignore[arg-type]
        rein_date=rein_date, waiver_date=_date(row["WAIVERDATE"], "WAIVERDATE"),
        waiver_state=row["WVRSTATE"].strip().upper(),
    )


def parse_leie(text: str) -> tuple[list[LeieEntry], list[RowError]]:
    """Every valid entry and every bad row (1-based line, header = line 1, reason naming the column).

    A file with any error should be rejected as a whole by the caller: a partial exclusion list
    would silently clear physicians that the missing rows name.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        return [], [RowError(line=1, reason="file is empty; expected the LEIE header")]
    header = [h.strip().upper() for h in header]
    missing = [c for c in LEIE_COLUMNS if c not in header]
    if missing:
        return [], [RowError(line=1, reason=f"header: missing column(s) {', '.join(missing)}")]
    entries: list[LeieEntry] = []
    errors: list[RowError] = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            errors.append(RowError(line=line, reason=f"has {len(values)} fields, the header has {len(header)}"))
            continue
        try:
            entries.append(_entry(dict(zip(header, values)), line))
        except ValueError as exc:
            errors.append(RowError(line=line, reason=str(exc)))
    return entries, errors


# ---------------------------------------------------------------- screening
def _name_key(value: str) -> str:
    """Case, punctuation and spacing do not make a different person (O'Neil = ONEIL)."""
    return re.sub(r"[^A-Z]", "", value.upper())


def screen(physicians: Iterable[PhysicianRecord], exclusions: Iterable[LeieEntry], as_of: date) -> list[ScreenResult]:
    """One verdict per physician, in NPI order.

    - NPI listed and in force on ``as_of`` -> excluded;
    - NPI listed but reinstated by ``as_of`` -> clear (reason says so); listed with a future
      exclusion date -> review;
    - no NPI match, but an in-force individual entry *without* an NPI has the same last and first
      name and a state where the physician lives or is licensed -> review.
    """
    by_npi: dict[str, list[LeieEntry]] = defaultdict(list)
    by_name: dict[tuple[str, str, str], list[LeieEntry]] = defaultdict(list)
    for e in exclusions:
        if e.npi is not None:
            by_npi[e.npi].append(e)
        elif e.last_name and e.first_name and e.state:
            by_name[(_name_key(e.last_name), _name_key(e.first_name), e.state)].append(e)

    results = []
    for doc in sorted(physicians, key=lambda p: p.npi):
        listed = by_npi.get(doc.npi, [])
        active = [e for e in listed if e.in_force(as_of)]
        if active:
            e = min(active, key=lambda x: x.excl_date)
            results.append(ScreenResult(doc.npi, True, False,
                                        f"LEIE {e.excl_type} since {e.excl_date} (NPI match, line {e.line})"))
            continue
        future = [e for e in listed if e.excl_date > as_of]
        if future:
            e = min(future, key=lambda x: x.excl_date)
            results.append(ScreenResult(doc.npi, False, True,
                                        f"LEIE {e.excl_type} takes effect {e.excl_date} (NPI match, line {e.line})"))
            continue
        states = {doc.home_state, *(lic.state for lic in doc.licenses)}
        last, first = _name_key(doc.last_name), _name_key(doc.first_name)
        named = sorted((e for st in states for e in by_name.get((last, first, st), []) if e.in_force(as_of)),
                       key=lambda x: x.line)
        if named:
            e = named[0]
            results.append(ScreenResult(doc.npi, False, True,
                                        f"LEIE {e.excl_type} since {e.excl_date}: name + state {e.state} match "
                                        f"without NPI (line {e.line}); ops must confirm identity"))
            continue
        reinstated = [e for e in listed if e.reinstated(as_of)]
        reason = f"reinstated {max(e.rein_date for e in reinstated)} (LEIE)" if reinstated else ""  # type: ignore[type-var]
        results.append(ScreenResult(doc.npi, False, False, reason))
    return results
