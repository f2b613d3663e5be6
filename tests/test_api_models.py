"""The model registry through the API, on SQLite and PostgreSQL stores: models with their
champion, one model's versions with metrics, aliases and promotion history, the input schema a
prediction form is built from, and the errors of each.

The versions are real: scikit-learn models fitted on the advertising rows, logged and registered
in MLflow and judged by the champion rule (``training/promote.py``) in pipeline runs, as the
pipelines do it; one more version is registered by hand, outside any run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.api.model_catalog import mlflow_ui, model_link
from mlfactory.api.registry import PIPELINE_RUN_TAG
from mlfactory.orchestration import Context, Pipeline, Step, run_pipeline
from mlfactory.pipelines.common import registered_output, training_run
from mlfactory.settings import Settings
from mlfactory.training.promote import promote as champion_rule
from mlfactory.training.registry import load_model, log_and_register, model_requirements
from mlfactory.training.tracking import experiment_id, log_to_run, use_tracking

pytestmark = pytest.mark.slow

sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
"""For what the registry answers alone: the store's part runs on both in the history test."""
FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
TARGET = "Clicked on Ad"


class FitParams(BaseModel):
    c: float = 1.0


def trainer(model_name: str, frame: pd.DataFrame) -> Pipeline:
    """train -> evaluate -> promote on a fixed split, as the advertising pipeline does."""
    train_rows, test_rows = frame.iloc[:700], frame.iloc[700:]

    def roc_auc(model: Any) -> float:
        scores = model.predict_proba(test_rows[FEATURES])[:, 1]
        return float(roc_auc_score(test_rows[TARGET], scores))

    def train(ctx: Context) -> dict[str, Any]:
        assert isinstance(ctx.params, FitParams)
        features = train_rows[FEATURES]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=ctx.params.c))
        model.fit(features, train_rows[TARGET])
        with training_run(ctx):
            mlflow.log_metric("train_accuracy", model.score(features, train_rows[TARGET]))
            registered = log_and_register(model, features, model_name)
        return registered_output(ctx, registered)

    def evaluate(ctx: Context) -> dict[str, Any]:
        trained = ctx.output_of("train")
        score = roc_auc(load_model(trained["model_uri"]))
        log_to_run(ctx.settings, trained["mlflow_run_id"], metrics={"test_roc_auc": score})
        ctx.update_run(metrics={"roc_auc": score})
        return {"roc_auc": score}

    def promote(ctx: Context) -> dict[str, Any]:
        """The champion rule, and its decision on the run record (``summary.promotion``)."""
        decision = champion_rule(
            use_tracking(ctx.settings),
            model_name,
            ctx.output_of("train")["model_version"],
            metric="roc_auc",
            score=ctx.output_of("evaluate")["roc_auc"],
            score_model=roc_auc,
        ).as_dict()
        ctx.update_run(summary={"promotion": decision})
        return decision

    return Pipeline(
        f"trains-{model_name}",
        params=FitParams,
        steps=(
            Step("train", train),
            Step("evaluate", evaluate, needs=("train",)),
            Step("promote", promote, needs=("train", "evaluate")),
        ),
    )


@dataclass(frozen=True)
class Registry:
    client: TestClient
    viewer: dict[str, str]
    mlflow: MlflowClient
    model_name: str
    pipeline: str
    run_ids: list[int]  # the pipeline runs that made versions 1 and 2
    first_row: dict[str, float]

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.viewer)
        assert response.status_code == 200, response.text
        return response.json()


