"""Parse physician rosters and pharmacy lists (CSV or JSON, CONTRACT.md) into validated records.

Every bad row is reported with its 1-based line (header = line 1; for JSON the 1-based index of the
object) and a reason that names the field, so ops can fix a whole file in one pass. The caller decides
what to import; by contract a file with any error is rejected as a whole.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import ValidationError

from domain.codes import JURISDICTIONS, Capability, PharmacyKind, Service
from domain.geo import known_zip
from domain.identifiers import valid_dea, valid_npi
from domain.intake import ZIP
from domain.records import PHARMACY_COMPLIANCE_COLUMNS, PharmacyRecord, PhysicianRecord, RowError

Format = Literal["csv", "json"]

PHYSICIAN_COLUMNS = (
    "npi", "first_name", "last_name", "degree", "email", "phone", "home_state", "licenses", "dea",
    "therapies", "max_clinics", "active_clinics", "malpractice_expires", "board_certifications", "telehealth",
)
PHYSICIAN_OPTIONAL = ("supervised_midlevels", "practice_zip")
#: JSON objects may leave out the fields that are allowed to be empty.
PHYSICIAN_JSON_DEFAULTS = {"dea": [], "board_certifications": [], "supervised_midlevels": {}}

PHARMACY_COLUMNS = ("pharmacy_id", "name", "kind", "licensed_states", "capabilities", "services", "email")
PHARMACY_OPTIONAL = PHARMACY_COMPLIANCE_COLUMNS
_ATTESTATIONS = ("usp795", "usp797", "usp800")

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_SERVICES = {s.value for s in Service}
_CAPABILITIES = {c.value for c in Capability}
_KINDS = {k.value for k in PharmacyKind}


class RosterFormatError(ValueError):
    """The file's format cannot be told from its name."""


def detect_format(path: str | Path) -> Format:
    """``csv`` or ``json`` from the file extension (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    raise RosterFormatError(f"{Path(path).name}: unknown roster format {suffix or '(no extension)'!r}; use .csv or .json")


# ---------------------------------------------------------------- field parsers (raise ValueError)
def _items(value: Any) -> list[Any]:
    """A multi-valued field: ``a;b`` in CSV, a list in JSON."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(";") if p.strip()]
    if isinstance(value, list):
        return value
    raise ValueError("must be a list (or a ';'-joined string)")


def _text(value: Any, *, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError("must be text")
    value = value.strip()
    if required and not value:
        raise ValueError("is required")
    return value


def _state(value: Any) -> str:
    code = _text(value).upper()
    if code not in JURISDICTIONS:
        raise ValueError(f"{value!r} is not a USPS code of the 50 states or DC")
    return code


def _date(value: Any) -> date:
    if isinstance(value, date):
        return value
    text = _text(value)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date (YYYY-MM-DD)") from None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        n = value
    else:
        text = _text(value)
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower() if isinstance(value, str) else str(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} must be one of true/false/yes/no/1/0")


def _vocab(value: Any, allowed: set[str], what: str) -> list[str]:
    out: list[str] = []
    for item in _items(value):
        name = _text(item)
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r} (allowed: {', '.join(sorted(allowed))})")
        if name in out:
            raise ValueError(f"{what} {name!r} listed twice")
        out.append(name)
    return out


def _states(value: Any) -> list[str]:
    out = [_state(s) for s in _items(value)]
    dupes = sorted({s for s in out if out.count(s) > 1})
    if dupes:
        raise ValueError(f"duplicate states: {', '.join(dupes)}")
    return out


def _registrations(value: Any, number_name: str) -> list[dict[str, Any]]:
    """``STATE:NUMBER:EXPIRES`` entries (or JSON objects ``{state, number, expires}``)."""
    out: list[dict[str, Any]] = []
    for item in _items(value):
        if isinstance(item, dict):
            unknown = set(item) - {"state", "number", "expires"}
            if unknown:
                raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (expected state, number, expires)")
            state, number, expires = item.get("state"), item.get("number"), item.get("expires")
        elif isinstance(item, str):
            parts = item.split(":")
            if len(parts) != 3:
                raise ValueError(f"{item!r} must be STATE:{number_name}:EXPIRES")
            state, number, expires = parts
        else:
            raise ValueError("each entry must be STATE:NUMBER:EXPIRES or an object {state, number, expires}")
        entry = {"state": _state(state), "number": _text(number).upper() if number_name == "DEA" else _text(number),
                 "expires": _date(expires)}
        if any(e["state"] == entry["state"] for e in out):
            raise ValueError(f"state {entry['state']} listed twice")
        out.append(entry)
    return out


