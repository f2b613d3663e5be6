"""Predictions through the API with real models on the real advertising and Rakuten rows: answers,
stored rows, field-level validation, limits, roles, reloads, request batching, and a champion
swap under concurrent load on a real uvicorn server that fails no request.

The models live in a registry of this module (not the session's shared one): version 1 of
"advertising" is the champion, version 2 is there to swap to, and "products" is a small text
model. Each test works on its own copy of that registry, so moving an alias stays in the test.
"""

from __future__ import annotations

import asyncio
import csv
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.api.routes import predict as predict_routes
from mlfactory.api.routes.predict import PredictResponse
from mlfactory.inference.champion import champion_version, registry_client
from mlfactory.inference.model_cache import ModelCache, load_version
from mlfactory.inference.serving import (
    InvalidRecords,
    ModelRefused,
    PredictionService,
    predict_records,
)
from mlfactory.orchestration import Pipeline, Step, get_pipeline
from mlfactory.settings import Settings
from mlfactory.store import Prediction, session_factory
from mlfactory.training.registry import CLOUDPICKLE, log_and_register
from mlfactory.training.text import text_classifier
from mlfactory.training.tracking import experiment_id

# The array fast path (see inference/model_cache.py) silences this warning in the server; pytest
# resets warning filters for each test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]

FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
NUMBERS = {*FEATURES, "Clicked on Ad"}
PASSWORD = "predict-password"
PREDICT = "/v1/pipelines/advertising/predict"
TEXT_COLUMNS = ["designation", "description"]
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, datasets_dir: Path) -> Path:
    """The module's MLflow store: advertising v1 (champion) and v2, products v1 (champion)."""
    home = tmp_path_factory.mktemp("predict-registry")
    settings = Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    frame = pd.read_csv(datasets_dir / "advertising" / "advertising.csv")
    features, target = frame[FEATURES].astype("float64"), frame["Clicked on Ad"]
    for c in (1.0, 0.01):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        with mlflow.start_run(experiment_id=experiment_id("advertising", settings)):
            log_and_register(model.fit(features, target), features, "advertising")
    products = product_rows(datasets_dir)
    labels = [row.pop("prdtypecode") for row in products]
    text = text_classifier(TEXT_COLUMNS, c=10.0).fit(product_features(products), labels)
    with mlflow.start_run(experiment_id=experiment_id("products", settings)):
        log_and_register(
            text, product_features(products), "products", serialization_format=CLOUDPICKLE
        )
    client = registry_client(settings)
    client.set_registered_model_alias("advertising", "champion", "1")
    client.set_registered_model_alias("products", "champion", "1")
    return home / "mlflow.db"


