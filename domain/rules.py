"""Rule data loaded from ``domain/data/*.yaml`` and validated, so a fact without a source never reaches a plan.

Facts are dated: each entry holds from ``effective_from`` through ``effective_to`` (inclusive, open if
absent), and ``in_force(entries, day)`` picks the one in force on a given day.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.codes import JURISDICTIONS, Capability, MidlevelRole, Service

T = TypeVar("T")


class RuleDataError(ValueError):
    """A rule data file does not match its schema (names the file and the field)."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Data):
    """A block of rule data that names its basis (statute, guideline, label or company policy)."""

    source: str = Field(min_length=3)


class Fact(_Data, Generic[T]):
    """One dated, sourced value."""

    value: T
    source: str = Field(min_length=3)
    effective_from: date
    effective_to: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> "Fact[T]":
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class RatioCap(Fact[int | Literal["none", "unknown"]]):
    """Midlevels one physician may supervise: a number, ``none`` (the state sets no cap) or ``unknown``."""

    applies_to: list[MidlevelRole] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_for_numbers(self) -> "RatioCap":
        if isinstance(self.value, int) and (self.value < 1 or not self.applies_to):
            raise ValueError("a numeric cap must be >= 1 and name the roles it applies_to")
        return self


class ChartReviewValue(_Data):
    percent: int = Field(ge=1, le=100)
    cadence_days: int = Field(ge=1, le=365)


class StateNote(Fact[str]):
    services: list[Service] = Field(default_factory=list)  # empty: applies whatever the services
    needs_midlevels: bool = False  # only when the clinic has NP/PA midlevels
    #: on-site and hybrid care with an office in the state: the director practises near that office
    on_site_care_requires_local_physician: bool = False
    #: ... and holds one of these boards (certified or eligible), as the roster spells them
    director_board_certifications: list[str] = Field(default_factory=list)
    #: ... and practises within this many miles of each office (or in the office's county)
    director_within_miles: int | None = Field(default=None, ge=1)


def _no_overlap(entries: list[Fact[Any]]) -> list[Fact[Any]]:
    ordered = sorted(entries, key=lambda e: e.effective_from)
    for a, b in zip(ordered, ordered[1:]):
        if a.effective_to is None or a.effective_to >= b.effective_from:
            raise ValueError(f"entries from {a.effective_from} and {b.effective_from} overlap")
    return entries


def _caps_apart(entries: list[RatioCap]) -> list[RatioCap]:
    """Caps for different roles may run side by side (CA: PAs and NPs furnishing drugs); one role's own
    caps must not overlap in time, and no role may sit in two concurrent groups."""
    groups: dict[tuple[str, ...], list[RatioCap]] = {}
    for e in entries:
        groups.setdefault(tuple(sorted(r.value for r in e.applies_to)), []).append(e)
    for series in groups.values():
        _no_overlap(series)
    keys = list(groups)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if (set(a) & set(b) or not a or not b) and any(
                    x.in_force(y.effective_from) or y.in_force(x.effective_from) for x in groups[a] for y in groups[b]):
                raise ValueError(f"caps for {'/'.join(a) or 'all'} and {'/'.join(b) or 'all'} overlap in time")
    return entries


class StateRules(_Data):
    np_practice: list[Fact[Literal["full", "reduced", "restricted", "unknown"]]] = Field(min_length=1)
    pa_supervision: list[Fact[Literal["supervision", "collaboration", "unknown"]]] = Field(min_length=1)
    gfe_mode: list[Fact[Literal["in_person", "telehealth_allowed", "unknown"]]] = Field(min_length=1)
    supervision_ratio_cap: list[RatioCap] = Field(min_length=1)
    #: a state-set chart review, ``not_stated`` (company policy applies) or ``unknown``
    chart_review: list[Fact[ChartReviewValue | Literal["not_stated", "unknown"]]] = Field(min_length=1)
    notes: list[StateNote] = Field(default_factory=list)

    @field_validator("np_practice", "pa_supervision", "gfe_mode", "chart_review")
    @classmethod
    def _dated_series(cls, v: list[Fact[Any]]) -> list[Fact[Any]]:
        return _no_overlap(v)

    @field_validator("supervision_ratio_cap")
    @classmethod
    def _dated_caps(cls, v: list[RatioCap]) -> list[RatioCap]:
        return _caps_apart(v)


class DefaultChartReview(ChartReviewValue):
    basis: str = "policy"
    source: str = Field(min_length=3)


class DefaultRatioCap(_Data):
    """Company policy where a state's cap is not verified: plan for a conservative cap until ops confirm."""

    value: int = Field(ge=1)
    source: str = Field(min_length=3)


class RuleDefaults(_Data):
    chart_review: DefaultChartReview
    ratio_cap_when_unknown: DefaultRatioCap


