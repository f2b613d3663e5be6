"""Every operation of the OpenAPI of a real ``mlfactory serve`` process, fuzzed by schemathesis
with data that fits the schema and data that does not, as an admin and as nobody: no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error

from api_process import ApiProcess, api_process
from mlfactory.accounts import add_user
from mlfactory.settings import Settings
from mlfactory.store import session_factory

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
EXAMPLES = 15
"""Examples per operation and generation mode (valid and invalid data): enough to reach the
statuses an operation has, few enough to stay under a minute."""


@pytest.fixture
def served(
    cli_env: dict[str, str], settings: Settings, tmp_path: Path
) -> Iterator[tuple[ApiProcess, str]]:
    """The server and an admin's bearer token."""
    add_user(session_factory(settings.database_url), "admin", PASSWORD, "admin")
    with api_process(cli_env, tmp_path / "serve.log") as server:
        login = httpx.post(f"{server.url}/token", data={"username": "admin", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield server, login.json()["access_token"]
        assert server.stop() == 0, server.output()


def test_no_operation_answers_with_a_server_error(served: tuple[ApiProcess, str]) -> None:
    server, token = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # No random Authorization headers: each case is sent once with the real token, once without.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3  # /token and /health at least, whatever others are built
    failures = [
        f"{operation.label} ({mode.value} data): {failure}"
        for operation in operations
        for mode in GenerationMode
        if (failure := server_errors(operation, mode, token))
    ]
    assert failures == [], "\n\n".join(failures)


def server_errors(operation: APIOperation, mode: GenerationMode, token: str) -> str | None:
    """What went wrong when ``operation`` met data of ``mode``; None when nothing did."""

    # Deterministic, so CI sees the same cases every run; no shrinking, to bound the time.
    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        for headers in ({"Authorization": f"Bearer {token}"}, {}):
            case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=30)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (no parameters, free text)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # the failures, with a curl to reproduce each
        return str(exc)
    return None
