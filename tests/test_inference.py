"""Batch inference on the real advertising data: every pending item predicted once by the champion
version, reruns and restarts do the rest, and concurrent workers share the work."""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
import sklearn
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.inference import batch
from mlfactory.inference.batch import BatchPredictionResult, predict_pending
from mlfactory.inference.champion import NoChampionError, load_champion
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.settings import Settings
from mlfactory.store import Item, Prediction, session_factory

pytestmark = pytest.mark.slow

DATASET = "ads"
TARGET = "Clicked on Ad"
FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
on_postgresql = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def to_features(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The stored rows (CSV text) as the model's input frame."""
    return pd.DataFrame.from_records(records, columns=FEATURES).astype("float64")


def advertising_csv(settings: Settings) -> Path:
    assert settings.datasets_dir is not None
    return settings.datasets_dir / "advertising" / "advertising.csv"


def load_items(sessions: sessionmaker[Session], settings: Settings, dataset: str = DATASET) -> int:
    with advertising_csv(settings).open(newline="", encoding="utf-8") as source:
        records = [
            Record(key=str(line), data=row, label=row[TARGET], line=line)
            for line, row in enumerate(csv.DictReader(source), start=2)
        ]
    return load_batch(sessions, dataset, records).rows_inserted


def register(
    settings: Settings,
    model_name: str,
    estimator: BaseEstimator | None = None,
    *,
    champion: bool = True,
) -> str:
    """Fit ``estimator`` (default: scaling + logistic regression) on the real data, log and
    register it as a new version of ``model_name``, optionally as champion."""
    frame = pd.read_csv(advertising_csv(settings))
    features, target = frame[FEATURES].astype("float64"), frame[TARGET]
    model = estimator or make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features, target)
    uri = settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name(model_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(model_name, artifact_location=settings.mlflow_artifacts_uri)
    )
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features.head(), model.predict(features.head())),
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"scikit-learn=={sklearn.__version__}",
            ],
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    if champion:
        client.set_registered_model_alias(model_name, "champion", version)
    return version


def predictions(sessions: sessionmaker[Session], **where: Any) -> list[Prediction]:
    with sessions() as session:
        return list(session.scalars(select(Prediction).filter_by(**where)))


def predictions_per_item(sessions: sessionmaker[Session], model_name: str) -> dict[int, int]:
    with sessions() as session:
        return dict(
            session.execute(
                select(Prediction.item_id, func.count())
                .where(Prediction.model_name == model_name)
                .group_by(Prediction.item_id)
            ).all()
        )


def test_every_item_gets_one_prediction_from_the_champion(
    settings: Settings, sessions, model_name: str
) -> None:
    register(settings, model_name)
    items = load_items(sessions, settings)
    load_items(sessions, settings, dataset="other")  # another data set: not touched

    result = predict_pending(
        sessions, settings, DATASET, model_name, to_features=to_features, batch_size=300
    )

    assert items == 1000
    assert result == BatchPredictionResult(model_name, "1", predicted=1000, batches=4)
    rows = predictions(sessions, model_name=model_name)
    assert len(rows) == 1000 and {r.dataset for r in rows} == {DATASET}
    assert set(predictions_per_item(sessions, model_name).values()) == {1}
    with sessions() as session:
        labels = dict(session.execute(select(Item.id, Item.label)).all())
        in_dataset = set(session.scalars(select(Item.id).where(Item.dataset == DATASET)))
    assert {r.item_id for r in rows} == in_dataset
    for row in rows:
        assert row.model_version == "1" and row.label in {"0", "1"}
        assert set(row.scores) == {"0", "1"}
        assert sum(row.scores.values()) == pytest.approx(1.0)
        assert row.label == max(row.scores, key=row.scores.__getitem__)
    accuracy = sum(r.label == labels[r.item_id] for r in rows) / len(rows)
    assert accuracy > 0.9  # the features reached the model in the right order

    again = predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)
    assert (again.predicted, again.batches, again.model_version) == (0, 0, "1")
    assert len(predictions(sessions, model_name=model_name)) == 1000


