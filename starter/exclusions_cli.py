"""``mdco exclusions``: load the OIG LEIE list and re-screen the roster (counts only; names are PII).

Mounted in ``starter/cli.py`` with ``app.add_typer(exclusions_app, name="exclusions")``.
Exit codes as for the rest of ``mdco``: 0 done, 1 failed, 2 invalid input (every bad row listed).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from config import get_settings

exclusions_app = typer.Typer(no_args_is_help=True, help="OIG LEIE exclusion list and roster screening.")

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)


@exclusions_app.callback()
def exclusions_group() -> None:
    """OIG LEIE exclusion list and roster screening."""


def _read(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), data
    except UnicodeDecodeError:
        return data.decode("latin-1"), data  # older LEIE downloads are Latin-1


@exclusions_app.command("import")
def import_exclusions(
    file: Path,
    as_of: Optional[str] = typer.Option(None, "--as-of", help="screening date YYYY-MM-DD (default today)"),
) -> None:
    """Replace the stored LEIE list with FILE (all-or-nothing) and re-screen the whole roster."""
    from domain.exclusions import parse_leie
    from store import exclusions
    from store.db import engine_from_settings

    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        err.print(f"[red]error:[/red] --as-of: {as_of!r} is not a date YYYY-MM-DD", highlight=False)
        raise typer.Exit(2)
    try:
        text, raw = _read(file)
    except OSError as exc:
        err.print(f"[red]error:[/red] {file}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(2)
    entries, errors = parse_leie(text)
    if errors:
        err.print(f"[red]{file}: {len(errors)} bad row(s); nothing imported[/red]", highlight=False)
        for e in errors:
            err.print(f"  line {e.line}: {e.reason}", highlight=False)
        raise typer.Exit(2)
    if not entries:
        err.print(f"[red]error:[/red] {file}: no entries; refusing to replace the list with an empty one",
                  highlight=False)
        raise typer.Exit(2)
    engine = engine_from_settings(get_settings())
    count = exclusions.import_exclusions(engine, entries, source_sha256=exclusions.file_sha256(raw))
    s = exclusions.rescreen(engine, day)
    out.print(f"LEIE entries: {count}", highlight=False)
    out.print(f"physicians screened: {s.screened} (as of {day})", highlight=False)
    out.print(f"excluded: {s.excluded} ({s.newly_excluded} new, {s.cleared_excluded} cleared)", highlight=False)
    out.print(f"flagged for review: {s.review} ({s.newly_review} new, {s.cleared_review} cleared)", highlight=False)
