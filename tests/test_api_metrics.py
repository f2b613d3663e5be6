"""Operations: ``/metrics`` in Prometheus text format (requests and latency per route template,
predictions, model loads, run outcomes and champions per pipeline) and the body-size limit."""

from __future__ import annotations

import os
import select as selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.catalog import Catalog, get_catalog
from mlfactory.api.main import create_app
from mlfactory.api.metrics import RequestMetrics, record_model_load, record_predictions
from mlfactory.orchestration import Context, Pipeline, Serving, Step, run_pipeline
from mlfactory.settings import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def with_request_metrics(app: FastAPI) -> FastAPI:
    """The app with the request-metrics middleware, unless create_app installs it already."""
    if not any(middleware.cls is RequestMetrics for middleware in app.user_middleware):
        app.add_middleware(RequestMetrics)
    return app


def login(client: TestClient, sessions: sessionmaker[Session], role: str) -> dict[str, str]:
    add_user(sessions, role, f"{role}-password", role)
    token = client.post("/token", data={"username": role, "password": f"{role}-password"})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def scrape(client: TestClient, headers: dict[str, str]) -> tuple[set[str], Samples]:
    """The metric families (name and type) and every sample of one scrape."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families, samples = set(), {}
    for family in text_string_to_metric_families(response.text):
        families.add(f"{family.name} {family.type}")
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def succeed(ctx: Context) -> None:
    return None


def fail(ctx: Context) -> None:
    raise RuntimeError("no luck")


@pytest.fixture
def pipelines() -> list[Pipeline]:
    """Two pipelines with names of their own: the metrics registry is shared by every test."""
    tag = uuid.uuid4().hex[:8]
    return [
        Pipeline(f"ok-{tag}", steps=(Step("s", succeed),)),
        Pipeline(f"ko-{tag}", steps=(Step("s", fail),)),
    ]


def test_metrics_count_requests_per_route_template_and_status(
    settings: Settings, sessions: sessionmaker[Session], pipelines: list[Pipeline]
) -> None:
    app = with_request_metrics(create_app(settings))
    app.dependency_overrides[get_catalog] = lambda: Catalog(pipelines)
    client = TestClient(app)
    viewer = login(client, sessions, "viewer")
    _, before = scrape(client, viewer)

    for path, headers in [
        ("/v1/datasets", viewer),
        ("/v1/datasets", viewer),
        ("/v1/datasets", {}),
        ("/v1/items/987654", viewer),
        ("/v1/items/123456", viewer),
        ("/v1/items/abc", viewer),
        (f"/no/such/path/{uuid.uuid4().hex}", viewer),
    ]:
        client.get(path, headers=headers)
    families, after = scrape(client, viewer)

    assert {
        "mlfactory_http_requests counter",
        "mlfactory_http_request_duration_seconds histogram",
    } <= families

    def added(name: str, route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "mlfactory_http_requests_total"
    assert added(requests, "/v1/datasets", "200") == 2
    assert added(requests, "/v1/datasets", "401") == 1
    assert added(requests, "/v1/items/{item_id}", "404") == 2
    assert added(requests, "/v1/items/{item_id}", "422") == 1
    assert added(requests, "unmatched", "404") == 1
    assert added("mlfactory_http_request_duration_seconds_count", "/v1/datasets", "200") == 2
    slowest = {"method": "GET", "route": "/v1/datasets", "status": "200", "le": "+Inf"}
    assert value(after, "mlfactory_http_request_duration_seconds_bucket", **slowest) >= 2
    assert added(requests, "/metrics", "200") == 1  # the first scrape
    raw = [labels for _, labels in after if ("route", "/v1/items/987654") in labels]
    assert raw == []  # ids never become label values


def test_metrics_have_predictions_model_loads_and_run_outcomes(
    settings: Settings, sessions: sessionmaker[Session], pipelines: list[Pipeline]
) -> None:
    ok, ko = pipelines
    for pipeline in (ok, ok, ko):
        run_pipeline(pipeline, settings=settings)
    record_predictions(ok.name, "clicks", "3", ["1", "0", "1"])
    record_model_load(ok.name, "clicks", 0.25)
    app = create_app(settings)
    app.dependency_overrides[get_catalog] = lambda: Catalog(pipelines)
    client = TestClient(app)
    families, samples = scrape(client, login(client, sessions, "viewer"))

    assert {
        "mlfactory_predictions counter",
        "mlfactory_model_load_seconds histogram",
        "mlfactory_pipeline_runs gauge",
        "mlfactory_pipeline_last_run_end_timestamp_seconds gauge",
        "mlfactory_champion_version gauge",
        "mlfactory_model_registry_up gauge",
    } <= families
    predictions = {"pipeline": ok.name, "model": "clicks", "version": "3"}
    assert value(samples, "mlfactory_predictions_total", **predictions, label="1") == 2
    assert value(samples, "mlfactory_predictions_total", **predictions, label="0") == 1
    loads = {"pipeline": ok.name, "model": "clicks"}
    assert value(samples, "mlfactory_model_load_seconds_count", **loads) == 1
    assert value(samples, "mlfactory_model_load_seconds_sum", **loads) == 0.25
    runs = "mlfactory_pipeline_runs"
    assert value(samples, runs, pipeline=ok.name, status="success") == 2
    assert value(samples, runs, pipeline=ko.name, status="failed") == 1
    assert (runs, frozenset({("pipeline", ko.name), ("status", "success")})) not in samples
    ended = value(
        samples,
        "mlfactory_pipeline_last_run_end_timestamp_seconds",
        pipeline=ok.name,
        status="success",
    )
    assert time.time() - 60 < ended <= time.time()
    assert value(samples, "mlfactory_model_registry_up") == 1  # no pipeline has a model


def test_a_request_that_raises_counts_as_a_500() -> None:
    app = FastAPI()

    @app.get("/boom/{part}")
    def boom(part: str) -> None:
        raise RuntimeError(part)

    app.add_middleware(RequestMetrics)
    client = TestClient(app, raise_server_exceptions=False)
    labels = {"method": "GET", "route": "/boom/{part}", "status": "500"}
    before = _current("mlfactory_http_requests_total", labels)
    assert client.get("/boom/x").status_code == 500
    assert _current("mlfactory_http_requests_total", labels) == before + 1
    odd = {"method": "OTHER", "route": "/boom/{part}", "status": "405"}
    before = _current("mlfactory_http_requests_total", odd)
    assert client.request("BREW", "/boom/x").status_code == 405
    assert _current("mlfactory_http_requests_total", odd) == before + 1


def _current(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_need_a_token(settings: Settings) -> None:
    assert TestClient(create_app(settings)).get("/metrics").status_code == 401


@pytest.mark.slow
def test_champion_version_per_pipeline_comes_from_the_registry(
    settings: Settings, sessions: sessionmaker[Session], model_name: str
) -> None:
    import mlflow

    from mlfactory.training.tracking import experiment_id, use_tracking

    registry = use_tracking(settings)
    registry.create_registered_model(model_name)
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment_id(model_name, settings)) as run:
            pass
        registry.create_model_version(model_name, f"runs:/{run.info.run_id}/m", run.info.run_id)
    registry.set_registered_model_alias(model_name, "champion", "2")
    served = Pipeline(f"served-{model_name}", serving=Serving(model_name), steps=())
    app = create_app(settings)
    app.dependency_overrides[get_catalog] = lambda: Catalog([served])
    client = TestClient(app)
    viewer = login(client, sessions, "viewer")
    _, samples = scrape(client, viewer)
    labels = {"pipeline": served.name, "model": model_name}
    assert value(samples, "mlfactory_champion_version", **labels) == 2
    assert value(samples, "mlfactory_model_registry_up") == 1

    registry.set_registered_model_alias(model_name, "champion", "1")
    assert value(scrape(client, viewer)[1], "mlfactory_champion_version", **labels) == 1


@pytest.mark.slow
def test_a_registry_that_does_not_answer_leaves_the_scrape_up(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    unreachable = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    app = create_app(unreachable)
    served = Pipeline("served", serving=Serving("some-model"), steps=())
    app.dependency_overrides[get_catalog] = lambda: Catalog([served])
    client = TestClient(app)
    families, samples = scrape(client, login(client, sessions, "viewer"))
    assert value(samples, "mlfactory_model_registry_up") == 0
    assert "mlfactory_pipeline_runs gauge" in families


@pytest.mark.slow
def test_counters_add_up_over_server_processes(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, whichever process is scraped reports every process's
    predictions."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = (
        "import sys; from mlfactory.api.metrics import record_predictions; "
        "record_predictions('p', 'm', '1', ['yes'] * int(sys.argv[1]))"
    )
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", record, count], env=env, check=True)
    scraped = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mlfactory.api.metrics import process_metrics; "
            "sys.stdout.write(process_metrics().decode())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
    }
    labels = {"pipeline": "p", "model": "m", "version": "1", "label": "yes"}
    assert value(samples, "mlfactory_predictions_total", **labels) == 5


# ---------------------------------------------------------------------------------------------
# Body size


@pytest.fixture
def limited(settings: Settings, sessions: sessionmaker[Session]) -> tuple[Settings, TestClient]:
    small = settings.model_copy(update={"api_max_body_bytes": 2048})
    return small, TestClient(create_app(small))


def big_params(size: int) -> bytes:
    return b'{"params": {"rate": "' + b"9" * size + b'"}}'


def test_a_declared_body_over_the_limit_is_413(
    limited: tuple[Settings, TestClient], sessions: sessionmaker[Session]
) -> None:
    _, client = limited
    admin = login(client, sessions, "admin")
    response = client.post(
        "/v1/pipelines/advertising/runs",
        content=big_params(3000),
        headers={**admin, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413
    under = client.post(
        "/v1/pipelines/advertising/runs",
        content=big_params(100),
        headers={**admin, "content-type": "application/json"},
    )
    assert under.status_code == 422  # read, parsed and refused for its value, not its size


def test_a_chunked_body_over_the_limit_is_413(
    limited: tuple[Settings, TestClient], sessions: sessionmaker[Session]
) -> None:
    _, client = limited
    admin = login(client, sessions, "admin")

    def chunks() -> Iterator[bytes]:
        body = big_params(3000)
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = client.post(
        "/v1/pipelines/advertising/runs",
        content=chunks(),
        headers={**admin, "content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["status"] == 413


@pytest.mark.slow
def test_a_real_server_stops_reading_a_chunked_body_at_the_limit(
    limited: tuple[Settings, TestClient], sessions: sessionmaker[Session]
) -> None:
    small, client = limited
    admin = login(client, sessions, "admin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(small), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        answer, sent = _post_chunked(port, admin["Authorization"], chunk=512, chunks=400)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 100  # 2 KB allowed: the server answered long before the 200 KB were sent


def _post_chunked(port: int, authorization: str, chunk: int, chunks: int) -> tuple[bytes, int]:
    """Send a chunked body slowly until the server answers; the answer and chunks sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/pipelines/advertising/runs HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: {authorization}\r\n\r\n".encode()
            + b'7\r\n{"a": "\r\n'
        )
        sent = 0
        for sent in range(1, chunks + 1):  # noqa: B007 - the count is the result
            readable, _, _ = selectors.select([connection], [], [], 0.01)
            if readable:
                break
            try:
                connection.sendall(f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        return connection.recv(65536), sent
