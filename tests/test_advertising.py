"""The advertising pipeline end to end on the real data: store, MLflow registry, champion rule."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from mlfactory.orchestration import get_pipeline, run_pipeline
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, PipelineRun, Rejection, TaskRun

pytestmark = pytest.mark.slow
pipeline = get_pipeline("advertising")  # declared in datasets/builtin.yaml, made by a template


def run(settings: Settings, model_name: str, **params):
    outcome = run_pipeline(pipeline, {"model_name": model_name, **params}, settings=settings)
    assert outcome.status == "success", outcome.error
    return outcome


def aliases(settings: Settings, model_name: str) -> dict[str, str]:
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    return {alias: str(v) for alias, v in client.get_registered_model(model_name).aliases.items()}


def test_a_run_registers_a_champion_and_records_everything(
    settings: Settings, sessions, model_name: str
) -> None:
    outcome = run(settings, model_name)

    with sessions() as session:
        record = session.get_one(PipelineRun, outcome.run_id)
        steps = session.execute(
            select(TaskRun.step, TaskRun.status)
            .where(TaskRun.run_id == outcome.run_id)
            .order_by(TaskRun.id)
        ).all()
        items = session.scalar(select(func.count()).select_from(Item))
    assert [s.step for s in steps] == [
        "load",
        "drift",
        "split",
        "train",
        "evaluate",
        "promote",
        "predict",
        "summary",
    ]
    assert {s.status for s in steps} == {"success"}
    assert items == 1000
    assert record.model_name == model_name and record.model_version == "1"
    # The same scores as the hand-written pipeline the template replaced, on the same rows.
    assert record.metrics == {
        "accuracy": pytest.approx(0.9766666666666667, abs=1e-12),
        "precision": pytest.approx(0.9863945578231292, abs=1e-12),
        "recall": pytest.approx(0.9666666666666667, abs=1e-12),
        "f1": pytest.approx(0.9764309764309764, abs=1e-12),
        "roc_auc": pytest.approx(0.9917777777777778, abs=1e-12),
    }
    assert outcome.outputs["predict"]["predicted"] == 1000  # every item, by the new champion
    summary = record.summary
    assert summary["samples"] == {"train": 700, "test": 300}
    assert summary["class_counts"]["test"] == {"0": 150, "1": 150}  # stratified on a 500/500 set
    assert summary["difference"] == pytest.approx(summary["train_score"] - summary["test_score"])
    assert summary["promotion"]["alias"] == "champion"
    assert (
        settings.artifacts_dir / "runs" / "advertising" / str(outcome.run_id) / "summary.json"
    ).is_file()

    assert aliases(settings, model_name) == {"champion": "1"}
    mlflow_run = MlflowClient(settings.mlflow_tracking_uri).get_run(record.mlflow_run_id)
    assert mlflow_run.data.params["max_iter"] == "1000"
    assert mlflow_run.data.metrics["test_accuracy"] == pytest.approx(record.metrics["accuracy"])
    artifacts = {
        a.path
        for a in MlflowClient(settings.mlflow_tracking_uri).list_artifacts(record.mlflow_run_id)
    }
    assert {"confusion_matrix.png", "roc_curve.png", "summary.json"} <= artifacts
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    champion = mlflow.sklearn.load_model(f"models:/{model_name}@champion")
    assert list(champion.feature_names_in_) == [
        "Daily Time Spent on Site",
        "Age",
        "Area Income",
        "Daily Internet Usage",
        "Male",
    ]


def test_champion_moves_only_when_beaten(settings: Settings, model_name: str) -> None:
    run(settings, model_name, features=["Male"])  # a poor model becomes the first champion
    assert aliases(settings, model_name) == {"champion": "1"}

    run(settings, model_name)  # the full model beats it on the same held-out set
    assert aliases(settings, model_name) == {"champion": "2"}

    forced_worse = run(settings, model_name, features=["Male"])
    assert aliases(settings, model_name) == {"champion": "2", "challenger": "3"}
    assert "does not beat champion v2" in forced_worse.outputs["promote"]["reason"]

    same = run(settings, model_name)  # an equal score is not a win
    assert aliases(settings, model_name) == {"champion": "2", "challenger": "4"}
    assert same.outputs["promote"]["champion_score"] == pytest.approx(
        same.outputs["promote"]["score"]
    )


def test_malformed_rows_are_rejected_and_the_run_goes_on(
    settings: Settings, sessions, model_name: str, advertising_csv: Path, tmp_path: Path
) -> None:
    good = advertising_csv.read_bytes().rstrip(b"\n").split(b"\n")
    header, rows = good[0], good[1:]
    bad = [
        b"68.95,abc,61833.9,256.09,Wrong type,Town,0,Tunisia,2016-03-27 00:53:11,0",
        b"68.95,35,61833.9,256.09,Missing target,Town,0,Tunisia,2016-03-27 00:53:11,",
        b'68.95,35,61833.9,256.09,"Unclosed quote,Town,0,Tunisia,2016-03-27 00:53:11,1',
        b"68.95,35,61833.9,256.09,Caf\xe9 latin-1,Town,0,Tunisia,2016-03-27 00:53:11,1",
        b"68.95,35,61833.9,256.09," + b"x" * 10_000_000 + b",Town,0,Tunisia,2016-03-27 00:53:11,1",
        b"68.95,200,61833.9,256.09,Too old,Town,0,Tunisia,2016-03-27 00:53:11,1",
        b"68.95,35,61833.9,256.09,Bad flag,Town,2,Tunisia,2016-03-27 00:53:11,1",
        b"68.95,35,61833.9,256.09,Bad date,Town,0,Tunisia,27/03/2016,1",
    ]
    source = settings.home / "malformed.csv"  # the home is a folder runs may read
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"\n".join([header, *rows[:500], *bad, *rows[500:]]) + b"\n")

    outcome = run(settings, model_name, source=str(source))

    loaded = outcome.outputs["load"]
    assert loaded["dataset"].startswith("advertising@malformed-")  # a data set of its own
    assert (loaded["rows_inserted"], loaded["rows_rejected"]) == (1000, 8)
    assert outcome.outputs["summary"]["rows_rejected"] == 8
    assert outcome.outputs["evaluate"]["accuracy"] > 0.9  # trained on the 1,000 good rows
    with sessions() as session:
        reasons = dict(
            session.execute(
                select(Rejection.line, Rejection.reason).where(Rejection.stage == "load")
            ).all()
        )
        too_big = session.scalar(select(Rejection.raw_bytes).where(Rejection.line == 506))
        batch = session.scalars(select(DataLoad)).one()
        declared_items = session.scalar(
            select(func.count()).select_from(Item).where(Item.dataset == "advertising")
        )
    assert reasons[502] == "Age: 'abc' is not an integer"
    assert reasons[503] == "Clicked on Ad: missing value"
    assert "unclosed quote" in reasons[504]
    assert "not valid UTF-8" in reasons[505]
    assert "over the limit" in reasons[506] and too_big > 10_000_000
    assert reasons[507] == "Age: '200' is above the maximum 120"
    assert reasons[508] == "Male: '2' is not one of 0, 1"
    assert reasons[509] == "Timestamp: '27/03/2016' is not an ISO 8601 date or date and time"
    assert (batch.dataset, batch.status, batch.rows_inserted) == (
        loaded["dataset"],
        "completed",
        1000,
    )
    assert declared_items == 0  # the declared data set never saw the file
