"""The stored OIG LEIE list and the roster screens that apply it to physicians' exclusion flags.

``roster.upsert_physicians`` never clears a flag. Clearing is decided here, and only by a re-screen
against a newly imported list that no longer lists the physician or shows a reinstatement; every
flag change is written to the audit trail (workflow ``roster``, actor ``exclusion-screen``) with
NPIs only, no names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import date

from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from domain.exclusions import SOURCE, LeieEntry, screen
from store import audit, roster
from store import tables as t
from store.db import run

AUDIT_WORKFLOW, AUDIT_ACTOR = "roster", "exclusion-screen"
_CHUNK = 500
_FIELDS = ("line", "npi", "last_name", "first_name", "mid_name", "business_name", "general", "specialty", "state",
           "excl_type", "excl_date", "rein_date", "waiver_date", "waiver_state")


class ScreenSummary(BaseModel):
    """Counts only (names are PII)."""

    list_entries: int
    screened: int
    excluded: int
    review: int
    newly_excluded: int = 0
    newly_review: int = 0
    cleared_excluded: int = 0
    cleared_review: int = 0


def import_exclusions(engine: Engine, entries: Sequence[LeieEntry], *, source_sha256: str = "") -> int:
    """Replace the stored list with ``entries`` in one transaction (all or nothing); returns the count."""
    for i, e in enumerate(entries):
        if not isinstance(e, LeieEntry):
            raise ValueError(f"entries[{i}]: expected a LeieEntry, got {type(e).__name__}")
    table = t.LeieExclusion.__table__  # type: ignore[attr-defined]
    rows = [{f: getattr(e, f) for f in _FIELDS} for e in entries]

    def work(s: Session) -> int:
        s.exec(table.delete())
        for i in range(0, len(rows), _CHUNK):
            s.exec(table.insert(), params=rows[i:i + _CHUNK])
        return len(rows)

    count = run(engine, work)
    audit.audit(engine, AUDIT_WORKFLOW, AUDIT_ACTOR, "leie_imported",
               detail={"entries": count, "sha256": source_sha256, "source": SOURCE})
    return count


def load_exclusions(engine: Engine) -> list[LeieEntry]:
    def work(s: Session) -> list[LeieEntry]:
        cols = [getattr(t.LeieExclusion, f) for f in _FIELDS]
        return [LeieEntry(**dict(zip(_FIELDS, row))) for row in s.exec(select(*cols).order_by(t.LeieExclusion.line))]

    return run(engine, work, write=False)


def exclusion_count(engine: Engine) -> int:
    return run(engine, lambda s: s.exec(select(func.count()).select_from(t.LeieExclusion)).scalar_one(), write=False)


def rescreen(engine: Engine, as_of: date) -> ScreenSummary:
    """Screen the whole roster against the stored list and set AND clear flags to match it.

    Refuses to run without a stored list: an empty list would clear every flag.
    """
    entries = load_exclusions(engine)
    if not entries:
        raise ValueError("exclusion list: none imported yet (run `mdco exclusions import FILE` first)")
    return _apply(engine, roster.list_physicians(engine), entries, as_of, may_clear=True)


def screen_after_roster_import(engine: Engine, npis: Iterable[str] | None = None,
                               as_of: date | None = None) -> ScreenSummary:
    """Screen the roster (or just ``npis``) after a roster import; only ever sets flags.

    Without a stored list nothing changes and the summary has ``list_entries == 0``.
    """
    entries = load_exclusions(engine)
    physicians = roster.list_physicians(engine)
    if npis is not None:
        wanted = set(npis)
        physicians = [p for p in physicians if p.npi in wanted]
    if not entries:
        return ScreenSummary(list_entries=0, screened=len(physicians),
                             excluded=sum(p.excluded for p in physicians),
                             review=sum(p.exclusion_review for p in physicians))
    return _apply(engine, physicians, entries, as_of or date.today(), may_clear=False)


def _apply(engine: Engine, physicians: list, entries: list[LeieEntry], as_of: date, *, may_clear: bool) -> ScreenSummary:
    current = {p.npi: (p.excluded, p.exclusion_review) for p in physicians}
    summary = ScreenSummary(list_entries=len(entries), screened=len(physicians), excluded=0, review=0)
    for result in screen(physicians, entries, as_of):
        was_excluded, was_review = current[result.npi]
        excluded, review = result.excluded, result.review
        if not may_clear:
            excluded, review = excluded or was_excluded, review or was_review
        summary.excluded += excluded
        summary.review += review
        if (excluded, review) == (was_excluded, was_review):
            continue
        roster.set_exclusion(engine, result.npi, excluded, review)
        changes = []
        if excluded != was_excluded:
            changes.append("exclusion_set" if excluded else "exclusion_cleared")
            summary.newly_excluded += excluded
            summary.cleared_excluded += not excluded
        if review != was_review:
            changes.append("review_set" if review else "review_cleared")
            summary.newly_review += review
            summary.cleared_review += not review
        why = result.reason or "no longer on the LEIE list"
        for action in changes:
            audit.audit(engine, AUDIT_WORKFLOW, AUDIT_ACTOR, action, reason=why,
                       detail={"npi": result.npi, "excluded": excluded, "review": review, "as_of": as_of.isoformat(),
                               "list_entries": len(entries)})
    return summary


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["ScreenSummary", "import_exclusions", "load_exclusions", "exclusion_count", "rescreen",
           "screen_after_roster_import", "file_sha256"]
