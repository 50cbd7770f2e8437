"""``mdco demo`` end to end as a person runs it: three onboardings launched through the answer pages,
and the one link it prints comes out whole on one line and opens (``--keep`` leaves the stack up)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from starter.stack import PROJECT_ROOT, stack_env
from tests.stack_fixtures import stack_settings

pytestmark = pytest.mark.timeout(420)


def _mdco(env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_launches_three_and_prints_one_link_that_opens(tmp_path):
    settings = stack_settings(tmp_path / "var")
    env = {**os.environ, **stack_env(settings)}
    try:
        run = _mdco(env, "demo", "--keep", "--timeout", "240", timeout=380)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        assert "all 3 onboardings launched" in run.stdout
        assert run.stdout.count("protocol packet signed by NPI") == 3
        # the oversight after launch: one chart review submitted on its page, one renewal notice sent
        assert "and submitted it on the page" in run.stdout, run.stdout[-4000:]
        assert re.search(r'"notices": [1-9]', run.stdout), run.stdout[-4000:]
        printed = re.search(r"a chart review waiting for its answer:\n(\S+)\n", run.stdout)
        assert printed and re.fullmatch(r"https?://\S+/a/[A-Za-z0-9_.-]+", printed[1]), run.stdout[-2000:]
        page = httpx.get(printed[1], timeout=30)
        assert page.status_code == 200 and "chart review" in page.text.lower()
        assert page.headers["content-type"].startswith("text/html")
    finally:
        _mdco(env, "down", timeout=120)