def _pair(value: Any, keys: tuple[str, str], shape: str) -> tuple[Any, Any] | None:
    """``A:B`` (or a JSON object with ``keys``) as a pair; an empty cell is ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        unknown = set(value) - set(keys)
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (expected {', '.join(keys)})")
        return value.get(keys[0]), value.get(keys[1])
    if not isinstance(value, str) or value.count(":") != 1:
        raise ValueError(f"{value!r} must be {shape}")
    first, second = value.split(":")
    return first, second


def _pharmacy_dea(value: Any) -> dict[str, Any] | None:
    """``NUMBER:EXPIRES`` (or ``{number, expires}``); empty: no DEA registration."""
    pair = _pair(value, ("number", "expires"), "NUMBER:EXPIRES")
    if pair is None:
        return None
    number = _text(pair[0]).upper()
    if not valid_dea(number):
        raise ValueError(f"number {number} fails the DEA format or check digit")
    return {"number": number, "expires": _date(pair[1])}


def _fda_registration(value: Any) -> dict[str, Any] | None:
    """``FEI:LAST_INSPECTION_DATE`` (or ``{fei, last_inspection}``); empty: not registered."""
    pair = _pair(value, ("fei", "last_inspection"), "FEI:LAST_INSPECTION_DATE")
    if pair is None:
        return None
    fei = _text(pair[0])
    if not (fei.isdigit() and 7 <= len(fei) <= 10):
        raise ValueError(f"FEI {fei!r} must be 7 to 10 digits")
    return {"fei": fei, "last_inspection": _date(pair[1])}


def _attestations(value: Any) -> dict[str, date]:
    """``usp795:DATE;usp797:DATE;usp800:DATE`` (or a JSON object); any subset, each once."""
    pairs = list(value.items()) if isinstance(value, dict) else [
        _pair(_text(item), ("", ""), "uspNNN:YYYY-MM-DD") for item in _items(value)]
    out: dict[str, date] = {}
    for key, when in pairs:  # type: ignore[misc]
        name = _text(key).lower()
        if name not in _ATTESTATIONS:
            raise ValueError(f"unknown attestation {name!r} (allowed: {', '.join(_ATTESTATIONS)})")
        if name in out:
            raise ValueError(f"{name} listed twice")
        out[name] = _date(when)
    return out


def _practice_zip(value: Any) -> str | None:
    """An empty cell is no ZIP; otherwise a 5-digit ZIP (or ZIP+4) the USPS dataset knows."""
    text = _text(value, required=False)
    if not text:
        return None
    if not ZIP.match(text):
        raise ValueError(f"{text!r} is not a 5-digit ZIP code (or ZIP+4)")
    if not known_zip(text):
        raise ValueError(f"{text} is not a known US ZIP code")
    return text[:5]


def _midlevel_counts(value: Any) -> dict[str, int]:
    """``STATE:COUNT;...`` (or a JSON object ``{"TX": 2}``)."""
    pairs: list[tuple[Any, Any]]
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = []
        for item in _items(value):
            text = _text(item)
            if text.count(":") != 1:
                raise ValueError(f"{text!r} must be STATE:COUNT")
            pairs.append(tuple(text.split(":")))
    out: dict[str, int] = {}
    for state, count in pairs:
        code = _state(state)
        if code in out:
            raise ValueError(f"state {code} listed twice")
        out[code] = _int(count)
    return out


# ---------------------------------------------------------------- row -> record
def _run(field: str, fn: Callable[[], Any], errors: list[str]) -> Any:
    try:
        return fn()
    except ValueError as exc:
        errors.append(f"{field}: {exc}")
        return None


def _pydantic_errors(exc: ValidationError, already: set[str]) -> list[str]:
    out = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else "(row)"
        if field not in already:
            out.append(f"{field}: {e['msg'].removeprefix('Value error, ')}")
    return out


def physician_from_fields(raw: dict[str, Any]) -> tuple[PhysicianRecord | None, list[str]]:
    """Validate one physician's fields (CSV strings or JSON values); every problem is returned."""
    errors: list[str] = []
    v: dict[str, Any] = {}
    npi = _run("npi", lambda: _text(raw.get("npi")), errors)
    if npi is not None:
        if not (len(npi) == 10 and npi.isdigit()):
            errors.append(f"npi: {npi!r} must be exactly 10 digits")
        elif not valid_npi(npi):
            errors.append(f"npi: {npi} fails the NPI check digit (Luhn with prefix 80840)")
        v["npi"] = npi
    for name in ("first_name", "last_name", "phone"):
        v[name] = _run(name, lambda name=name: _text(raw.get(name)), errors)
    degree = _run("degree", lambda: _text(raw.get("degree")).upper(), errors)
    if degree is not None and degree not in ("MD", "DO"):
        errors.append(f"degree: {degree!r} must be MD or DO")
    v["degree"] = degree
    v["email"] = _run("email", lambda: _text(raw.get("email")), errors)
    v["home_state"] = _run("home_state", lambda: _state(raw.get("home_state")), errors)
    v["licenses"] = _run("licenses", lambda: _registrations(raw.get("licenses"), "NUMBER"), errors)
    if v["licenses"] == []:
        errors.append("licenses: at least one state licence is required")
    v["dea"] = _run("dea", lambda: _registrations(raw.get("dea"), "DEA"), errors)
    for reg in v["dea"] or []:
        if not valid_dea(reg["number"]):
            errors.append(f"dea: {reg['state']} number {reg['number']} fails the DEA format or check digit")
        elif v["last_name"] and not valid_dea(reg["number"], v["last_name"]):
            errors.append(f"dea: {reg['state']} number {reg['number']} second letter does not match the last-name initial")
    v["therapies"] = _run("therapies", lambda: _vocab(raw.get("therapies"), _SERVICES, "service"), errors)
    v["max_clinics"] = _run("max_clinics", lambda: _int(raw.get("max_clinics")), errors)
    v["active_clinics"] = _run("active_clinics", lambda: _int(raw.get("active_clinics")), errors)
    if v["max_clinics"] is not None and v["active_clinics"] is not None and v["active_clinics"] > v["max_clinics"]:
        errors.append(f"active_clinics: {v['active_clinics']} exceeds max_clinics {v['max_clinics']}")
    v["malpractice_expires"] = _run("malpractice_expires", lambda: _date(raw.get("malpractice_expires")), errors)
    v["board_certifications"] = _run(
        "board_certifications", lambda: [_text(b) for b in _items(raw.get("board_certifications"))], errors)
    v["telehealth"] = _run("telehealth", lambda: _bool(raw.get("telehealth")), errors)
    v["supervised_midlevels"] = _run(
        "supervised_midlevels", lambda: _midlevel_counts(raw.get("supervised_midlevels") or {}), errors)
    v["practice_zip"] = _run("practice_zip", lambda: _practice_zip(raw.get("practice_zip")), errors)
    return _build(PhysicianRecord, v, errors)