def test_a_new_champion_makes_every_item_pending_again(
    settings: Settings, sessions, model_name: str
) -> None:
    register(settings, model_name)
    load_items(sessions, settings)
    predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)

    challenger = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
    assert register(settings, model_name, challenger, champion=False) == "2"
    unchanged = predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)
    assert (unchanged.model_version, unchanged.predicted) == ("1", 0)  # alias has not moved

    MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(
        model_name, "champion", "2"
    )
    assert load_champion(settings, model_name).version == "2"
    result = predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)

    assert (result.model_version, result.predicted) == ("2", 1000)
    assert len(predictions(sessions, model_name=model_name, model_version="1")) == 1000
    new = predictions(sessions, model_name=model_name, model_version="2")
    assert len(new) == 1000 and len({r.item_id for r in new}) == 1000
    assert set(predictions_per_item(sessions, model_name).values()) == {2}  # one per version


def test_without_a_champion_nothing_is_predicted(
    settings: Settings, sessions, model_name: str
) -> None:
    load_items(sessions, settings)
    with pytest.raises(NoChampionError, match="no 'champion' version"):
        predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)

    register(settings, model_name, champion=False)  # registered, but never promoted
    with pytest.raises(UserError, match=model_name):
        load_champion(settings, model_name)
    with pytest.raises(NoChampionError):
        predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)
    assert predictions(sessions) == []


def test_a_model_without_probabilities_gives_labels_only(
    settings: Settings, sessions, model_name: str
) -> None:
    register(settings, model_name, make_pipeline(StandardScaler(), LinearSVC()))
    load_items(sessions, settings)

    result = predict_pending(sessions, settings, DATASET, model_name, to_features=to_features)

    assert result.predicted == 1000
    rows = predictions(sessions, model_name=model_name)
    assert {r.label for r in rows} == {"0", "1"} and all(r.scores == {} for r in rows)