def api_client(settings: Settings, sessions: sessionmaker[Session]) -> tuple[TestClient, dict]:
    client = TestClient(create_app(settings))
    add_user(sessions, "viewer", "viewer-password", "viewer")
    login = client.post("/token", data={"username": "viewer", "password": "viewer-password"})
    return client, {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture
def registry(
    settings: Settings, sessions: sessionmaker[Session], model_name: str, advertising_csv: Path
) -> Registry:
    frame = pd.read_csv(advertising_csv)
    frame[FEATURES] = frame[FEATURES].astype("float64")
    pipeline = trainer(model_name, frame)
    run_ids = []
    for c in (1.0, 0.001):
        outcome = run_pipeline(pipeline, {"c": c}, settings=settings)
        assert outcome.status == "success", outcome.error
        run_ids.append(outcome.run_id)
    client = use_tracking(settings)
    # Version 3, registered by hand: no pipeline run knows it, only its verdict tag.
    with mlflow.start_run(experiment_id=experiment_id(model_name, settings)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
        log_and_register(model.fit(frame[FEATURES], frame[TARGET]), frame[FEATURES], model_name)
    client.set_model_version_tag(model_name, "3", "promotion", "kept aside by hand")
    api, viewer = api_client(settings, sessions)
    first = frame[FEATURES].iloc[0].to_dict()
    return Registry(api, viewer, client, model_name, pipeline.name, run_ids, first)


@sqlite_only
def test_a_model_lists_its_versions_newest_first_with_their_metrics(registry: Registry) -> None:
    model = registry.get(f"/v1/models/{registry.model_name}")
    aliases = registry.mlflow.get_registered_model(registry.model_name).aliases
    assert model["aliases"] == {alias: str(version) for alias, version in aliases.items()}
    assert model["champion_version"] == str(aliases["champion"])
    assert model["latest_version"] == "3"
    assert model["pipelines"] == [registry.pipeline]
    assert [v["version"] for v in model["versions"]] == ["3", "2", "1"]
    for version in model["versions"]:
        made = registry.mlflow.get_model_version(registry.model_name, version["version"])
        run = registry.mlflow.get_run(made.run_id)
        assert version["mlflow_run_id"] == made.run_id
        assert version["metrics"] == pytest.approx(run.data.metrics)
        assert version["champion"] == (version["version"] == model["champion_version"])
        assert version["aliases"] == sorted(made.aliases)
        assert version["promotion"] == made.tags["promotion"]
        assert version["status"] == "READY"
        assert version["mlflow_url"] is None  # tracking is a local SQLite store
    trained = [v for v in model["versions"] if v["version"] in ("1", "2")]
    assert {v["pipeline_run_id"] for v in trained} == set(registry.run_ids)
    assert {"train_accuracy", "test_roc_auc"} <= set(trained[0]["metrics"])
    assert model["champion_metrics"] == pytest.approx(
        next(v["metrics"] for v in model["versions"] if v["champion"])
    )

    newest = registry.get(f"/v1/models/{registry.model_name}", limit=2)
    assert [v["version"] for v in newest["versions"]] == ["3", "2"]

    listed = {entry["name"]: entry for entry in registry.get("/v1/models")}
    for field in ("champion_version", "champion_metrics", "aliases", "latest_version"):
        assert listed[registry.model_name][field] == model[field], field
    assert listed[registry.model_name]["pipelines"] == [registry.pipeline]


def test_the_promotion_history_has_each_decision_in_order(registry: Registry) -> None:
    model = registry.get(f"/v1/models/{registry.model_name}")
    first, second, by_hand = model["promotions"]
    assert (first["version"], first["alias"], first["reason"]) == (
        "1",
        "champion",
        "no champion yet",
    )
    assert first["previous_champion"] is None
    assert first["pipeline_run_id"] == registry.run_ids[0]

    assert (second["version"], second["pipeline_run_id"]) == ("2", registry.run_ids[1])
    assert second["previous_champion"] == "1"
    assert second["metric"] == "roc_auc"
    won = second["score"] > second["previous_score"]
    assert second["alias"] == ("champion" if won else "challenger")
    assert model["champion_version"] == ("2" if won else "1")
    version_two = registry.mlflow.get_model_version(registry.model_name, "2")
    assert second["reason"] == version_two.tags["promotion"]
    assert first["decided_at"] <= second["decided_at"] <= by_hand["decided_at"]

    assert by_hand == {
        "version": "3",
        "decided_at": by_hand["decided_at"],
        "alias": None,
        "metric": None,
        "score": None,
        "previous_champion": None,
        "previous_score": None,
        "reason": "kept aside by hand",
        "pipeline_run_id": None,
    }


@sqlite_only
def test_the_inputs_of_the_champion_and_of_a_version(registry: Registry) -> None:
    champion = registry.get(f"/v1/models/{registry.model_name}")["champion_version"]
    inputs = registry.get(f"/v1/models/{registry.model_name}/inputs")
    assert (inputs["model_name"], inputs["version"]) == (registry.model_name, champion)
    assert inputs["columns"] == [
        {"name": name, "type": "double", "required": True} for name in FEATURES
    ]
    # The logged example is the head of the training rows.
    assert inputs["example"] == pytest.approx(registry.first_row)
    third = registry.get(f"/v1/models/{registry.model_name}/inputs", version="3")
    assert third["version"] == "3"
    assert [c["name"] for c in third["columns"]] == FEATURES


@sqlite_only
def test_unknown_models_versions_and_champions_are_404(
    settings: Settings, sessions: sessionmaker[Session], model_name: str
) -> None:
    client, viewer = api_client(settings, sessions)

    def detail(path: str, **params: Any) -> str:
        response = client.get(path, params=params, headers=viewer)
        assert response.status_code == 404, response.text
        return response.json()["detail"]

    assert detail("/v1/models/no-such-model") == "no registered model 'no-such-model'"
    use_tracking(settings).create_registered_model(model_name)
    assert detail(f"/v1/models/{model_name}/inputs") == (
        f"model {model_name!r} has no 'champion' version in the registry"
    )
    assert "has no version 9" in detail(f"/v1/models/{model_name}/inputs", version="9")


@sqlite_only
def test_a_model_without_a_signature_cannot_describe_its_inputs(
    settings: Settings, sessions: sessionmaker[Session], model_name: str, advertising_csv: Path
) -> None:
    frame = pd.read_csv(advertising_csv)
    with mlflow.start_run(experiment_id=experiment_id(model_name, settings)):
        mlflow.sklearn.log_model(
            make_pipeline(StandardScaler(), LogisticRegression()).fit(
                frame[FEATURES], frame[TARGET]
            ),
            name="model",
            registered_model_name=model_name,
            pip_requirements=model_requirements(),
        )
    client, viewer = api_client(settings, sessions)
    response = client.get(f"/v1/models/{model_name}/inputs?version=1", headers=viewer)
    assert response.status_code == 503
    assert "no input signature" in response.json()["detail"]


class CallCount:
    """Counts the calls to the registry methods of every MlflowClient (the API's own included),
    each still answered by the real method."""

    METHODS = (
        "search_registered_models",
        "get_registered_model",
        "search_model_versions",
        "get_model_version",
        "search_experiments",
        "search_runs",
        "get_run",
    )

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        for name in self.METHODS:
            monkeypatch.setattr(
                MlflowClient, name, self._counted(name, getattr(MlflowClient, name))
            )

    def _counted(self, name: str, method: Any) -> Any:
        def counted(client: MlflowClient, *args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(client, *args, **kwargs)

        return counted

    def of(self, request: Any) -> tuple[Any, dict[str, int]]:
        """What ``request()`` answers, and the calls it made."""
        self.calls.clear()
        answer = request()
        return answer, {name: count for name, count in self.calls.items() if count}


@sqlite_only
def test_the_models_routes_make_as_many_registry_calls_for_many_versions_as_for_few(
    settings: Settings,
    sessions: sessionmaker[Session],
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runs behind the versions shown come in one search (never one get_run per version)
    and the champion's version from those at hand, so 12 versions cost the calls 4 do; each
    version still shows its own run's metrics and pipeline run."""
    mlflow_client = use_tracking(settings)
    # Runs in two experiments, as when a version is registered by hand beside the pipeline's.
    experiments = [experiment_id(name, settings) for name in (model_name, f"{model_name}-hand")]
    mlflow_client.create_registered_model(model_name)
    logged: dict[str, tuple[dict[str, float], int]] = {}  # version -> metrics, pipeline run

    def register(run: bool = True) -> str:
        if not run:
            return str(mlflow_client.create_model_version(model_name, "/nowhere/model").version)
        number = len(logged) + 1
        run_id = mlflow_client.create_run(experiments[number % 2]).info.run_id
        metrics = {"roc_auc": 0.5 + number / 100, "train_accuracy": 0.9 - number / 100}
        for key, value in metrics.items():
            mlflow_client.log_metric(run_id, key, value)
        mlflow_client.set_tag(run_id, PIPELINE_RUN_TAG, str(1000 + number))
        version = mlflow_client.create_model_version(
            model_name, f"runs:/{run_id}/model", run_id=run_id
        ).version
        logged[str(version)] = metrics, 1000 + number
        return str(version)

    champion = register()
    mlflow_client.set_registered_model_alias(model_name, "champion", champion)
    deleted = register()
    mlflow_client.delete_run(mlflow_client.get_model_version(model_name, deleted).run_id)
    no_such_run = "0123456789abcdef" * 2
    gone = mlflow_client.create_model_version(
        model_name, f"runs:/{no_such_run}/model", run_id=no_such_run
    ).version
    runless = register(run=False)
    api, viewer = api_client(settings, sessions)
    count = CallCount(monkeypatch)

    def get(path: str, **params: Any) -> Any:
        response = api.get(path, params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return response.json()

    def calls() -> dict[str, dict[str, int]]:
        every, every_calls = count.of(lambda: get(f"/v1/models/{model_name}"))
        newest, newest_calls = count.of(lambda: get(f"/v1/models/{model_name}", limit=2))
        listed, list_calls = count.of(lambda: get("/v1/models"))
        (summary,) = [model for model in listed if model["name"] == model_name]
        assert len(every["versions"]) == len(logged) + 2
        assert [v["version"] for v in newest["versions"]] == [
            v["version"] for v in every["versions"][:2]
        ]
        champion_metrics = pytest.approx(logged[champion][0])
        for version in every["versions"]:
            metrics, pipeline_run = logged.get(version["version"], ({}, None))
            assert version["metrics"] == pytest.approx(metrics), version
            assert version["pipeline_run_id"] == pipeline_run, version
        shown = {version["version"]: version for version in every["versions"]}
        assert shown[deleted]["metrics"]  # a deleted run keeps its metrics, as get_run gives
        assert (shown[str(gone)]["mlflow_run_id"], shown[str(gone)]["metrics"]) == (no_such_run, {})
        assert (shown[runless]["mlflow_run_id"], shown[runless]["metrics"]) == (None, {})
        for model in (every, newest, summary):
            assert model["champion_version"] == champion
            assert model["champion_metrics"] == champion_metrics
        return {"detail": every_calls, "newest two": newest_calls, "list": list_calls}

    few = calls()
    for _ in range(8):
        register()
    many = calls()

    assert many == few
    for made in many.values():
        assert "get_run" not in made
        assert made["search_runs"] == 1
        assert made["search_experiments"] == 1
    # The champion (version 1) is among all the versions listed; outside the newest two and
    # not the latest, it is read on its own there (and in the list, beside the champions of
    # the other models in the session's registry that are not their model's latest either).
    assert "get_model_version" not in many["detail"]
    assert many["newest two"]["get_model_version"] == 1
    assert many["list"]["get_model_version"] >= 1


@sqlite_only
def test_the_models_routes_are_503_when_the_registry_does_not_answer(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    client, viewer = api_client(unreachable, sessions)
    for path in ("/v1/models", "/v1/models/anything", "/v1/models/anything/inputs"):
        response = client.get(path, headers=viewer)
        assert response.status_code == 503, (path, response.text)
        assert "registry does not answer" in response.json()["detail"]


def test_links_to_the_mlflow_ui_only_for_an_http_tracking_server() -> None:
    ui = mlflow_ui("https://ci:s3cret@mlflow.example.org:5443/tracking/")
    assert ui == "https://mlflow.example.org:5443/tracking"
    assert model_link(ui, "ads/clicks", "4") == (
        "https://mlflow.example.org:5443/tracking/#/models/ads%2Fclicks/versions/4"
    )
    assert model_link(ui, "clicks") == "https://mlflow.example.org:5443/tracking/#/models/clicks"
    for local in ("sqlite:///home/x/mlflow.db", "postgresql://u@db/mlflow", "/tmp/mlruns"):
        assert mlflow_ui(local) is None
        assert model_link(mlflow_ui(local), "clicks") is None
