"""Pipelines and runs through the API, on SQLite and PostgreSQL: listing, paging, one run in
detail, starting a run in the background, the monitoring API and the HTML status page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.catalog import Catalog, get_catalog
from mlfactory.api.main import create_app
from mlfactory.orchestration import Context, Pipeline, Serving, Step, run_pipeline
from mlfactory.settings import Settings
from mlfactory.store import PipelineRun

GATE = threading.Event()
"""Holds the ``gated`` pipeline's only step until a test opens it."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(0.5, gt=0, lt=1, description="Any rate.")
    fail: bool = False


def prepare(ctx: Context) -> dict[str, Any]:
    """Count the rows."""
    return {"rows": 3}


def fit(ctx: Context) -> dict[str, Any]:
    assert isinstance(ctx.params, Params)
    if ctx.params.fail:
        raise ValueError("the source has no rows <script>")
    ctx.update_run(metrics={"accuracy": 0.91}, summary={"rows": 3})
    return {"rate": ctx.params.rate}


def wait_for_gate(ctx: Context) -> None:
    if not GATE.wait(timeout=60):
        raise TimeoutError("the gate stayed closed")


demo = Pipeline(
    name="demo",
    description="A demonstration.\n\nWith more to say.",
    schedule="@daily",
    params=Params,
    retries=1,
    steps=(
        Step("prepare", prepare),
        Step("fit", fit, needs=("prepare",)),
        Step("report", prepare, needs=("fit",)),
    ),
)
gated = Pipeline(name="gated", params=Params, steps=(Step("wait", wait_for_gate),))


@dataclass(frozen=True)
class Api:
    client: TestClient
    viewer: dict[str, str]
    admin: dict[str, str]


def make_api(settings: Settings, sessions: sessionmaker[Session], *pipelines: Pipeline) -> Api:
    app = create_app(settings)
    app.dependency_overrides[get_catalog] = lambda: Catalog(pipelines)
    client = TestClient(app)
    headers = {}
    for role in ("viewer", "admin"):
        add_user(sessions, role, f"{role}-password", role)
        token = client.post("/token", data={"username": role, "password": f"{role}-password"})
        headers[role] = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return Api(client, headers["viewer"], headers["admin"])


@pytest.fixture
def api(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Api]:
    GATE.clear()
    yield make_api(settings, sessions, demo, gated)
    GATE.set()  # never leave a run waiting


def run(settings: Settings, **params: Any) -> int:
    return run_pipeline(demo, params, settings=settings).run_id


def get(api: Api, path: str, **params: Any) -> Any:
    response = api.client.get(path, params=params, headers=api.viewer)
    assert response.status_code == 200, response.text
    return response.json()


def test_pipelines_show_schedule_steps_parameters_and_last_run(
    api: Api, settings: Settings
) -> None:
    listed = {p["name"]: p for p in get(api, "/v1/pipelines")}
    assert sorted(listed) == ["demo", "gated"]
    assert listed["demo"]["last_run"] is None
    run_id = run(settings)
    info = {p["name"]: p for p in get(api, "/v1/pipelines")}["demo"]
    assert (info["schedule"], info["description"]) == ("@daily", "A demonstration.")
    assert [(s["name"], s["needs"]) for s in info["steps"]] == [
        ("prepare", []),
        ("fit", ["prepare"]),
        ("report", ["fit"]),
    ]
    assert info["steps"][0]["description"] == "Count the rows."
    assert info["steps"][0]["retries"] == 1
    rate = info["params_schema"]["properties"]["rate"]
    assert (rate["exclusiveMinimum"], rate["exclusiveMaximum"], rate["default"]) == (0, 1, 0.5)
    assert info["last_run"]["id"] == run_id
    assert info["last_run"]["status"] == "success"


def test_runs_come_newest_first_in_pages_with_totals(api: Api, settings: Settings) -> None:
    ids = [run(settings, rate=rate) for rate in (0.1, 0.2, 0.3)]
    failed = run(settings, fail=True)
    first = get(api, "/v1/pipelines/demo/runs", limit=2)
    assert first["total"] == 4
    assert [r["id"] for r in first["runs"]] == [failed, ids[2]]
    rest = get(api, "/v1/pipelines/demo/runs", limit=2, offset=2)
    assert [r["id"] for r in rest["runs"]] == [ids[1], ids[0]]
    assert rest["runs"][0]["params"]["rate"] == 0.2
    successes = get(api, "/v1/pipelines/demo/runs", status="success")
    assert (successes["total"], [r["id"] for r in successes["runs"]]) == (3, ids[::-1])
    assert get(api, "/v1/pipelines/gated/runs") == {
        "total": 0,
        "limit": 20,
        "offset": 0,
        "runs": [],
    }
    summary = first["runs"][1]
    assert summary["step_states"] == {"success": 3}
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [
        ("prepare", "success"),
        ("fit", "success"),
        ("report", "success"),
    ]


