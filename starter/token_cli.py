"""``mdco token issue``: a bearer token (JWT) from the embedded stack's local issuer.

Mounted in ``starter/cli.py`` with ``app.add_typer(token_app, name="token")``. The key is generated
under ``var/auth/`` (mode 0600) on first use. With an OIDC provider configured (``MDCO_AUTH_JWKS_URL``)
tokens come from the provider and this refuses (exit 2).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from config import get_settings

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for the HTTP API (embedded stack).")
err = Console(stderr=True, emoji=False)


@token_app.callback()
def token_group() -> None:
    """Bearer tokens for the HTTP API (embedded stack)."""


@token_app.command("issue")
def issue(role: str = typer.Option(..., "--role", help="sales | ops | clinic (--subject: the clinic key)"),
          subject: Optional[str] = typer.Option(None, "--subject", help="who (the actor in the audit trail)"),
          ttl: str = typer.Option("8h", "--ttl", help="lifetime: 90s, 30m, 8h, 7d (at most 30d)")) -> None:
    """Print a token signed by the local issuer key (``Authorization: Bearer <token>``)."""
    from api import auth

    try:
        token = auth.issue_token(get_settings(), role, subject or "", auth.parse_duration(ttl))
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)
    sys.stdout.write(token + "\n")
