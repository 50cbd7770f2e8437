"""Intake limits match what DocuSign and e-mail accept: what does not fit is rejected when a new
intake is submitted, each problem with its field path and reason, never discovered mid-onboarding;
intakes read back (running onboardings' Temporal payloads) keep release 1's rules."""

import copy
import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain import limits
from domain.codes import JURISDICTIONS, workflow_id_for
from domain.intake import NEW_INTAKE, Intake, parse_intake

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


def new_intake(data: dict) -> Intake:
    """Validate as a newly submitted intake (what ``parse_intake`` does)."""
    return Intake.model_validate(data, context={NEW_INTAKE: True})


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(ValidationError) as exc:
        new_intake(data)
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
    # CONTRACT.md: clinic_key is [a-z0-9-]{3,64}
    assert limits.CLINIC_KEY_MIN == 3 and limits.CLINIC_KEY_MAX == 64


def test_the_compact_external_id_always_fits():
    # "onboarding-" + 64-character key + 4 a replacement placement may add = 79 for the workflow id,
    # ":" + 10 hex digits + ":r999" = 16 more: 95 <= 100.
    assert limits.ENVELOPE_WORKFLOW_ID_MAX == 79
    assert limits.COMPACT_EXTERNAL_ID_MAX == 95 <= limits.DOCUSIGN_TEXT_CUSTOM_FIELD_MAX


def _all_agreements_intake(key: str) -> Intake:
    """A clinic in every state with an NP in each: every collaborative-practice agreement + Texas PA."""
    states = sorted(JURISDICTIONS)
    return new_intake(raw(
        clinic_key=key, states=states, locations=[],
        midlevels=[{"name": f"NP {st}", "role": "NP", "state": st, "license_number": f"NP-{st}"} for st in states]))


def test_external_ids_fit_for_the_longest_clinic_key():
    """Every agreement agreements_for makes over all 51 jurisdictions, for a 64-character key, with or
    without a replacement placement's longer workflow id, on any send up to the 999th."""
    from activities.onboarding import envelope_external_id
    from domain.assessment import assess
    from domain.documents import agreements_for

    intake = _all_agreements_intake("k" * limits.CLINIC_KEY_MAX)
    specs = agreements_for(intake, assess(intake, date(2026, 11, 1)))
    # the medical-director agreement + one per state (Texas: its prescriptive-authority agreement alone,
    # Tex. Occ. Code §157.0512, since one suffices there)
    assert len(JURISDICTIONS) == 51 and len(specs) == 1 + 51
    assert [s.agreement_kind for s in specs].count("prescriptive_authority_TX") == 1
    assert max(len(s.agreement_kind) for s in specs) == len(limits.LONGEST_AGREEMENT_KIND)
    assert max(len(s.template_version) for s in specs) <= len(limits.LONGEST_TEMPLATE_VERSION)
    workflow_ids = [workflow_id_for(intake.clinic_key), workflow_id_for(intake.clinic_key) + "-r99"]
    assert len(workflow_ids[-1]) == limits.ENVELOPE_WORKFLOW_ID_MAX
    for wf in workflow_ids:
        for attempt in (1, 2, 99, limits.MAX_SENDS):
            ids = [envelope_external_id(wf, s.agreement_kind, s.template_version, attempt) for s in specs]
            for ext in ids:
                assert len(ext) <= limits.DOCUSIGN_TEXT_CUSTOM_FIELD_MAX, ext
                assert ext.split(":", 1)[0] == wf  # Connect events are routed by it
            assert len(set(ids)) == len(ids)  # still one idempotency key per agreement
            assert ids == [envelope_external_id(wf, s.agreement_kind, s.template_version, attempt)
                           for s in specs]  # deterministic
        assert envelope_external_id(wf, "medical_director", "medical_director.v1", 1) != \
            envelope_external_id(wf, "medical_director", "medical_director.v1", 2)


def test_a_too_long_external_id_becomes_the_compact_form():
    import hashlib

    from activities.onboarding import envelope_external_id

    wf = workflow_id_for("k" * 64) + "-r99"
    kind, version = limits.LONGEST_AGREEMENT_KIND, limits.LONGEST_TEMPLATE_VERSION
    digest = hashlib.sha256(f"{kind}:{version}".encode()).hexdigest()[:10]
    assert envelope_external_id(wf, kind, version) == f"{wf}:{digest}"
    ext = envelope_external_id(wf, kind, version, limits.MAX_SENDS)
    assert ext == f"{wf}:{digest}:r{limits.MAX_SENDS}" and len(ext) == limits.COMPACT_EXTERNAL_ID_MAX


@pytest.mark.parametrize("key", ["glow-austin", "glow-austin-0101120000", "k" * 28])
def test_short_keys_keep_the_exact_form(key):
    """Envelopes already in flight are looked up by their external_id: it must not change when it fits."""
    from activities.onboarding import envelope_external_id
    from domain.assessment import assess
    from domain.documents import agreements_for

    intake = _all_agreements_intake(key)
    wf = workflow_id_for(key)
    for spec in agreements_for(intake, assess(intake, date(2026, 11, 1))):
        exact = f"{wf}:{spec.agreement_kind}:{spec.template_version}"
        assert envelope_external_id(wf, spec.agreement_kind, spec.template_version) == exact
        assert envelope_external_id(wf, spec.agreement_kind, spec.template_version, 1) == exact
        assert envelope_external_id(wf, spec.agreement_kind, spec.template_version, 2) == f"{exact}:r2"
        assert envelope_external_id(wf, spec.agreement_kind, spec.template_version, 99) == f"{exact}:r99"