def pharmacy_from_fields(raw: dict[str, Any]) -> tuple[PharmacyRecord | None, list[str]]:
    """Validate one pharmacy's fields (CSV strings or JSON values); every problem is returned."""
    errors: list[str] = []
    v: dict[str, Any] = {}
    pid = _run("pharmacy_id", lambda: _text(raw.get("pharmacy_id")), errors)
    if pid is not None and any(c.isspace() for c in pid):
        errors.append(f"pharmacy_id: {pid!r} must not contain spaces")
    v["pharmacy_id"] = pid
    v["name"] = _run("name", lambda: _text(raw.get("name")), errors)
    kind = _run("kind", lambda: _text(raw.get("kind")).upper(), errors)
    if kind is not None and kind not in _KINDS:
        errors.append(f"kind: {kind!r} must be 503A or 503B")
    v["kind"] = kind
    v["licensed_states"] = _run("licensed_states", lambda: _states(raw.get("licensed_states")), errors)
    if v["licensed_states"] == []:
        errors.append("licensed_states: at least one state is required")
    v["capabilities"] = _run("capabilities", lambda: _vocab(raw.get("capabilities"), _CAPABILITIES, "capability"), errors)
    v["services"] = _run("services", lambda: _vocab(raw.get("services"), _SERVICES, "service"), errors)
    v["email"] = _run("email", lambda: _text(raw.get("email")), errors)
    v["on_file"] = [c for c in PHARMACY_COMPLIANCE_COLUMNS if c in raw]
    if "licenses" in raw:
        v["licenses"] = _run("licenses", lambda: _registrations(raw.get("licenses"), "NUMBER"), errors)
    if "dea" in raw:
        v["dea"] = _run("dea", lambda: _pharmacy_dea(raw.get("dea")), errors)
    if "fda_registration" in raw:
        v["fda_registration"] = _run("fda_registration", lambda: _fda_registration(raw.get("fda_registration")), errors)
    if "attestations" in raw:
        v["attestations"] = _run("attestations", lambda: _attestations(raw.get("attestations")), errors)
    return _build(PharmacyRecord, v, errors)


