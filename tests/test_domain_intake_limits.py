"""Intake limits match what DocuSign and e-mail accept: what does not fit is rejected at intake,
each problem with its field path and reason, never discovered mid-onboarding."""

import copy
import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain import limits
from domain.codes import JURISDICTIONS, workflow_id_for
from domain.intake import Intake, parse_intake

ROOT = Path(__file__).resolve().parents[1]
DEMO_INTAKES = sorted((ROOT / "data" / "demo" / "intakes").glob("*.json"))
BASE = json.loads((ROOT / "data" / "demo" / "intakes" / "glow-austin.json").read_text())

#: (field path as pydantic reports it, how to set it in the raw intake)
NAME_FIELDS = [("clinic_name",), ("contact", "name"), ("midlevels", 0, "name"), ("locations", 0, "city")]
#: Characters that must never reach an e-mail header or a DocuSign field, with why they are listed.
FORBIDDEN = {
    "\r": "CR", "\n": "LF", "\r\n": "CRLF", "\t": "TAB", "\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL",
    "\x85": "NEL (C1)", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR",
    "\u202e": "RIGHT-TO-LEFT OVERRIDE", "\u200b": "ZERO WIDTH SPACE",
}


def raw(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def with_value(path: tuple, value) -> dict:
    data = raw()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(ValidationError) as exc:
        Intake.model_validate(data)
    return exc.value.errors()


def only_error(data: dict) -> tuple[tuple, str]:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]["loc"], errors[0]["msg"].removeprefix("Value error, ")


def dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


# ---------------------------------------------------------------- the limits and their budget
def test_docusign_limits_are_named_constants():
    assert limits.DOCUSIGN_TEXT_CUSTOM_FIELD_MAX == 100
    assert limits.DOCUSIGN_RECIPIENT_NAME_MAX == limits.NAME_MAX == 100
    assert limits.DOCUSIGN_RECIPIENT_EMAIL_MAX == limits.EMAIL_MAX == 100
    # 100 - len(":collaborative_practice_XX:collaborative_practice.v99:r99") = 43 for the workflow id,
    # of which "onboarding-" + 4 characters a replacement placement may add = 15: 28 for the key.
    assert limits.ENVELOPE_WORKFLOW_ID_MAX == 43
    assert limits.CLINIC_KEY_MAX == 28 and limits.CLINIC_KEY_MIN == 3


def test_the_budget_covers_every_agreement_the_templates_make():
    """The longest kind and version in the budget are at least as long as any agreements_for makes,
    for a clinic in every state with an NP in each (every collaborative-practice agreement + Texas PA)."""
    from activities.onboarding import envelope_external_id
    from domain.assessment import assess
    from domain.documents import agreements_for

    states = sorted(JURISDICTIONS)
    intake = Intake.model_validate(raw(
        clinic_key="k" * limits.CLINIC_KEY_MAX, states=states, locations=[],
        midlevels=[{"name": f"NP {st}", "role": "NP", "state": st, "license_number": f"NP-{st}"} for st in states]))
    specs = agreements_for(intake, assess(intake, date(2026, 11, 1)))
    assert len(specs) == 1 + len(states) + 1
    assert max(len(s.agreement_kind) for s in specs) == len(limits.LONGEST_AGREEMENT_KIND)
    assert max(len(s.template_version) for s in specs) <= len(limits.LONGEST_TEMPLATE_VERSION)
    longest_wf = workflow_id_for(intake.clinic_key) + "-r99"  # a replacement placement's longer id
    assert len(longest_wf) == limits.ENVELOPE_WORKFLOW_ID_MAX
    for spec in specs:
        for wf in (workflow_id_for(intake.clinic_key), longest_wf):
            for attempt in (1, 2, 99):
                ext = envelope_external_id(wf, spec.agreement_kind, spec.template_version, attempt)
                assert len(ext) <= limits.DOCUSIGN_TEXT_CUSTOM_FIELD_MAX, ext
    # and the arithmetic is tight: the budget's own longest external id is exactly 100
    ext = envelope_external_id(longest_wf, limits.LONGEST_AGREEMENT_KIND, limits.LONGEST_TEMPLATE_VERSION, 99)
    assert len(ext) == limits.DOCUSIGN_TEXT_CUSTOM_FIELD_MAX