def test_the_exact_form_is_kept_up_to_100_characters():
    from activities.onboarding import envelope_external_id

    kind, version = "medical_director", "medical_director.v1"
    wf = "onboarding-" + "k" * (100 - len(f"onboarding-:{kind}:{version}"))
    assert envelope_external_id(wf, kind, version) == f"{wf}:{kind}:{version}"  # exactly 100
    assert envelope_external_id(wf + "k", kind, version).count(":") == 1  # 101 -> compact
    assert envelope_external_id(wf, kind, version, 2).count(":") == 2  # 103 -> compact, ":r2" kept


# ---------------------------------------------------------------- clinic_key
def test_a_64_character_clinic_key_is_accepted():
    """CONTRACT.md allows 64; its envelopes' external ids use the compact form where needed."""
    key = "a-" * 31 + "zz"
    assert len(key) == 64
    assert new_intake(raw(clinic_key=key)).clinic_key == key
    intake, problems = parse_intake(raw(clinic_key="k" * 64))
    assert problems == [] and intake is not None


@pytest.mark.parametrize("key, reason", [
    ("k" * 65, "at most 64 characters, not 65"),
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
    assert schema["properties"]["clinic_key"]["pattern"] == "^[a-z0-9-]{3,64}$"


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
    intake = new_intake(with_value(path, "  \t Dana  Reyes-Núñez \n "))
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
    new_intake(with_value(path, "N" * 100))
    new_intake(with_value(path, " " + "N" * 100 + " "))  # trimmed first
    loc, reason = only_error(with_value(path, "N" * 101))
    assert loc == path
    assert "must be at most 100 characters" in reason and "DocuSign" in reason and "not 101" in reason


def test_names_in_any_script_pass():
    # accents, CJK, and the zero-width non-joiner Persian names need
    names = ["José Ñúñez-O'Brien", "李小龍", "مهر\u200cناز", "Zoë Saldaña (PA-C)"]
    for name in names:
        intake = new_intake(with_value(("contact", "name"), name))
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
    intake = new_intake(with_value(path, _email(100)))
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
    assert new_intake(raw()).midlevels[0].email is None


@pytest.mark.parametrize("bad", ["555", "call me", "+1512555010\n0"])
def test_phone_is_still_validated(bad):
    loc, reason = only_error(with_value(("contact", "phone"), bad))
    assert loc == ("contact", "phone") and "phone number" in reason


# ---------------------------------------------------------------- every problem at once
def test_every_problem_is_listed_with_its_path_and_reason():
    data = raw(clinic_key="k" * 65, clinic_name="Glow\r\nAesthetics")
    data["contact"]["name"] = "D" * 101
    data["contact"]["email"] = _email(120)
    data["midlevels"][0]["name"] = "Sam\x00Lee"
    data["locations"][0]["city"] = " "
    errors = {dotted(e["loc"]): e["msg"].removeprefix("Value error, ") for e in errors_of(data)}
    assert set(errors) == {"clinic_key", "clinic_name", "contact.name", "contact.email",
                           "midlevels.0.name", "locations.0.city"}
    assert "at most 64" in errors["clinic_key"] and "U+000D" in errors["clinic_name"]
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


# ---------------------------------------------------------------- intakes read back keep release 1's rules
def _release_1_intake() -> dict:
    """Valid in release 1 (names up to 200 characters, any characters), not as a new intake."""
    data = raw(clinic_name="C" * 150)
    data["midlevels"][0]["name"] = "Sam\tLee"
    return data


def test_a_running_onboardings_input_still_deserializes():
    """The Temporal pydantic data converter reads a running onboarding's input without the new-intake
    context: an intake release 1 accepted must round-trip, or the workflow's tasks would fail forever."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from domain.onboarding import OnboardingInput

    converter = pydantic_data_converter.payload_converter
    started = OnboardingInput(intake=Intake.model_validate(_release_1_intake()))
    payloads = converter.to_payloads([started])
    [back] = converter.from_payloads(payloads, [OnboardingInput])
    assert back == started
    assert back.intake.clinic_name == "C" * 150 and back.intake.midlevels[0].name == "Sam\tLee"


def test_a_new_intake_with_the_same_data_is_rejected():
    intake, problems = parse_intake(_release_1_intake())
    assert intake is None
    by_field = {p.field: p.reason for p in problems}
    assert set(by_field) == {"clinic_name", "midlevels[0].name"}
    assert "at most 100 characters" in by_field["clinic_name"] and "not 150" in by_field["clinic_name"]
    assert "control or line-break" in by_field["midlevels[0].name"] and "U+0009" in by_field["midlevels[0].name"]


def test_read_back_keeps_release_1_rules():
    data = _release_1_intake()
    data["contact"]["email"] = _email(120)
    data["midlevels"][0]["license_number"] = "AP12\t3456"
    data["locations"][0]["city"] = "Glow\u2028City"
    intake = Intake.model_validate(data)  # no new-intake context: what Temporal and the store do
    assert len(str(intake.contact.email)) == 120 and intake.midlevels[0].license_number == "AP12\t3456"
    # release 1's own limits still hold
    for path, value, reason in [(("clinic_name",), "C" * 201, "at most 200 characters, not 201"),
                                (("contact", "name"), " ", "must not be empty"),
                                (("locations", 0, "city"), "C" * 101, "at most 100 characters, not 101"),
                                (("midlevels", 0, "license_number"), "L" * 41, "at most 40 characters, not 41"),
                                (("contact", "email"), "dana@", "email"),
                                (("clinic_key",), "k" * 65, "at most 64 characters")]:
        with pytest.raises(ValidationError) as exc:
            Intake.model_validate(with_value(path, value))
        [error] = exc.value.errors()
        assert error["loc"] == path and reason in error["msg"], (path, error)
