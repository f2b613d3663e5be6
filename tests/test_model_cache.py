"""The champion cache on a real MLflow registry: one load per version, the alias looked at no more
often than the poll interval, reloads on demand, and a failing load never stops the serving."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlfactory.inference.champion import NoChampionError, champion_version, registry_client
from mlfactory.inference.model_cache import ModelCache, ServedModel, load_version
from mlfactory.inference.serving import predict_records
from mlfactory.settings import Settings
from mlfactory.training.registry import log_and_register
from mlfactory.training.tracking import experiment_id

# The array fast path (see inference/model_cache.py) silences this warning in the server; pytest
# resets warning filters for each test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]

FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
POLL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, advertising_csv: Path) -> Settings:
    """A registry of its own with model "ads": version 1 (champion) and version 2."""
    home = tmp_path_factory.mktemp("cache-home")
    settings = Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    frame = pd.read_csv(advertising_csv)
    features, target = frame[FEATURES].astype("float64"), frame["Clicked on Ad"]
    for c in (1.0, 0.01):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        with mlflow.start_run(experiment_id=experiment_id("ads", settings)):
            log_and_register(model.fit(features, target), features, "ads")
    registry_client(settings).set_registered_model_alias("ads", "champion", "1")
    return settings


@pytest.fixture
def client(registry: Settings) -> MlflowClient:
    """The registry, with alias champion on version 1 again after each test."""
    client = registry_client(registry)
    yield client
    client.set_registered_model_alias("ads", "champion", "1")


class Spy:
    """The real registry calls, counted."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.resolved = 0
        self.loaded: list[str] = []
        self.fail_versions: set[str] = set()

    def resolve(self, name: str) -> tuple[str, str]:
        self.resolved += 1
        return champion_version(self.client, name)

    def load(self, name: str, version: str, run_id: str) -> ServedModel:
        self.loaded.append(version)
        if version in self.fail_versions:
            raise OSError(f"artefacts of {name} version {version} unreadable")
        return load_version(name, version, run_id)


@pytest.fixture
def spy(client: MlflowClient) -> Spy:
    return Spy(client)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(spy: Spy, clock: Clock) -> ModelCache:
    cache = ModelCache(spy.resolve, spy.load, poll_seconds=POLL, clock=clock)
    yield cache
    cache.close()


def test_loads_once_and_answers_from_memory(cache: ModelCache, spy: Spy, clock: Clock) -> None:
    first = cache.get("ads")
    for _ in range(50):
        clock.now += POLL / 100
        assert cache.get("ads") is first
    cache.settle()
    assert (spy.loaded, spy.resolved) == (["1"], 1)
    assert (first.name, first.version) == ("ads", "1")
    assert first.schema.names == FEATURES
    assert first.classes == ("0", "1")
    assert first.takes_array  # all-float inputs in the order the model was fitted with


def test_concurrent_first_requests_share_one_load(cache: ModelCache, spy: Spy) -> None:
    barrier = threading.Barrier(8)
    served: list[ServedModel] = []

    def first_request() -> None:
        barrier.wait()
        served.append(cache.get("ads"))

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(model) for model in served}) == 1
    assert spy.loaded == ["1"]


def test_alias_move_is_noticed_after_the_poll_interval_not_before(
    cache: ModelCache, spy: Spy, client: MlflowClient, clock: Clock
) -> None:
    old = cache.get("ads")
    client.set_registered_model_alias("ads", "champion", "2")
    clock.now += POLL - 0.01
    assert cache.cached("ads") is old
    cache.settle()
    assert spy.resolved == 1  # not looked at before the interval

    clock.now += 0.01
    assert cache.cached("ads") is old  # the check runs in the background: no request waits
    cache.settle()
    new = cache.cached("ads")
    assert new is not None
    assert (new.version, spy.loaded, spy.resolved) == ("2", ["1", "2"], 2)
    assert old.version == "1"  # a request holding the old version still has it whole
    assert cache.versions() == {"ads": "2"}

    clock.now += POLL / 2
    cache.cached("ads")
    cache.settle()
    assert spy.resolved == 2  # the interval counts again from the last check