def product_features(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The products model's input: as the pipeline makes it (its serving's features)."""
    serving = get_pipeline("products").serving
    assert serving is not None and serving.to_features is not None
    return serving.to_features(records, TEXT_COLUMNS)


def product_rows(datasets_dir: Path) -> list[dict[str, Any]]:
    folder = datasets_dir / "rakuten"
    texts = pd.read_csv(folder / "X_train_update_sample499.csv", index_col=0)
    labels = pd.read_csv(folder / "Y_train_CVw08PX_sample499.csv", index_col=0)
    frame = texts.join(labels).fillna({"description": ""})
    frame["prdtypecode"] = frame["prdtypecode"].astype(str)
    return frame.to_dict(orient="records")


@pytest.fixture
def mlflow_uri_copy(registry: Path, tmp_path: Path) -> str:
    """This test's copy of the module's registry (the artefacts are shared, read-only)."""
    target = tmp_path / "mlflow.db"
    with sqlite3.connect(registry) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


@pytest.fixture
def api_settings(
    store_url: str, tmp_path: Path, datasets_dir: Path, mlflow_uri_copy: str
) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=store_url,
        mlflow_tracking_uri=mlflow_uri_copy,
        datasets_dir=datasets_dir,
    )


def make_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    for name, role in (("vera", "viewer"), ("alice", "user"), ("adam", "admin")):
        add_user(app.state.sessions, name, PASSWORD, role)
    with TestClient(app) as client:  # with: the lifespan runs (warm-up, shutdown)
        yield client


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    yield from make_client(api_settings)


def auth(client: TestClient | httpx.Client, username: str) -> dict[str, str]:
    response = client.post("/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def advertising_records(datasets_dir: Path, count: int, start: int = 0) -> list[dict[str, Any]]:
    """Source rows as a client sends them: every column, numbers as JSON numbers."""
    with (datasets_dir / "advertising" / "advertising.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))[start : start + count]
    return [
        {key: (float(value) if key in NUMBERS else value) for key, value in row.items()}
        for row in rows
    ]


def move_champion(settings: Settings, version: str) -> None:
    registry_client(settings).set_registered_model_alias("advertising", "champion", version)


def registry_model(settings: Settings, name: str, version: str) -> Any:
    registry_client(settings)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def stored(settings: Settings) -> list[Prediction]:
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Prediction).order_by(Prediction.id)))


def test_predicts_labels_and_probabilities_and_stores_them(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    records = advertising_records(datasets_dir, 5, start=100)
    response = client.post(PREDICT, json={"records": records}, headers=auth(client, "alice"))
    assert response.status_code == 200, response.text
    body = PredictResponse.model_validate(response.json())
    assert (body.pipeline, body.model_name, body.model_version) == (
        "advertising",
        "advertising",
        "1",
    )

    model = registry_model(api_settings, "advertising", "1")
    frame = pd.DataFrame(records)[FEATURES]
    expected_labels = model.predict(frame).tolist()
    expected = model.predict_proba(frame)
    assert [p.label for p in body.predictions] == expected_labels  # integers, as declared
    for prediction, row in zip(body.predictions, expected, strict=True):
        assert prediction.probabilities == pytest.approx({"0": row[0], "1": row[1]}, abs=1e-12)
        assert (prediction.model_name, prediction.model_version) == ("advertising", "1")

    rows = stored(api_settings)
    assert [row.id for row in rows] == [p.id for p in body.predictions]
    for row, prediction in zip(rows, body.predictions, strict=True):
        assert row.item_id is None and row.run_id is None
        assert (row.dataset, row.model_name, row.model_version) == (
            "advertising",
            "advertising",
            "1",
        )
        assert row.label == str(prediction.label)  # stored as text
        assert row.scores == pytest.approx(prediction.probabilities, abs=1e-12)


def test_ids_follow_the_records_across_requests(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    headers = auth(client, "alice")
    ids = []
    for start in (0, 300, 600):
        records = advertising_records(datasets_dir, 50, start=start)
        response = client.post(PREDICT, json={"records": records}, headers=headers)
        ids += [p["id"] for p in response.json()["predictions"]]
        labels = [str(p["label"]) for p in response.json()["predictions"]]
        by_id = {row.id: row.label for row in stored(api_settings)}
        assert [by_id[i] for i in ids[-50:]] == labels
    assert len(set(ids)) == 150


@sqlite_only
def test_predictions_and_model_loads_are_counted(client: TestClient, datasets_dir: Path) -> None:
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    labels = {"pipeline": "advertising", "model": "advertising", "version": "1"}
    before = {label: count("mlfactory_predictions_total", **labels, label=label) for label in "01"}
    records = advertising_records(datasets_dir, 20)
    answer = client.post(PREDICT, json={"records": records}, headers=auth(client, "alice")).json()
    for label in "01":
        given = sum(str(p["label"]) == label for p in answer["predictions"])
        after = count("mlfactory_predictions_total", **labels, label=label)
        assert after - before[label] == given
    loads = count("mlfactory_model_load_seconds_count", pipeline="advertising", model="advertising")
    assert loads >= 1


@sqlite_only
def test_declared_fields_the_model_does_not_use_are_checked_and_ignored(
    client: TestClient, datasets_dir: Path
) -> None:
    record = advertising_records(datasets_dir, 1)[0]
    bare = {name: record[name] for name in reversed(FEATURES)}
    headers = auth(client, "alice")
    answers = [
        client.post(PREDICT, json={"records": [r]}, headers=headers).json()["predictions"][0]
        for r in (record, bare)
    ]
    assert answers[0]["probabilities"] == answers[1]["probabilities"]
    assert answers[0]["label"] in (0, 1)  # the label keeps its declared type: an integer


@sqlite_only
def test_invalid_records_get_field_level_errors_and_nothing_is_stored(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    good, wrong_type, missing, flag, text_number, old, unknown, unused = advertising_records(
        datasets_dir, 8
    )
    wrong_type["Age"] = "thirty-five"
    del missing["Daily Internet Usage"]
    flag["Male"] = True
    text_number["Area Income"] = "61833.9"
    old["Age"] = 200
    unknown["Clicks"] = 3
    unused["Timestamp"] = "yesterday"  # a declared column the model does not use is checked
    response = client.post(
        PREDICT,
        json={"records": [good, wrong_type, missing, flag, text_number, old, unknown, unused]},
        headers=auth(client, "alice"),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    found = [(e["record"], e["field"], e["type"], e["msg"]) for e in problem["errors"]]
    assert found == [
        (1, "Age", "value_error", "'thirty-five' is not an integer"),
        (2, "Daily Internet Usage", "missing", "field required"),
        (3, "Male", "value_error", "True is not an integer"),
        (4, "Area Income", "value_error", "'61833.9' is not a finite number"),
        (5, "Age", "value_error", "200 is above the maximum 120"),
        (6, "Clicks", "extra_forbidden", "unknown field: not a declared column"),
        (7, "Timestamp", "value_error", "'yesterday' is not an ISO 8601 date or date and time"),
    ]
    assert problem["errors"][0]["loc"] == ["body", "records", 1, "Age"]
    assert problem["detail"].startswith("7 invalid values: record 1, 'Age'")
    assert stored(api_settings) == []


@sqlite_only
def test_values_outside_the_declaration_are_422_naming_them(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    records = advertising_records(datasets_dir, 2)
    records[1]["Male"] = 1e308  # a number the model could scale, but no integer it holds
    response = client.post(PREDICT, json={"records": records}, headers=auth(client, "alice"))
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["field"] == "Male"
    assert (
        error["msg"]
        == "1e+308 is beyond ±9,007,199,254,740,992, the largest integer a model takes exactly"
    )
    assert stored(api_settings) == []


@sqlite_only
def test_malformed_bodies_are_422(client: TestClient) -> None:
    headers = auth(client, "alice")
    for body in ({}, {"records": []}, {"records": "rows"}, {"records": [1, 2]}):
        response = client.post(PREDICT, json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["errors"], body


@sqlite_only
def test_batch_size_limit(api_settings: Settings, datasets_dir: Path) -> None:
    for client in make_client(api_settings.model_copy(update={"api_max_batch": 3})):
        headers = auth(client, "alice")
        records = advertising_records(datasets_dir, 4)
        too_many = client.post(PREDICT, json={"records": records}, headers=headers)
        assert too_many.status_code == 413
        assert too_many.json()["detail"] == "4 records in one request; at most 3 are accepted"
        assert client.post(PREDICT, json={"records": records[:3]}, headers=headers).is_success


@sqlite_only
def test_roles(client: TestClient, datasets_dir: Path) -> None:
    body = {"records": advertising_records(datasets_dir, 1)}
    assert client.post(PREDICT, json=body).status_code == 401
    viewer = client.post(PREDICT, json=body, headers=auth(client, "vera"))
    assert viewer.status_code == 403
    assert "needs 'user'" in viewer.json()["detail"]
    assert client.post(PREDICT, json=body, headers=auth(client, "adam")).status_code == 200
    reload = "/v1/pipelines/advertising/reload"
    assert client.post(reload, headers=auth(client, "alice")).status_code == 403
    assert client.post(reload, headers=auth(client, "adam")).status_code == 200


@sqlite_only
def test_unknown_pipeline_and_pipeline_without_serving_are_404(
    client: TestClient, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = auth(client, "alice")
    body = {"records": advertising_records(datasets_dir, 1)}
    unknown = client.post("/v1/pipelines/no-such/predict", json=body, headers=headers)
    assert unknown.status_code == 404
    assert "unknown pipeline 'no-such'" in unknown.json()["detail"]

    quiet = Pipeline(name="quiet", steps=(Step("noop", lambda ctx: None),))
    monkeypatch.setattr(predict_routes, "get_pipeline", lambda name: quiet)
    predict_routes._serving.cache_clear()
    try:
        response = client.post("/v1/pipelines/quiet/predict", json=body, headers=headers)
    finally:
        predict_routes._serving.cache_clear()
    assert response.status_code == 404
    assert response.json()["detail"] == "pipeline 'quiet' serves no predictions (it has no serving)"


@sqlite_only
def test_no_champion_is_503_naming_what_to_run(api_settings: Settings, datasets_dir: Path) -> None:
    registry_client(api_settings).delete_registered_model_alias("advertising", "champion")
    for client in make_client(api_settings):
        body = {"records": advertising_records(datasets_dir, 1)}
        response = client.post(PREDICT, json=body, headers=auth(client, "alice"))
        assert response.status_code == 503
        assert "run `mlfactory run advertising`" in response.json()["detail"]
        reload = client.post("/v1/pipelines/advertising/reload", headers=auth(client, "adam"))
        assert reload.status_code == 503


@sqlite_only
def test_reload_serves_the_new_champion_at_once(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    admin, user = auth(client, "adam"), auth(client, "alice")
    body = {"records": advertising_records(datasets_dir, 2)}
    reload = "/v1/pipelines/advertising/reload"
    assert client.post(PREDICT, json=body, headers=user).json()["model_version"] == "1"
    unchanged = client.post(reload, headers=admin).json()
    assert unchanged == {
        "pipeline": "advertising",
        "model_name": "advertising",
        "previous_version": "1",
        "version": "1",
        "changed": False,
    }
    move_champion(api_settings, "2")
    assert client.post(PREDICT, json=body, headers=user).json()["model_version"] == "1"
    moved = client.post(reload, headers=admin).json()
    assert (moved["previous_version"], moved["version"], moved["changed"]) == ("1", "2", True)
    answer = client.post(PREDICT, json=body, headers=user).json()
    assert answer["model_version"] == "2"
    expected = registry_model(api_settings, "advertising", "2").predict_proba(
        pd.DataFrame(body["records"])[FEATURES]
    )
    assert answer["predictions"][0]["probabilities"]["1"] == pytest.approx(expected[0][1])
    assert client.post("/v1/pipelines/nope/reload", headers=admin).status_code == 404
    trail = client.get("/v1/audit", params={"action": "model.reload"}, headers=admin).json()
    reloads = [(e["actor"], e["before"], e["after"]) for e in trail["entries"]]
    assert reloads == [
        ("adam", {"version": "1"}, {"version": "2"}),  # newest first
        ("adam", {"version": "1"}, {"version": "1"}),
    ]


@sqlite_only
def test_alias_move_is_noticed_by_the_periodic_check(
    api_settings: Settings, datasets_dir: Path
) -> None:
    for client in make_client(api_settings.model_copy(update={"model_poll_seconds": 0.0})):
        headers = auth(client, "alice")
        body = {"records": advertising_records(datasets_dir, 1)}
        assert client.post(PREDICT, json=body, headers=headers).json()["model_version"] == "1"
        move_champion(api_settings, "2")
        client.post(PREDICT, json=body, headers=headers)  # due: starts the check, answers now
        client.app.state.predictions.models.settle()  # type: ignore[attr-defined]
        assert client.post(PREDICT, json=body, headers=headers).json()["model_version"] == "2"


@sqlite_only
def test_products_records_go_through_the_pipelines_features(
    client: TestClient, api_settings: Settings, datasets_dir: Path
) -> None:
    rows = product_rows(datasets_dir)[:3]
    records = [{**row, "productid": 1, "imageid": 2} for row in rows]
    del records[1]["description"]  # to_features makes it ""
    response = client.post(
        "/v1/pipelines/products/predict", json={"records": records}, headers=auth(client, "alice")
    )
    assert response.status_code == 200, response.text
    model = registry_model(api_settings, "products", "1")
    expected = model.predict_proba(product_features(records))
    classes = [str(label) for label in model.classes_]
    for prediction, row in zip(response.json()["predictions"], expected, strict=True):
        assert prediction["label"] == classes[row.argmax()]
        assert prediction["probabilities"] == pytest.approx(
            dict(zip(classes, row, strict=True)), abs=1e-12
        )
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert [row.dataset for row in stored(api_settings)] == ["products"] * 3


@dataclass
class Gate:
    """A model that waits at its first call until opened, and counts its calls: so a test can
    queue requests behind a busy predicting thread."""

    model: Any
    opened: threading.Event
    entered: threading.Event
    calls: list[int]
    refuse_age: float | None = None

    def predict_proba(self, features: Any) -> Any:
        self.calls.append(len(features))
        self.entered.set()
        self.opened.wait(10)
        if self.refuse_age is not None and (features[:, 1] == self.refuse_age).any():
            raise ValueError("a row this model refuses")
        return self.model.predict_proba(features)


@pytest.fixture
def served(registry: Path) -> Any:
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{registry}")
    version, run_id = champion_version(registry_client(settings), "advertising")
    return load_version("advertising", version, run_id)


def queue_behind_a_busy_thread(jobs: list[tuple[Any, list[dict[str, Any]]]]) -> list[Any]:
    """Answers (or exceptions) of ``jobs`` (a gated model version and its records) sent at once
    while the one predicting thread is busy with the first of them."""
    first_model = jobs[0][0]
    cache = ModelCache(lambda n: ("1", ""), lambda *a: first_model, poll_seconds=1)
    service = PredictionService(cache)
    gate: Gate = first_model.model

    async def send() -> list[Any]:
        first = asyncio.ensure_future(service.predict(*jobs[0], None))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        rest = [asyncio.ensure_future(service.predict(m, job, None)) for m, job in jobs[1:]]
        await asyncio.sleep(0.05)
        gate.opened.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        return asyncio.run(send())
    finally:
        service.close()


def gated(served: Any, refuse_age: float | None = None) -> Any:
    return replace(
        served, model=Gate(served.model, threading.Event(), threading.Event(), [], refuse_age)
    )


def same_answers(got: list[Any], expected: list[Any]) -> bool:
    """Equal labels, probabilities equal to the last bits a matrix product may change."""
    return [a.label for a in got] == [a.label for a in expected] and all(
        a.probabilities == pytest.approx(b.probabilities, abs=1e-12)
        for a, b in zip(got, expected, strict=True)
    )


def test_waiting_requests_share_one_model_call(served: Any, datasets_dir: Path) -> None:
    sizes = [1, 1, 3, 1, 2, 1, 1, 5]
    jobs = [advertising_records(datasets_dir, size, start=10 * i) for i, size in enumerate(sizes)]
    jobs.insert(4, [{"Age": "x"}])
    model = gated(served)
    results = queue_behind_a_busy_thread([(model, job) for job in jobs])
    assert model.model.calls == [1, 14]  # the first alone, then every valid waiting row at once
    assert isinstance(results[4], InvalidRecords)
    for index, (job, result) in enumerate(zip(jobs, results, strict=True)):
        if index != 4:
            assert same_answers(result, predict_records(served, job))


def test_each_version_answers_its_own_requests(
    served: Any, registry: Path, datasets_dir: Path
) -> None:
    """Requests that started on version 1 are not answered by version 2, queued with them."""
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{registry}")
    registry_client(settings)
    other = load_version("advertising", "2", "")
    one, two = gated(served), gated(other)
    two.model.opened.set()
    jobs = [advertising_records(datasets_dir, 2, start=10 * i) for i in range(5)]
    results = queue_behind_a_busy_thread(
        [(one, jobs[0]), (two, jobs[1]), (one, jobs[2]), (two, jobs[3]), (one, jobs[4])]
    )
    assert (one.model.calls, two.model.calls) == ([2, 4], [4])
    for index, (job, result) in enumerate(zip(jobs, results, strict=True)):
        version = other if index % 2 else served
        assert same_answers(result, predict_records(version, job))
    assert not same_answers(results[1], predict_records(served, jobs[1]))


def test_a_failing_batch_fails_only_the_request_at_fault(served: Any, datasets_dir: Path) -> None:
    jobs = [advertising_records(datasets_dir, 2, start=10 * i) for i in range(4)]
    jobs[2][1]["Age"] = 99.0
    model = gated(served, refuse_age=99.0)
    results = queue_behind_a_busy_thread([(model, job) for job in jobs])
    assert model.model.calls == [2, 6, 2, 2, 2]  # the batch failed: each job again on its own
    assert isinstance(results[2], ModelRefused)
    assert "a row this model refuses" in str(results[2])
    for index in (0, 1, 3):
        assert same_answers(results[index], predict_records(served, jobs[index]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def poll() -> float:
    """Seconds between the server's looks at the alias (a test parametrizes it to change it)."""
    return 0.2


