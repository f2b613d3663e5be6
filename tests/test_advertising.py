"""The advertising pipeline end to end on the real data: store, MLflow registry, champion rule."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from mlfactory.orchestration import run_pipeline
from mlfactory.pipelines.advertising import pipeline
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, PipelineRun, Rejection, TaskRun

pytestmark = pytest.mark.slow


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
        "validate",
        "split",
        "train",
        "evaluate",
        "promote",
        "summary",
    ]
    assert {s.status for s in steps} == {"success"}
    assert items == 1000
    assert record.model_name == model_name and record.model_version == "1"
    assert record.metrics["accuracy"] > 0.9 and record.metrics["roc_auc"] > 0.95
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
    ]
    source = tmp_path / "malformed.csv"
    source.write_bytes(b"\n".join([header, *rows[:500], *bad, *rows[500:]]) + b"\n")

    outcome = run(settings, model_name, source=str(source))

    assert outcome.outputs["load"]["rows_rejected"] == 3
    assert outcome.outputs["validate"] == {
        **outcome.outputs["validate"],
        "valid_rows": 1000,
        "rejected_rows": 2,
    }
    assert outcome.outputs["summary"]["rows_rejected"] == 5
    with sessions() as session:
        reasons = session.execute(
            select(
                Rejection.stage,
                Rejection.line,
                Rejection.key,
                Rejection.reason,
                Rejection.raw_bytes,
            ).order_by(Rejection.id)
        ).all()
        batch = session.scalars(select(DataLoad)).one()
    by_stage = {(r.stage, r.line or int(r.key)): r for r in reasons}
    assert "unclosed quote" in by_stage[("load", 504)].reason
    assert "not valid UTF-8" in by_stage[("load", 505)].reason
    assert "over the limit" in by_stage[("load", 506)].reason
    assert by_stage[("load", 506)].raw_bytes > 10_000_000
    assert "Age: Input should be a valid integer" in by_stage[("validate", 502)].reason
    assert "Clicked on Ad" in by_stage[("validate", 503)].reason
    assert (batch.status, batch.rows_inserted, batch.rows_rejected) == ("completed", 1002, 3)