def test_a_run_shows_every_attempt_with_durations_errors_and_metrics(
    api: Api, settings: Settings
) -> None:
    good = get(api, f"/v1/runs/{run(settings)}")
    assert (good["status"], good["failed_step"], good["metrics"]) == (
        "success",
        None,
        {"accuracy": 0.91},
    )
    assert good["duration_s"] > 0
    assert good["attempts"][1]["output"] == {"rate": 0.5}

    bad = get(api, f"/v1/runs/{run(settings, fail=True)}")
    assert (bad["status"], bad["failed_step"]) == ("failed", "fit")
    assert "ValueError: the source has no rows" in bad["error"]
    assert [(a["step"], a["attempt"], a["status"]) for a in bad["attempts"]] == [
        ("prepare", 1, "success"),
        ("fit", 1, "failed"),
        ("fit", 2, "failed"),
        ("report", 0, "upstream_failed"),
    ]
    assert all(a["duration_s"] is not None for a in bad["attempts"])
    assert bad["attempts"][2]["traceback"] is None  # server paths and code: admins only
    as_admin = api.client.get(f"/v1/runs/{bad['id']}", headers=api.admin).json()
    assert "raise ValueError" in as_admin["attempts"][2]["traceback"]
    fit_state = next(s for s in bad["steps"] if s["step"] == "fit")
    assert (fit_state["attempts"], fit_state["status"]) == (2, "failed")
    assert fit_state["error"] == "ValueError: the source has no rows <script>"
    assert fit_state["duration_s"] == pytest.approx(
        sum(a["duration_s"] for a in bad["attempts"] if a["step"] == "fit")
    )


def test_unknown_runs_and_pipelines_are_404(api: Api) -> None:
    for path in ("/v1/runs/424242", "/v1/pipelines/nope/runs", "/status/nope"):
        assert api.client.get(path, headers=api.viewer).status_code == 404, path
    for path in ("/api/status", "/api/metrics"):
        response = api.client.get(path, params={"pipeline": "nope"}, headers=api.viewer)
        assert response.status_code == 404
    assert api.client.get("/v1/runs/0", headers=api.viewer).status_code == 422
    assert api.client.get("/api/status", headers=api.viewer).status_code == 422  # no pipeline


def test_an_admin_starts_a_run_that_is_recorded_at_once_and_finishes(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    began = time.perf_counter()
    response = api.client.post(
        "/v1/pipelines/gated/runs", json={"params": {"rate": 0.25}}, headers=api.admin
    )
    assert response.status_code == 202, response.text
    assert time.perf_counter() - began < 10  # did not wait for the run
    started = response.json()
    run_id = started["run_id"]
    assert started == {"run_id": run_id, "pipeline": "gated", "url": f"/v1/runs/{run_id}"}
    assert response.headers["location"] == f"/v1/runs/{run_id}"

    running = get(api, f"/v1/runs/{run_id}")
    assert (running["status"], running["params"]) == ("running", {"rate": 0.25, "fail": False})
    assert [(a["step"], a["status"]) for a in running["attempts"]] == [("wait", "running")]

    GATE.set()
    deadline = time.monotonic() + 30
    while get(api, f"/v1/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.05)
    assert get(api, f"/v1/runs/{run_id}")["status"] == "success"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PipelineRun)) == 1


def test_starting_a_run_needs_an_admin_and_valid_parameters(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    path = "/v1/pipelines/demo/runs"
    assert api.client.post(path, json={}).status_code == 401
    assert api.client.post(path, json={}, headers=api.viewer).status_code == 403
    assert api.client.post("/v1/pipelines/nope/runs", json={}, headers=api.admin).status_code == 404

    def errors(body: Any) -> list[tuple[list[Any], str]]:
        response = api.client.post(path, json=body, headers=api.admin)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        return [(e["loc"], e["type"]) for e in response.json()["errors"]]

    assert errors({"params": {"rate": 2}}) == [(["body", "params", "rate"], "less_than")]
    assert errors({"params": {"rate": "fast", "colour": "red"}}) == [
        (["body", "params", "rate"], "float_parsing"),
        (["body", "params", "colour"], "extra_forbidden"),
    ]
    assert errors({"parameters": {}}) == [(["body", "parameters"], "extra_forbidden")]
    assert errors({"params": []})[0][0] == ["body", "params"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PipelineRun)) == 0