def _build(model: Any, values: dict[str, Any], errors: list[str]) -> tuple[Any, list[str]]:
    failed = {e.split(":", 1)[0] for e in errors}
    try:
        record = model.model_validate({k: val for k, val in values.items() if val is not None})
    except ValidationError as exc:
        return None, errors + _pydantic_errors(exc, failed)
    return (None, errors) if errors else (record, [])


# ---------------------------------------------------------------- file -> records
def _csv_rows(text: str, required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], [RowError(line=1, reason="the file is empty; a header row is required")]
    problems = []
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problems.append(f"header: missing columns {', '.join(missing)}")
    if unknown:
        problems.append(f"header: unknown columns {', '.join(unknown)}")
    if dupes:
        problems.append(f"header: duplicate columns {', '.join(dupes)}")
    if problems:
        return [], [RowError(line=1, reason="; ".join(problems))]
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            errors.append(RowError(line=line, reason=f"row has {len(cells)} cells, the header has {len(header)}"))
            continue
        rows.append((line, dict(zip(header, cells))))
    return rows, errors


def _json_rows(text: str, required: tuple[str, ...], optional: tuple[str, ...],
               defaults: dict[str, Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [RowError(line=1, reason=f"not valid JSON: {exc.msg} at line {exc.lineno}")]
    if not isinstance(data, list):
        return [], [RowError(line=1, reason="the JSON file must hold a list of objects")]
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    for index, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            errors.append(RowError(line=index, reason="entry must be an object"))
            continue
        missing = [c for c in required if c not in obj and c not in defaults]
        unknown = [c for c in obj if c not in required and c not in optional]
        reasons = []
        if missing:
            reasons.append(f"missing fields {', '.join(missing)}")
        if unknown:
            reasons.append(f"unknown fields {', '.join(unknown)}")
        if reasons:
            errors.append(RowError(line=index, reason="; ".join(reasons)))
            continue
        rows.append((index, {**defaults, **obj}))
    return rows, errors


def _parse(text: str, fmt: Format, required: tuple[str, ...], optional: tuple[str, ...], defaults: dict[str, Any],
           build: Callable[[dict[str, Any]], tuple[Any, list[str]]], key: str) -> tuple[list[Any], list[RowError]]:
    if fmt == "csv":
        rows, errors = _csv_rows(text, required, optional)
    elif fmt == "json":
        rows, errors = _json_rows(text, required, optional, defaults)
    else:
        raise ValueError(f"fmt must be 'csv' or 'json', not {fmt!r}")
    records: list[Any] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        record, problems = build(raw)
        if record is not None:
            ident = getattr(record, key)
            if ident in seen:
                problems = [f"{key}: duplicate {ident} (first seen on line {seen[ident]})"]
            else:
                seen[ident] = line
                records.append(record)
        errors.extend(RowError(line=line, reason=p) for p in problems)
    errors.sort(key=lambda e: e.line)
    return records, errors


def parse_physicians(text: str, fmt: Format) -> tuple[list[PhysicianRecord], list[RowError]]:
    """Physician records and every row error of a roster file's text."""
    return _parse(text, fmt, PHYSICIAN_COLUMNS, PHYSICIAN_OPTIONAL, PHYSICIAN_JSON_DEFAULTS, physician_from_fields, "npi")


def parse_pharmacies(text: str, fmt: Format) -> tuple[list[PharmacyRecord], list[RowError]]:
    """Pharmacy records and every row error of a pharmacy file's text."""
    return _parse(text, fmt, PHARMACY_COLUMNS, PHARMACY_OPTIONAL, {}, pharmacy_from_fields, "pharmacy_id")