@pytest.fixture
def server(api_settings: Settings, poll: float) -> Iterator[str]:
    """A real uvicorn process serving the app of ``api_settings``, with users; its base URL."""
    sessions = session_factory(api_settings.database_url)
    for name, role in (("alice", "user"), ("adam", "admin")):
        add_user(sessions, name, PASSWORD, role)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    env.update(
        MLF_HOME=str(api_settings.home),
        MLF_DATABASE_URL=api_settings.database_url,
        MLF_MLFLOW_TRACKING_URI=api_settings.mlflow_tracking_uri,
        MLF_MODEL_POLL_SECONDS=str(poll),
        MLF_API_RATE_PER_MINUTE=str(10**6),
    )
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "mlfactory.api.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    log = api_settings.home.parent / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@dataclass(frozen=True)
class Answered:
    client: int
    sent: float
    received: float
    status: int
    version: str | None
    ids: tuple[int, ...]
    clicks: tuple[float, ...] = ()  # probability of class "1" for each record sent


def answered(number: int, sent: float, response: httpx.Response) -> Answered:
    body = response.json() if response.status_code == 200 else {}
    predictions = body.get("predictions", ())
    return Answered(
        number,
        sent,
        time.monotonic(),
        response.status_code,
        body.get("model_version"),
        tuple(p["id"] for p in predictions),
        tuple(p["probabilities"]["1"] for p in predictions),
    )


