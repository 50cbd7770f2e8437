"""The production description (docker-compose.yml + Dockerfile) stays consistent with the code:
services wired to each other, search attributes registered, the image carrying every package."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from workflows.search_attributes import dev_server_flags

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("worker", "api")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_every_service_has_an_image_or_a_build(services):
    assert {"postgresql", "temporal", "temporal-ui", *APP_SERVICES} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_dependencies_exist_and_wait_for_health(services):
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
    for name in APP_SERVICES:
        assert "healthcheck" in services[name]
        reachable = set(_depends_on(services[name]))
        for dep in list(reachable):
            reachable |= set(_depends_on(services[dep]))
        assert {"postgresql", "temporal"} <= reachable, f"{name} must start after Postgres and Temporal"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_worker_and_api_point_at_compose_services(services, name):
    env = _env(services[name])
    host = env["MDCO_TEMPORAL_ADDRESS"].rsplit(":", 1)[0]
    assert host in services and services[host]["image"].startswith("temporalio/auto-setup")
    db = re.match(r"postgresql(\+psycopg)?://[^@]+@([^:/]+):5432/\w+$", env["MDCO_DATABASE_URL"])
    assert db and db.group(2) in services and services[db.group(2)]["image"].startswith("postgres:")
    assert services[name].get("build") == "." and env["MDCO_DOCUSIGN_HMAC_KEYS"].startswith("${")
    assert "smtp" not in services and env["MDCO_SMTP_HOST"].startswith("${")  # the real relay, no sink


def test_temporal_persists_in_postgres(services):
    env = _env(services["temporal"])
    assert env["DB"].startswith("postgres") and env["POSTGRES_SEEDS"] in services


def test_every_search_attribute_is_registered(services):
    flags = dev_server_flags()
    wanted = [flags[i + 1].split("=") for i in range(0, len(flags), 2)]
    assert len(wanted) == 7
    script = "\n".join(services["temporal-search-attributes"]["command"])
    registered = dict(re.findall(r"^\s*add (\w+) (\w+)\s*$", script, re.M))
    assert registered == dict(wanted)
    assert "search-attribute create" in script


def test_published_ports_do_not_collide(services):
    published = []
    for service in services.values():
        for mapping in service.get("ports", []):
            published.append(int(str(mapping).split(":")[-2]))
    assert published and len(published) == len(set(published))


def test_dockerfile_installs_the_project_with_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.(\s|$)", dockerfile, re.M)
    copied = set()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        copied |= {part.rstrip("/") for part in line.split()[:-1]}
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = {"pyproject.toml", *tool["packages"], *(f"{m}.py" for m in tool["py-modules"])}
    assert needed <= copied, f"Dockerfile does not copy {sorted(needed - copied)}"


@pytest.mark.integration
def test_search_attribute_script_registers_all_and_can_run_again(services, tmp_path):
    """The one-shot service's script, run with sh and the temporal CLI against a real dev server."""
    from starter.binaries import temporal_cli
    from tests.stack_fixtures import free_ports

    service = services["temporal-search-attributes"]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    script = service["command"][0].replace("$$", "$")  # compose's escape for a literal $
    (port,) = free_ports(1)
    cli = temporal_cli()
    server = subprocess.Popen([cli, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
                               "--db-filename", str(tmp_path / "t.db"), "--log-level", "error"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "PATH": f"{Path(cli).parent}{os.pathsep}{os.environ['PATH']}",
           "TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "NAMESPACE": "default"}
    try:
        first = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        again = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and again.stdout.count("already registered") == 7, again.stderr
        listed = subprocess.run([cli, "operator", "search-attribute", "list"], env=env, capture_output=True,
                                text=True, timeout=30, check=True).stdout
        rows = dict(line.split()[:2] for line in listed.splitlines() if len(line.split()) >= 2)
        flags = dev_server_flags()
        assert all(rows.get(name) == kind for name, kind in (f.split("=") for f in flags[1::2]))
    finally:
        server.terminate()
        server.wait(10)


# ---------------------------------------------------------------- access (issue 10)
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]*\}")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_oidc_link_secrets_and_payload_keys_are_required(services, name):
    env = _env(services[name])
    for variable in ("MDCO_AUTH_ISSUER", "MDCO_AUTH_AUDIENCE", "MDCO_AUTH_JWKS_URL", "MDCO_LINK_SECRETS",
                     "MDCO_PAYLOAD_KEYS"):
        found = REQUIRED.match(env.get(variable, ""))
        assert found and found.group(1) == variable, f"{name}: {variable} must be required, not {env.get(variable)!r}"


def test_temporal_grpc_is_never_published(services):
    assert "ports" not in services["temporal"]
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).split(":")[-1] != "7233" and ":7233" not in str(mapping), name


def test_only_authenticated_services_are_published(services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"api", "temporal-ui"}  # the API checks tokens itself; the UI is behind OIDC


def test_the_ui_is_behind_oidc_and_passes_its_token_to_the_codec(services):
    env = _env(services["temporal-ui"])
    assert env["TEMPORAL_AUTH_ENABLED"] == "true" and env["TEMPORAL_AUTH_TYPE"] == "oidc"
    for variable in ("TEMPORAL_AUTH_PROVIDER_URL", "TEMPORAL_AUTH_CLIENT_ID", "TEMPORAL_AUTH_CLIENT_SECRET",
                     "TEMPORAL_AUTH_CALLBACK_URL"):
        assert REQUIRED.match(env[variable]), f"{variable} must be required, not {env[variable]!r}"
    assert env["TEMPORAL_AUTH_PROVIDER_URL"].startswith("${MDCO_AUTH_ISSUER:?")  # the API's provider
    assert "openid" in env["TEMPORAL_AUTH_SCOPES"].split(",")
    assert env["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    assert env["TEMPORAL_CODEC_ENDPOINT"].endswith("}/codec")
    api = _env(services["api"])
    assert api["MDCO_UI_ORIGINS"].startswith("${MDCO_UI_PUBLIC_URL:?")
    assert env["TEMPORAL_CORS_ORIGINS"].startswith("${MDCO_UI_PUBLIC_URL:?")
