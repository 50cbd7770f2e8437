"""The intake sales submit (CONTRACT.md), validated so that every problem is reported at once.

Two rule sets: a NEW intake (``parse_intake``, what the API and the CLI call; validation context
``{"new_intake": True}``) must also fit DocuSign and e-mail headers (``domain.limits``): names trimmed,
at most 100 characters, no control or line-break characters; e-mails at most 100 characters; licence
numbers on one line. Without that context (the Temporal data converter reading a running onboarding's
input, the store reading an intake back) release 1's rules hold, so that onboardings started before
the stricter limits keep running after a deploy.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Callable, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, EmailStr, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from domain.codes import COMPOUNDED_SERVICES, JURISDICTIONS, CareModel, MidlevelRole, Service
from domain.limits import (CLINIC_KEY_MAX, CLINIC_KEY_MIN, EMAIL_MAX, LEGACY_CITY_MAX, LEGACY_NAME_MAX,
                           LICENSE_NUMBER_MAX, NAME_MAX, forbidden_character)

#: How the clinic will source a service's drug: an FDA-approved product, or compounded by a 503A
#: (patient-specific) pharmacy or a 503B outsourcing facility. Sales record it; the assessment checks it.
ProductChoice = Literal["fda_approved", "compounded_503a", "compounded_503b"]

SLUG_CHARS = re.compile(r"^[a-z0-9-]+$")
SLUG = re.compile(rf"^[a-z0-9-]{{{CLINIC_KEY_MIN},{CLINIC_KEY_MAX}}}$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{6,19}$")
ZIP = re.compile(r"^[0-9]{5}(-[0-9]{4})?$")


def check_state(value: str) -> str:
    code = value.strip().upper() if isinstance(value, str) else value
    if code not in JURISDICTIONS:
        raise ValueError(f"{value!r} is not a USPS code of the 50 states or DC")
    return code


#: The validation context key ``parse_intake`` sets: the stricter rules apply to a new intake only.
NEW_INTAKE = "new_intake"


def is_new_intake(info: ValidationInfo) -> bool:
    """Whether this validation is of a newly submitted intake (``parse_intake``), not a read-back."""
    return isinstance(info.context, dict) and bool(info.context.get(NEW_INTAKE))


def _one_line_text(max_length: int, legacy_max: int, why: str = "") -> Callable[[str, ValidationInfo], str]:
    """A validator for a one-line display text. A new intake's: trimmed, non-empty, at most ``max_length``
    characters, no control or line-break characters (they would break e-mail headers and DocuSign fields).
    Read back: release 1's rule, non-empty (after the model's whitespace stripping) and at most
    ``legacy_max`` characters, the value unchanged."""

    def check(value: str, info: ValidationInfo) -> str:
        new = is_new_intake(info)
        if new:
            value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if not new:
            if len(value) > legacy_max:
                raise ValueError(f"must be at most {legacy_max} characters, not {len(value)}")
            return value
        bad = forbidden_character(value)
        if bad is not None:
            position, char = bad
            raise ValueError(f"must not contain control or line-break characters ({char} at position {position}); "
                             "it goes into e-mail headers and DocuSign")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters{f' ({why})' if why else ''}, not {len(value)}")
        return value

    return check


def _check_email_length(value: str, info: ValidationInfo) -> str:
    if is_new_intake(info) and len(value) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters (DocuSign's limit for recipient e-mails), "
                         f"not {len(value)}")
    return value


# The JSON schema (the API's documented request body) describes what a new intake must meet.
_ONE_LINE = "one line: no control or line-break characters; surrounding whitespace is trimmed"
#: A person's name: a DocuSign recipient name and an e-mail header value.
PersonName = Annotated[str, AfterValidator(_one_line_text(NAME_MAX, LEGACY_NAME_MAX,
                                                          "DocuSign's limit for recipient names")),
                       Field(json_schema_extra={"minLength": 1, "maxLength": NAME_MAX, "description": _ONE_LINE})]
#: The clinic's name, shown in DocuSign documents and subjects and in e-mail subjects.
ClinicName = Annotated[str, AfterValidator(_one_line_text(NAME_MAX, LEGACY_NAME_MAX, "DocuSign's limit for names")),
                       Field(json_schema_extra={"minLength": 1, "maxLength": NAME_MAX, "description": _ONE_LINE})]
#: A city, shown in DocuSign documents.
CityName = Annotated[str, AfterValidator(_one_line_text(NAME_MAX, LEGACY_CITY_MAX, "DocuSign's limit for names")),
                     Field(json_schema_extra={"minLength": 1, "maxLength": NAME_MAX, "description": _ONE_LINE})]
#: A licence number, printed in the agreements.
LicenseNumber = Annotated[str, AfterValidator(_one_line_text(LICENSE_NUMBER_MAX, LICENSE_NUMBER_MAX)),
                          Field(json_schema_extra={"minLength": 1, "maxLength": LICENSE_NUMBER_MAX,
                                                   "description": _ONE_LINE})]
#: An e-mail address DocuSign can route to.
Email = Annotated[EmailStr, AfterValidator(_check_email_length), Field(json_schema_extra={"maxLength": EMAIL_MAX})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Contact(_Strict):
    name: PersonName
    email: Email
    phone: str

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        if not PHONE.match(v):
            raise ValueError("must be a phone number such as +15125550100")
        return v


class Location(_Strict):
    state: str
    city: CityName
    zip: str

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        return check_state(v)

    @field_validator("zip")
    @classmethod
    def _zip(cls, v: str) -> str:
        if not ZIP.match(v):
            raise ValueError("must be a 5-digit ZIP code (or ZIP+4)")
        return v


class Midlevel(_Strict):
    name: PersonName
    role: MidlevelRole
    state: str
    license_number: LicenseNumber
    #: optional: an NP/PA with an e-mail signs the agreements that name them (after the medical director)
    email: Email | None = None
    #: optional: the licence's expiry date; with it the licence is on the renewal ladder (domain/renewals.py)
    license_expires: date | None = None

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        return check_state(v)


class Intake(_Strict):
    """What a closed deal tells us about the clinic; the onboarding's whole input from sales."""

    # Validate a newly submitted intake with ``parse_intake``: the new-intake limits apply only there.
    # The JSON schema (the API's request body) describes those limits.

    clinic_key: str = Field(json_schema_extra={"pattern": SLUG.pattern})
    clinic_name: ClinicName
    contact: Contact
    states: list[str] = Field(min_length=1)
    care_model: CareModel
    services: list[Service] = Field(min_length=1)
    monthly_patients: int = Field(ge=0, le=1_000_000)
    locations: list[Location] = Field(default_factory=list)
    midlevels: list[Midlevel] = Field(default_factory=list)
    requested_start: date
    product_choices: dict[Service, ProductChoice] = Field(default_factory=dict)

    @field_validator("clinic_key")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_CHARS.fullmatch(v):
            raise ValueError(f"must be a lowercase slug of {CLINIC_KEY_MIN}-{CLINIC_KEY_MAX} characters "
                             "from a-z, 0-9 and '-'")
        if len(v) < CLINIC_KEY_MIN:
            raise ValueError(f"must be at least {CLINIC_KEY_MIN} characters, not {len(v)}")
        if len(v) > CLINIC_KEY_MAX:
            raise ValueError(f"must be at most {CLINIC_KEY_MAX} characters, not {len(v)}")
        return v

    @field_validator("states")
    @classmethod
    def _states(cls, v: list[str]) -> list[str]:
        codes = [check_state(s) for s in v]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate states: {', '.join(dupes)}")
        return codes

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[Service]) -> list[Service]:
        dupes = sorted({s.value for s in v if v.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate services: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _places_within_states(self) -> "Intake":
        problems = []
        for i, loc in enumerate(self.locations):
            if loc.state not in self.states:
                problems.append(f"locations[{i}].state {loc.state} is not one of the intake states")
        for i, m in enumerate(self.midlevels):
            if m.state not in self.states:
                problems.append(f"midlevels[{i}].state {m.state} is not one of the intake states")
        for service, choice in self.product_choices.items():
            if service not in self.services:
                problems.append(f"product_choices.{service.value} is not one of the requested services")
            elif choice != "fda_approved" and service not in COMPOUNDED_SERVICES:
                problems.append(f"product_choices.{service.value}: {service.value} is never compounded; "
                                "only fda_approved applies")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def controlled_services(self) -> list[Service]:
        from domain.codes import CONTROLLED_SERVICES

        return [s for s in self.services if s in CONTROLLED_SERVICES]


class Problem(BaseModel):
    """One reason an input was rejected: where (a field path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def problems_from(error: ValidationError) -> list[Problem]:
    """Flatten a pydantic error into ``field path + reason`` lines, e.g. ``states[1]``."""
    out: list[Problem] = []
    for e in error.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += ("." if path else "") + str(part)
        reason = e["msg"].removeprefix("Value error, ")
        out.append(Problem(field=path or "(intake)", reason=reason))
    return out


def parse_intake(data: Any) -> tuple[Intake | None, list[Problem]]:
    """Validate a newly submitted intake (the API and the CLI); returns the intake or every problem found.

    The only place the new-intake limits apply (validation context ``{"new_intake": True}``)."""
    if not isinstance(data, dict):
        return None, [Problem(field="(intake)", reason="must be a JSON object")]
    try:
        return Intake.model_validate(data, context={NEW_INTAKE: True}), []
    except ValidationError as exc:
        return None, problems_from(exc)
