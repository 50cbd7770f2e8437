"""The intake sales submit (CONTRACT.md), validated so that every problem is reported at once."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator, model_validator

from domain.codes import COMPOUNDED_SERVICES, JURISDICTIONS, CareModel, MidlevelRole, Service

#: How the clinic will source a service's drug: an FDA-approved product, or compounded by a 503A
#: (patient-specific) pharmacy or a 503B outsourcing facility. Sales record it; the assessment checks it.
ProductChoice = Literal["fda_approved", "compounded_503a", "compounded_503b"]

SLUG = re.compile(r"^[a-z0-9-]{3,64}$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{6,19}$")
ZIP = re.compile(r"^[0-9]{5}(-[0-9]{4})?$")


def check_state(value: str) -> str:
    code = value.strip().upper() if isinstance(value, str) else value
    if code not in JURISDICTIONS:
        raise ValueError(f"{value!r} is not a USPS code of the 50 states or DC")
    return code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Contact(_Strict):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    phone: str

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        if not PHONE.match(v):
            raise ValueError("must be a phone number such as +15125550100")
        return v


class Location(_Strict):
    state: str
    city: str = Field(min_length=1, max_length=100)
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
    name: str = Field(min_length=1, max_length=200)
    role: MidlevelRole
    state: str
    license_number: str = Field(min_length=1, max_length=40)
    #: optional: an NP/PA with an e-mail signs the agreements that name them (after the medical director)
    email: EmailStr | None = None

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        return check_state(v)


class Intake(_Strict):
    """What a closed deal tells us about the clinic; the onboarding's whole input from sales."""

    clinic_key: str
    clinic_name: str = Field(min_length=1, max_length=200)
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
        if not SLUG.match(v):
            raise ValueError("must be a lowercase slug of 3-64 characters from a-z, 0-9 and '-'")
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
    """Validate raw intake data; returns the intake or every problem found."""
    if not isinstance(data, dict):
        return None, [Problem(field="(intake)", reason="must be a JSON object")]
    try:
        return Intake.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from(exc)