def test_unchanged_alias_costs_a_lookup_not_a_load(
    cache: ModelCache, spy: Spy, clock: Clock
) -> None:
    cache.get("ads")
    for _ in range(3):
        clock.now += POLL
        cache.cached("ads")
        cache.settle()
    assert (spy.resolved, spy.loaded) == (4, ["1"])


def test_reload_looks_now(cache: ModelCache, spy: Spy, client: MlflowClient) -> None:
    assert cache.reload("ads") == (None, "1")
    assert cache.reload("ads") == ("1", "1")
    client.set_registered_model_alias("ads", "champion", "2")
    assert cache.cached("ads").version == "1"  # type: ignore[union-attr]
    assert cache.reload("ads") == ("1", "2")
    assert cache.cached("ads").version == "2"  # type: ignore[union-attr]
    client.set_registered_model_alias("ads", "champion", "1")  # a rollback is a move too
    assert cache.reload("ads") == ("2", "1")
    assert spy.loaded == ["1", "2", "1"]


def test_failing_load_keeps_serving_the_old_version(
    cache: ModelCache,
    spy: Spy,
    client: MlflowClient,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = cache.get("ads")
    client.set_registered_model_alias("ads", "champion", "2")
    spy.fail_versions.add("2")
    clock.now += POLL
    with caplog.at_level(logging.ERROR, logger="mlfactory.inference.model_cache"):
        assert cache.cached("ads") is old
        cache.settle()
    assert cache.cached("ads") is old
    assert "version 1 goes on serving" in caplog.text
    with pytest.raises(OSError, match="unreadable"):
        cache.reload("ads")
    assert cache.cached("ads") is old

    clock.now += POLL / 2
    cache.cached("ads")
    cache.settle()
    assert spy.loaded == ["1", "2", "2"]  # a failed check waits an interval, like any other

    spy.fail_versions.clear()
    clock.now += POLL
    cache.cached("ads")
    cache.settle()
    assert cache.cached("ads").version == "2"  # type: ignore[union-attr]


def test_unreadable_artefacts_fail_the_load_not_the_serving(
    registry: Settings,
    client: MlflowClient,
    advertising_csv: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real failure: the new champion's artefacts are gone from the artefact store."""
    frame = pd.read_csv(advertising_csv)
    features = frame[FEATURES].astype("float64")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with mlflow.start_run(experiment_id=experiment_id("ads", registry)):
        broken = log_and_register(model.fit(features, frame["Clicked on Ad"]), features, "ads")
    shutil.rmtree(mlflow.artifacts.download_artifacts(broken.model_uri))
    cache = ModelCache.for_registry(registry.model_copy(update={"model_poll_seconds": 0.0}))
    try:
        old = cache.get("ads")
        client.set_registered_model_alias("ads", "champion", broken.version)
        with caplog.at_level(logging.ERROR, logger="mlfactory.inference.model_cache"):
            assert cache.cached("ads") is old
            cache.settle()
        assert cache.cached("ads") is old
        assert "checking the champion of ads failed" in caplog.text
        with pytest.raises(MlflowException, match="No such artifact"):
            cache.reload("ads")
        assert cache.cached("ads") is old
    finally:
        cache.close()
        client.delete_model_version("ads", broken.version)


def test_no_champion(registry: Settings) -> None:
    cache = ModelCache.for_registry(registry)
    try:
        with pytest.raises(NoChampionError, match="no 'champion' version"):
            cache.get("no-such-model")
        assert cache.versions() == {}
    finally:
        cache.close()


def test_served_model_predicts_like_the_estimator(cache: ModelCache, advertising_csv: Path) -> None:
    served = cache.get("ads")
    rows = pd.read_csv(advertising_csv).head(200)
    answers = predict_records(served, rows.to_dict(orient="records"))
    expected = served.model.predict_proba(rows[FEATURES].astype("float64"))
    assert [a.label for a in answers] == served.model.predict(rows[FEATURES]).tolist()
    for answer, row in zip(answers, expected, strict=True):
        assert answer.probabilities == pytest.approx({"0": row[0], "1": row[1]}, abs=1e-12)
    right = sum(a.label == t for a, t in zip(answers, rows["Clicked on Ad"], strict=True))
    assert right / len(rows) > 0.9