def test_a_failure_keeps_committed_batches_and_a_rerun_does_the_rest(
    settings: Settings, sessions, model_name: str
) -> None:
    register(settings, model_name)
    load_items(sessions, settings)
    calls = 0

    def failing_on_third_batch(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("feature service down")
        return to_features(records, columns)

    with pytest.raises(RuntimeError, match="feature service down"):
        predict_pending(
            sessions,
            settings,
            DATASET,
            model_name,
            to_features=failing_on_third_batch,
            batch_size=100,
        )
    assert len(predictions(sessions, model_name=model_name)) == 200

    limited = predict_pending(
        sessions, settings, DATASET, model_name, to_features=to_features, limit=250
    )
    assert (limited.predicted, limited.batches) == (250, 1)
    rest = predict_pending(
        sessions, settings, DATASET, model_name, to_features=to_features, batch_size=100
    )
    assert (rest.predicted, rest.batches) == (550, 6)
    assert len(predictions_per_item(sessions, model_name)) == 1000
    assert set(predictions_per_item(sessions, model_name).values()) == {1}


@on_postgresql
def test_an_item_predicted_by_another_worker_meanwhile_is_not_written_twice(
    settings: Settings, sessions, model_name: str
) -> None:
    """The race SKIP LOCKED leaves open: a claimed item that another transaction has predicted
    and committed in the meantime. Its prediction stays; this one is dropped and not counted."""
    register(settings, model_name)
    load_items(sessions, settings)
    rival: list[int] = []

    def with_a_rival(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
        if not rival:  # first batch, while its items are claimed: another worker commits one
            with sessions.begin() as other:
                # Fail rather than hang if claiming ever blocked references to the item.
                other.connection().exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                item_id = next(
                    item_id
                    for item_id, data in other.execute(
                        select(Item.id, Item.data).where(Item.dataset == DATASET)
                    )
                    if data == records[0]
                )
                other.add(
                    Prediction(
                        item_id=item_id,
                        dataset=DATASET,
                        model_name=model_name,
                        model_version="1",
                        label="rival",
                    )
                )
            rival.append(item_id)
        return to_features(records, columns)

    result = predict_pending(
        sessions, settings, DATASET, model_name, to_features=with_a_rival, batch_size=100
    )

    assert (result.predicted, result.duplicates_dropped, result.batches) == (999, 1, 10)
    assert set(predictions_per_item(sessions, model_name).values()) == {1}
    assert [r.label for r in predictions(sessions, item_id=rival[0])] == ["rival"]


@on_postgresql
def test_items_locked_by_another_transaction_are_skipped_not_waited_for(
    settings: Settings, sessions, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker holds a batch: this one predicts everything else without waiting for it,
    looks again for a while, and picks the batch up if it is released unpredicted."""
    register(settings, model_name)
    load_items(sessions, settings)
    holder = sessions()
    held = holder.scalars(
        select(Item.id)
        .where(Item.dataset == DATASET)
        .order_by(Item.id)
        .limit(50)
        .with_for_update(key_share=True)
    ).all()

    def predict() -> BatchPredictionResult:
        return predict_pending(
            sessions, settings, DATASET, model_name, to_features=to_features, batch_size=100
        )

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            monkeypatch.setattr(batch, "LOCKED_PATIENCE", 0.5)
            first = pool.submit(predict).result(timeout=20)  # waiting for the lock would time out
            assert (first.predicted, first.batches) == (950, 10)
            assert not set(held) & set(predictions_per_item(sessions, model_name))

            monkeypatch.setattr(batch, "LOCKED_PATIENCE", 30.0)
            second = pool.submit(predict)
            time.sleep(0.5)
            assert not second.done()  # looking again while the items are locked
        finally:
            holder.rollback()  # the other worker gives its batch up, unpredicted
            holder.close()
        assert (second.result(timeout=20).predicted, second.result().batches) == (50, 1)
    assert set(predictions_per_item(sessions, model_name).values()) == {1}
    assert len(predictions_per_item(sessions, model_name)) == 1000


def slow_features(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    time.sleep(0.01)  # some feature work, so that each batch holds its claim for a while
    return to_features(records, columns)


def _worker(
    settings: dict[str, str],
    model_name: str,
    batch_size: int,
    ready: Any,
    results: Any,
) -> None:
    """One worker process: its own engine and MLflow client, started with the others."""
    try:
        worker_settings = Settings(**settings)
        sessions = session_factory(worker_settings.database_url)
        load_champion(worker_settings, model_name)  # warm up: imports, MLflow store, first load
        ready.wait(timeout=120)
        result = predict_pending(
            sessions,
            worker_settings,
            DATASET,
            model_name,
            to_features=slow_features,
            batch_size=batch_size,
        )
        results.put((os.getpid(), result.as_dict(), None))
    except BaseException:
        results.put((os.getpid(), None, traceback.format_exc()))
        raise


@on_postgresql
def test_concurrent_workers_predict_every_item_exactly_once(
    settings: Settings, sessions, model_name: str
) -> None:
    register(settings, model_name)
    items = load_items(sessions, settings)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(2), context.Queue()
    # A worker never waits for another's batch, it skips it: any lock wait fails the worker.
    no_waiting = make_url(settings.database_url).update_query_dict(
        {"options": "-c lock_timeout=5ms"}
    )
    worker_settings = {
        "home": str(settings.home),
        "database_url": no_waiting.render_as_string(hide_password=False),
        "mlflow_tracking_uri": settings.mlflow_tracking_uri,
    }
    workers = [
        context.Process(target=_worker, args=(worker_settings, model_name, 50, ready, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=180) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    errors = [error for _, _, error in outcomes if error]
    assert not errors, "\n".join(errors)
    assert [worker.exitcode for worker in workers] == [0, 0]

    done = [result for _, result, _ in outcomes]
    per_item = predictions_per_item(sessions, model_name)
    assert len(per_item) == items == 1000
    assert set(per_item.values()) == {1}
    assert sum(result["predicted"] for result in done) == items
    assert all(result["predicted"] > 0 for result in done), done  # both did some of the work
    assert sum(result["duplicates_dropped"] for result in done) == 0, done  # no work wasted
    assert {r.model_version for r in predictions(sessions, model_name=model_name)} == {"1"}
