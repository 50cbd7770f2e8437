"""Schemathesis over the API's own OpenAPI document: every phase (examples, coverage, fuzzing, stateful)
and every check, with an ops token, against the ASGI app on a Temporal dev server started for the test (the
real OnboardingWorkflow, fake activities; the time-skipping server has no visibility for ``GET /onboardings``). A bounded number of examples keeps it under a minute. No failure,
no 5xx: the document says what the API does."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from api.auth import auth_headers
from config import Settings
from starter.binaries import temporal_cli
from tests.fake_activities import FakeWorld, sample_intake
from workflows.onboarding import OnboardingWorkflow
from workflows.oversight import OversightWorkflow
from workflows.search_attributes import dev_server_flags

pytestmark = pytest.mark.timeout(120)

MAX_EXAMPLES = 8
PHASES = ("examples", "coverage", "fuzzing", "stateful")


def run_schemathesis(app, headers: dict[str, str]) -> tuple[list[str], int]:
    """Every failure as text, and how many test cases ran."""
    config = SchemathesisConfig.from_dict({
        "headers": headers, "seed": 9457, "max-failures": 200,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "checks": {"enabled": True},
        "phases": {name: {"enabled": True} for name in PHASES},
        # the intake's rules that JSON Schema cannot say (locations and midlevels within the intake's states,
        # product choices for requested services, e-mail domains that cannot receive mail) answer 422 with
        # the field: a schema-valid intake may still be refused, never with anything but a listed problem
        "operations": [{"include-name": "POST /onboardings", "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}}},
                       # a schema-valid period may still start after it ends or end after today: 422 naming it
                       {"include-name": "POST /clinics/{clinic_key}/chart-counts", "checks": {
                           "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "422"]}}}],
    })
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config, headers=headers)
    failures: list[str] = []
    cases = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        answer = event.recorder.interactions.get(case_id)
                        got = f" -> {answer.response.status_code} {answer.response.content[:300]!r}" \
                            if answer is not None and answer.response is not None else ""
                        failures.append(f"{event.recorder.label} [{check.name}] {case.method} {case.formatted_path} "
                                        f"{str(case.body)[:1500]}{got}: {check.failure_info.failure.title} "
                                        f"{str(check.failure_info.failure.message)[:300]}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {getattr(event, 'info', event)}"[:500])
    return failures, cases


@pytest.fixture
async def temporal_with_visibility():
    """A Temporal dev server (the time-skipping server has no visibility, so ``GET /onboardings`` could
    only answer 5xx there) with the search attributes; the same pydantic converter as ``time_env``."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=temporal_cli(), ui=False,
        dev_server_extra_args=dev_server_flags() + ["--log-level", "error"])
    yield env
    await env.shutdown()


async def test_the_api_keeps_every_promise_of_its_openapi_document(temporal_with_visibility, task_queue, tmp_path,
                                                                   unique_key):
    env = temporal_with_visibility
    settings = Settings(task_queue=task_queue, var_dir=tmp_path, docusign_hmac_keys="connect-key",
                        rate_limit_subject="100000/minute")
    app = create_app(client=env.client, settings=settings)
    world = FakeWorld()
    async with Worker(env.client, task_queue=task_queue, workflows=[OnboardingWorkflow, OversightWorkflow],
                      activities=world.activities(), activity_executor=ThreadPoolExecutor(8)):
        from api import service
        from domain.intake import parse_intake

        intake, _ = parse_intake(sample_intake(unique_key))
        await service.start_onboarding(env.client, settings, intake, started_by="sales:schemathesis")
        failures, cases = await asyncio.to_thread(run_schemathesis, app, auth_headers(settings, "ops", "schemathesis"))
    assert cases > 50
    assert not failures, "\n".join(sorted(set(failures)))