def load(
    url: str, records: list[dict[str, Any]], stop: threading.Event, answers: list[Answered]
) -> None:
    """Eight keep-alive clients sending predictions until ``stop``, adding to ``answers``; a
    transport error is an answer with status 0."""

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            headers = auth(http, "alice")
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.post(
                        PREDICT, json={"records": records[: 1 + number % 3]}, headers=headers
                    )
                except httpx.TransportError:
                    answers.append(Answered(number, sent, time.monotonic(), 0, None, ()))
                    return
                answers.append(answered(number, sent, response))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def check_swap(
    answers: list[Answered], settings: Settings, moved_at: float, records: list[dict[str, Any]]
) -> None:
    """Zero failures; both versions answered; each client switched once, for good; every request
    sent after the first answer of version 2 was answered by it, and every answer is the one of
    the version it names; each answer stored."""
    assert answers, "no request was answered"
    assert [a for a in answers if a.status != 200] == []
    assert {a.version for a in answers} == {"1", "2"}
    for number in range(8):
        versions = [a.version for a in sorted(answers, key=lambda a: a.sent) if a.client == number]
        assert versions == sorted(versions), f"client {number} went back to the old version"
    first_new = min(a.received for a in answers if a.version == "2")
    assert first_new > moved_at
    assert {a.version for a in answers if a.sent > first_new} == {"2"}
    frame = pd.DataFrame(records)[FEATURES]
    clicks = {
        v: registry_model(settings, "advertising", v).predict_proba(frame)[:, 1] for v in "12"
    }
    for a in answers:
        assert a.clicks == pytest.approx(clicks[a.version or ""][: len(a.clicks)], abs=1e-12)
    rows = {row.id: row.model_version for row in stored(settings)}
    assert len(rows) == sum(len(a.ids) for a in answers)
    assert all(rows[i] == a.version for a in answers for i in a.ids)