def test_status_reports_never_run_success_then_failure(api: Api, settings: Settings) -> None:
    assert get(api, "/api/status", pipeline="demo") == {
        "pipeline": "demo",
        "state": "never_run",
        "run": None,
        "last_success": None,
    }
    good = run(settings)
    status = get(api, "/api/status", pipeline="demo")
    assert (status["state"], status["run"]["id"], status["last_success"]["id"]) == (
        "success",
        good,
        good,
    )
    bad = run(settings, fail=True)
    status = get(api, "/api/status", pipeline="demo")
    assert (status["state"], status["run"]["id"], status["last_success"]["id"]) == (
        "failed",
        bad,
        good,
    )
    assert status["run"]["failed_step"] == "fit"
    assert status["run"]["error"].startswith("step 'fit' failed: ValueError")


def test_the_status_page_shows_a_failure_with_its_step_error_and_what_to_check(
    api: Api, settings: Settings
) -> None:
    never = api.client.get("/status/demo", headers=api.viewer)
    assert never.status_code == 200 and "No run yet" in never.text
    run(settings)
    success = api.client.get("/status/demo", headers=api.viewer)
    assert success.headers["content-type"].startswith("text/html")
    assert "SUCCESS" in success.text and "accuracy" in success.text
    assert "What to check" not in success.text

    bad = run(settings, fail=True, rate=0.3)
    page = api.client.get("/status/demo", headers=api.viewer).text
    assert "FAILED" in page
    assert "Step <code>fit</code> failed" in page
    assert "ValueError: the source has no rows &lt;script&gt;" in page  # escaped
    assert "<script>" not in page
    assert "Traceback" not in page and "raise ValueError" not in page  # admins only
    admin_page = api.client.get("/status/demo", headers=api.admin).text
    assert "Traceback" in admin_page and "raise ValueError" in admin_page
    assert "What to check" in page
    assert "each of its 2 attempts" in page
    assert "Not run because a step they need failed: <code>report</code>" in page
    assert "parameters that differ since: <code>fail</code>, <code>rate</code>" in page
    assert f"mlfactory runs --id {bad}" in page


def test_status_routes_need_a_token(api: Api) -> None:
    for path in ("/api/status?pipeline=demo", "/api/metrics?pipeline=demo", "/status/demo"):
        assert api.client.get(path).status_code == 401


@pytest.mark.slow
def test_api_metrics_shows_the_champion_s_metrics_and_the_latest_run(
    settings: Settings, sessions: sessionmaker[Session], model_name: str
) -> None:
    import mlflow

    from mlfactory.training.tracking import experiment_id, use_tracking

    client = use_tracking(settings)
    client.create_registered_model(model_name)
    versions = []
    for accuracy in (0.8, 0.7):
        with mlflow.start_run(experiment_id=experiment_id(model_name, settings)) as mlflow_run:
            mlflow.log_metric("test_accuracy", accuracy)
        versions.append(
            client.create_model_version(
                model_name, f"runs:/{mlflow_run.info.run_id}/model", mlflow_run.info.run_id
            )
        )

    def register(ctx: Context) -> None:  # the run that made version 1
        ctx.update_run(
            model_name=model_name,
            model_version=str(versions[0].version),
            mlflow_run_id=versions[0].run_id,
            metrics={"accuracy": 0.8},
        )

    trains = Pipeline("trains", serving=Serving(model_name), steps=(Step("register", register),))
    api = make_api(settings, sessions, trains)
    nothing = get(api, "/api/metrics", pipeline="trains")
    assert (nothing["champion"], nothing["latest_run"]) == (None, None)

    run_id = run_pipeline(trains, settings=settings).run_id
    client.set_registered_model_alias(model_name, "champion", versions[0].version)
    report = get(api, "/api/metrics", pipeline="trains")
    assert report["model_name"] == model_name
    assert report["champion"] == {
        "model_name": model_name,
        "version": str(versions[0].version),
        "mlflow_run_id": versions[0].run_id,
        "pipeline_run_id": run_id,
        "metrics": {"accuracy": 0.8},
    }
    assert (report["latest_run"]["id"], report["latest_run"]["status"]) == (run_id, "success")

    # A champion no run of the store recorded: its metrics come from its MLflow run.
    client.set_registered_model_alias(model_name, "champion", versions[1].version)
    champion = get(api, "/api/metrics", pipeline="trains")["champion"]
    assert (champion["version"], champion["pipeline_run_id"]) == (str(versions[1].version), None)
    assert champion["metrics"] == {"test_accuracy": 0.7}


@pytest.mark.slow
def test_api_metrics_is_503_when_the_registry_does_not_answer(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    served = Pipeline("served", serving=Serving("some-model"), steps=(Step("prepare", prepare),))
    api = make_api(unreachable, sessions, served)
    response = api.client.get("/api/metrics", params={"pipeline": "served"}, headers=api.viewer)
    assert response.status_code == 503, response.text
    assert "registry does not answer" in response.json()["detail"]