class StateRuleBook(_Data):
    version: int
    sources: list[str] = Field(default_factory=list)  # YAML anchors only
    defaults: RuleDefaults
    states: dict[str, StateRules]

    @field_validator("states")
    @classmethod
    def _all_jurisdictions(cls, v: dict[str, StateRules]) -> dict[str, StateRules]:
        missing = sorted(JURISDICTIONS - set(v))
        unknown = sorted(set(v) - JURISDICTIONS)
        if missing or unknown:
            raise ValueError(f"states must be exactly the 50 states + DC (missing: {missing}, unknown: {unknown})")
        return v


class DrugStatus(Fact[str]):
    drug: str | None = None
    kind: Literal["503A", "503B"] | None = None  # a compounding-discretion end for that pharmacy kind


class ServiceInfo(_Data):
    title: str
    drugs: list[str]
    compounded: bool
    dea_schedule: Literal["II", "III", "IV", "V"] | None = None
    preparation: Literal["none", "sterile", "non_sterile"]
    capabilities_needed: list[Capability]
    pharmacy_model: Literal["none", "503A", "503B"]
    injectable: bool
    approved_alternatives: list[str] = Field(default_factory=list)
    fda_status: list[DrugStatus] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "ServiceInfo":
        if self.compounded != (self.pharmacy_model != "none"):
            raise ValueError("compounded services need a pharmacy_model of 503A/503B, others 'none'")
        return self


class FederalFacts(_Data):
    dea_telemedicine_flexibilities: Fact[str]


class ServiceCatalog(_Data):
    version: int
    federal: FederalFacts
    services: dict[Service, ServiceInfo]

    @field_validator("services")
    @classmethod
    def _every_service(cls, v: dict[Service, ServiceInfo]) -> dict[Service, ServiceInfo]:
        missing = sorted(s.value for s in Service if s not in v)
        if missing:
            raise ValueError(f"services missing from the catalog: {', '.join(missing)}")
        return v


class VolumeTier(_Data):
    max_patients: int | None
    amount: int = Field(ge=0)
    label: str


class PriceTable(_Data):
    version: int
    source: str = Field(min_length=3)
    base: int = Field(ge=0)
    state_strictness: dict[Literal["full", "reduced", "restricted", "unknown"], int]
    controlled_per_dea_state: int = Field(ge=0)
    service_risk: dict[Service, int]
    volume_tiers: list[VolumeTier] = Field(min_length=1)
    per_midlevel: int = Field(ge=0)
    per_on_site_location: int = Field(ge=0)
    on_site_oversight: int = Field(default=0, ge=0)
    #: the medical director's share of the retainer (percent), shown on offers; None: not shown
    physician_share_percent: int | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _monotone(self) -> "PriceTable":
        if any(a < 0 for a in [*self.state_strictness.values(), *self.service_risk.values()]):
            raise ValueError("amounts must not be negative")
        if set(self.state_strictness) != {"full", "reduced", "restricted", "unknown"}:
            raise ValueError("state_strictness needs full, reduced, restricted and unknown")
        missing = sorted(s.value for s in Service if s not in self.service_risk)
        if missing:
            raise ValueError(f"service_risk missing: {', '.join(missing)}")
        tiers = self.volume_tiers
        if tiers[-1].max_patients is not None or any(t.max_patients is None for t in tiers[:-1]):
            raise ValueError("only the last volume tier may (and must) have no max_patients")
        for a, b in zip(tiers, tiers[1:]):
            if b.amount < a.amount or (b.max_patients is not None and b.max_patients <= a.max_patients):  # type: ignore[operator]
                raise ValueError("volume tiers must grow in max_patients and amount")
        return self


def in_force(entries: list[Any], day: date) -> Any | None:
    """The entry in force on ``day`` (``None`` when none is)."""
    return next((e for e in entries if e.in_force(day)), None)


def parse_rule_data(model: type[BaseModel], text: str, name: str) -> Any:
    """Validate YAML text against a schema; errors name the file and the field path."""
    try:
        raw = yaml.safe_load(text)
        return model.model_validate(raw)
    except yaml.YAMLError as exc:
        raise RuleDataError(f"{name}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        lines = [f"{name}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RuleDataError("\n".join(lines)) from None


def _read(name: str) -> str:
    return resources.files("domain").joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def state_rules() -> StateRuleBook:
    return parse_rule_data(StateRuleBook, _read("state_rules.yaml"), "state_rules.yaml")


@lru_cache(maxsize=1)
def service_catalog() -> ServiceCatalog:
    return parse_rule_data(ServiceCatalog, _read("services.yaml"), "services.yaml")


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    return parse_rule_data(PriceTable, _read("pricing.yaml"), "pricing.yaml")