@contextmanager
def under_load(server: str, records: list[dict[str, Any]]) -> Iterator[list[Answered]]:
    """A first request (its answer counts), then eight clients sending until the block ends; the
    block starts once they have 40 answers."""
    with httpx.Client(base_url=server, timeout=30) as http:
        warm = http.post(PREDICT, json={"records": records}, headers=auth(http, "alice"))
    answers = [answered(-1, 0.0, warm)]
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(server, records, stop, answers))
    loader.start()
    try:
        wait_until(lambda: len(answers) > 40)
        yield answers
    finally:
        stop.set()
        loader.join(60)


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.05)


def test_champion_swap_under_load_fails_no_request(
    server: str, api_settings: Settings, datasets_dir: Path
) -> None:
    """The alias moves while eight clients send predictions; the periodic check swaps it in."""
    records = advertising_records(datasets_dir, 3)
    with under_load(server, records) as answers:
        moved_at = time.monotonic()
        move_champion(api_settings, "2")
        wait_until(lambda: any(a.version == "2" for a in answers))
        seen = len(answers)
        wait_until(lambda: len(answers) > seen + 100)
    check_swap(answers, api_settings, moved_at, records)


@sqlite_only
@pytest.mark.parametrize("poll", [3600.0])
def test_reload_under_load_fails_no_request(
    server: str, api_settings: Settings, datasets_dir: Path
) -> None:
    """The same with no periodic check in sight: an admin's reload swaps the version."""
    records = advertising_records(datasets_dir, 3)
    with under_load(server, records) as answers:
        move_champion(api_settings, "2")
        seen = len(answers)
        wait_until(lambda: len(answers) > seen + 100)
        assert {a.version for a in answers} == {"1"}  # not noticed without a check
        moved_at = time.monotonic()
        with httpx.Client(base_url=server, timeout=30) as http:
            reload = http.post("/v1/pipelines/advertising/reload", headers=auth(http, "adam"))
        assert (reload.json()["previous_version"], reload.json()["version"]) == ("1", "2")
        seen = len(answers)
        wait_until(lambda: len(answers) > seen + 100)
    check_swap(answers, api_settings, moved_at, records)


@sqlite_only
def test_ready_only_once_every_champion_is_loaded(api_settings: Settings) -> None:
    app = create_app(api_settings)
    cold = TestClient(app).get("/health/ready")  # no lifespan: nothing loaded
    assert cold.status_code == 503 and cold.json()["models"] == "loading"
    with TestClient(app) as client:  # the lifespan loads the champions in the background
        deadline = time.monotonic() + 120
        while (answer := client.get("/health/ready")).status_code != 200:
            assert answer.json()["models"] == "loading", answer.text
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.1)
        service = app.state.predictions
        assert service.models.cached("advertising") is not None  # ready: in memory already
        assert service.models.cached("products") is not None
