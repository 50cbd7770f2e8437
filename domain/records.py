"""Physician and pharmacy records as the roster files describe them (CONTRACT.md).

Parsing of CSV/JSON files (with line numbers) lives in ``domain.roster``; this module only
holds the validated shapes that the store persists and matching reads.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from domain.codes import Capability, PharmacyKind, Service


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class License(_Record):
    state: str
    number: str
    expires: date


class DeaRegistration(_Record):
    state: str
    number: str
    expires: date


class PhysicianRecord(_Record):
    npi: str
    first_name: str
    last_name: str
    degree: Literal["MD", "DO"]
    email: EmailStr
    phone: str
    home_state: str
    licenses: list[License] = Field(min_length=1)
    dea: list[DeaRegistration] = Field(default_factory=list)
    therapies: list[Service] = Field(default_factory=list)
    max_clinics: int = Field(ge=0)
    active_clinics: int = Field(ge=0)
    malpractice_expires: date
    board_certifications: list[str] = Field(default_factory=list)
    telehealth: bool = False
    #: optional roster column ``practice_zip``: the ZIP of the primary practice location (distance rules)
    practice_zip: str | None = None
    #: optional roster column ``supervised_midlevels`` (``STATE:COUNT;...``)
    supervised_midlevels: dict[str, int] = Field(default_factory=dict)
    excluded: bool = False  # OIG LEIE match by NPI
    exclusion_review: bool = False  # name + state match without NPI: ops must review

    @property
    def display_name(self) -> str:
        return f"Dr. {self.first_name} {self.last_name}, {self.degree}"

    def license_in(self, state: str) -> License | None:
        return next((lic for lic in self.licenses if lic.state == state), None)

    def dea_in(self, state: str) -> DeaRegistration | None:
        return next((d for d in self.dea if d.state == state), None)


class PharmacyLicense(_Record):
    """A state pharmacy licence or permit (resident or non-resident)."""

    state: str
    number: str
    expires: date


class PharmacyDea(_Record):
    number: str
    expires: date


class FdaRegistration(_Record):
    """A 503B outsourcing facility's FDA registration: its FEI number and last FDA inspection."""

    fei: str
    last_inspection: date


#: The optional compliance columns of the pharmacy file (CONTRACT.md); when present they rule.
PHARMACY_COMPLIANCE_COLUMNS = ("licenses", "dea", "fda_registration", "attestations")
#: USP chapters a pharmacy attests to: ``usp795`` (non-sterile), ``usp797`` (sterile), ``usp800`` (hazardous).
AttestationKey = Literal["usp795", "usp797", "usp800"]


class PharmacyRecord(_Record):
    pharmacy_id: str
    name: str
    kind: PharmacyKind
    licensed_states: list[str] = Field(min_length=1)
    capabilities: list[Capability] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    email: EmailStr
    #: which optional compliance columns the file carried for this pharmacy: a column on file rules,
    #: and an empty cell in it means "none" (no DEA, no FDA registration, nothing attested)
    on_file: list[Literal["licenses", "dea", "fda_registration", "attestations"]] = Field(default_factory=list)
    licenses: list[PharmacyLicense] = Field(default_factory=list)
    dea: PharmacyDea | None = None
    fda_registration: FdaRegistration | None = None
    #: the date each USP chapter was last attested
    attestations: dict[AttestationKey, date] = Field(default_factory=dict)

    def license_in(self, state: str) -> PharmacyLicense | None:
        return next((lic for lic in self.licenses if lic.state == state), None)


class RowError(BaseModel):
    """A rejected row: the 1-based line number in the file (header is line 1) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