# ---------------------------------------------------------------- clinic_key
def test_longest_clinic_key_passes_and_its_external_id_fits():
    from activities.onboarding import envelope_external_id

    key = "a-" * (limits.CLINIC_KEY_MAX // 2 - 1) + "zz"
    assert len(key) == limits.CLINIC_KEY_MAX
    intake = Intake.model_validate(raw(clinic_key=key))
    ext = envelope_external_id(workflow_id_for(intake.clinic_key), "prescriptive_authority_TX",
                               "collaborative_practice.v1", 2)
    assert len(ext) <= 100


def test_a_64_character_clinic_key_is_rejected_because_its_external_id_cannot_fit():
    """CONTRACT.md allowed 64; its envelopes' external_id would be 127+ characters, so it is refused."""
    from activities.onboarding import envelope_external_id

    key = "k" * 64
    assert len(envelope_external_id(workflow_id_for(key), "collaborative_practice_TX",
                                    "collaborative_practice.v1")) > 100
    loc, reason = only_error(raw(clinic_key=key))
    assert loc == ("clinic_key",)
    assert f"at most {limits.CLINIC_KEY_MAX} characters, not 64" in reason and "DocuSign" in reason
    assert "100" in reason


@pytest.mark.parametrize("key, reason", [
    ("k" * 29, "at most 28 characters, not 29"),
    ("ab", "at least 3 characters, not 2"),
    ("Glow-Austin", "lowercase slug"),
    ("glow_austin", "lowercase slug"),
    ("glow\naustin", "lowercase slug"),
    ("glow-austín", "lowercase slug"),
])
def test_bad_clinic_keys(key, reason):
    loc, msg = only_error(raw(clinic_key=key))
    assert loc == ("clinic_key",) and reason in msg


def test_clinic_key_schema_advertises_the_limit():
    schema = Intake.model_json_schema()
    assert schema["properties"]["clinic_key"]["pattern"] == "^[a-z0-9-]{3,28}$"


# ---------------------------------------------------------------- names
@pytest.mark.parametrize("path", NAME_FIELDS, ids=dotted)
@pytest.mark.parametrize("char", list(FORBIDDEN), ids=list(FORBIDDEN.values()))
def test_control_characters_in_each_name_are_rejected(path, char):
    loc, reason = only_error(with_value(path, f"Glow{char}Bcc: evil@example.com"))
    assert loc == path
    assert "must not contain control or line-break characters" in reason
    assert f"U+{ord(char[0]):04X}" in reason and "position 4" in reason


@pytest.mark.parametrize("path", NAME_FIELDS, ids=dotted)
def test_a_lone_surrogate_in_a_name_is_rejected(path):
    """JSON may carry "\\ud800"; it could never be encoded for DocuSign or SMTP (pydantic refuses it)."""
    loc, reason = only_error(with_value(path, "Glow\ud800Clinic"))
    assert loc == path and "unicode" in reason


def test_control_characters_in_a_licence_number_are_rejected():
    loc, reason = only_error(with_value(("midlevels", 0, "license_number"), "AP12\n3456"))
    assert loc == ("midlevels", 0, "license_number") and "control or line-break" in reason


@pytest.mark.parametrize("path", NAME_FIELDS, ids=dotted)
def test_names_are_trimmed(path):
    intake = Intake.model_validate(with_value(path, "  \t Dana  Reyes-Núñez \n "))
    value = intake.model_dump()
    for part in path:
        value = value[part]
    assert value == "Dana  Reyes-Núñez"


@pytest.mark.parametrize("path", NAME_FIELDS, ids=dotted)
@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
def test_blank_names_are_rejected(path, blank):
    loc, reason = only_error(with_value(path, blank))
    assert loc == path and reason == "must not be empty"


@pytest.mark.parametrize("path", NAME_FIELDS, ids=dotted)
def test_names_fit_docusign(path):
    Intake.model_validate(with_value(path, "N" * 100))
    Intake.model_validate(with_value(path, " " + "N" * 100 + " "))  # trimmed first
    loc, reason = only_error(with_value(path, "N" * 101))
    assert loc == path
    assert "must be at most 100 characters" in reason and "DocuSign" in reason and "not 101" in reason


def test_names_in_any_script_pass():
    # accents, CJK, and the zero-width non-joiner Persian names need
    names = ["José Ñúñez-O'Brien", "李小龍", "مهر\u200cناز", "Zoë Saldaña (PA-C)"]
    for name in names:
        intake = Intake.model_validate(with_value(("contact", "name"), name))
        assert intake.contact.name == name


def test_name_schema_advertises_the_limit():
    defs = Intake.model_json_schema()["$defs"]
    assert defs["Contact"]["properties"]["name"]["maxLength"] == 100
    assert defs["Midlevel"]["properties"]["name"]["maxLength"] == 100
    assert defs["Contact"]["properties"]["email"]["maxLength"] == 100


# ---------------------------------------------------------------- e-mails and phone
def _email(length: int) -> str:
    """A valid address of exactly ``length`` characters (local part <= 64, labels <= 63)."""
    local, tail = "dana.reyes", ".clinic.example"
    pad = length - len(local) - 1 - len(tail) - 1  # two labels joined by a dot
    first = pad // 2
    assert 1 <= first <= pad - first <= 63
    return f"{local}@{'a' * first}.{'b' * (pad - first)}{tail}"


@pytest.mark.parametrize("path", [("contact", "email"), ("midlevels", 0, "email")], ids=dotted)
def test_emails_fit_docusign(path):
    intake = Intake.model_validate(with_value(path, _email(100)))
    assert len(str(intake.contact.email if path[0] == "contact" else intake.midlevels[0].email)) == 100
    loc, reason = only_error(with_value(path, _email(101)))
    assert loc == path and "at most 100 characters" in reason and "not 101" in reason


@pytest.mark.parametrize("path", [("contact", "email"), ("midlevels", 0, "email")], ids=dotted)
@pytest.mark.parametrize("bad", ["dana", "dana@", "dana@clinic example", "dana@clinic.example\nBcc: x@y.z",
                                 "da na@clinic.example"])
def test_invalid_emails_are_rejected(path, bad):
    loc, reason = only_error(with_value(path, bad))
    assert loc == path and "email" in reason.lower()


def test_midlevel_email_stays_optional():
    assert Intake.model_validate(raw()).midlevels[0].email is None


@pytest.mark.parametrize("bad", ["555", "call me", "+1512555010\n0"])
def test_phone_is_still_validated(bad):
    loc, reason = only_error(with_value(("contact", "phone"), bad))
    assert loc == ("contact", "phone") and "phone number" in reason


# ---------------------------------------------------------------- every problem at once
def test_every_problem_is_listed_with_its_path_and_reason():
    data = raw(clinic_key="k" * 40, clinic_name="Glow\r\nAesthetics")
    data["contact"]["name"] = "D" * 101
    data["contact"]["email"] = _email(120)
    data["midlevels"][0]["name"] = "Sam\x00Lee"
    data["locations"][0]["city"] = " "
    errors = {dotted(e["loc"]): e["msg"].removeprefix("Value error, ") for e in errors_of(data)}
    assert set(errors) == {"clinic_key", "clinic_name", "contact.name", "contact.email",
                           "midlevels.0.name", "locations.0.city"}
    assert "at most 28" in errors["clinic_key"] and "U+000D" in errors["clinic_name"]
    assert "not 101" in errors["contact.name"] and "not 120" in errors["contact.email"]
    assert "U+0000" in errors["midlevels.0.name"] and errors["locations.0.city"] == "must not be empty"

    intake, problems = parse_intake(data)  # what the API (422) and the CLI (exit 2) print
    assert intake is None
    assert {p.field for p in problems} == {"clinic_key", "clinic_name", "contact.name", "contact.email",
                                           "midlevels[0].name", "locations[0].city"}
    assert all(p.reason and not p.reason.startswith("Value error") for p in problems)


# ---------------------------------------------------------------- the shipped data still passes
@pytest.mark.parametrize("path", DEMO_INTAKES, ids=lambda p: p.stem)
def test_demo_intakes_still_pass(path):
    intake, problems = parse_intake(json.loads(path.read_text()))
    assert problems == [] and intake is not None
    assert len(intake.clinic_key) <= limits.CLINIC_KEY_MAX


def test_demo_run_keys_still_fit():
    """``mdco demo`` suffixes a 10-digit run id to each shipped key (starter/demo.py)."""
    for path in DEMO_INTAKES:
        key = json.loads(path.read_text())["clinic_key"] + "-0101120000"
        intake, problems = parse_intake(raw(clinic_key=key))
        assert problems == [], (key, problems)
