"""The arXiv pipelines on the real papers: back-fill, training two ways, classification, drift
and maintenance, run through the local runner."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mlfactory.orchestration import run_pipeline
from mlfactory.orchestration.params import InvalidParams
from mlfactory.orchestration.registry import get_pipeline
from mlfactory.settings import Settings
from mlfactory.store import Item, PipelineRun, Prediction, utcnow
from mlfactory.store.tables import DriftCheck
from mlfactory.training.embeddings import embeddings_available
from mlfactory.training.tracking import use_tracking

pytestmark = pytest.mark.slow
SNAPSHOT_PAPERS = 993  # 1,000 rows of the CSV snapshot, 7 of them repeated


def run(settings: Settings, name: str, **params: Any):
    outcome = run_pipeline(get_pipeline(name), params, settings=settings)
    assert outcome.status == "success", outcome.error
    return outcome


def count(sessions, table, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where)) or 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_backfill_train_two_ways_classify_and_watch_drift(
    settings: Settings, sessions, model_name: str
) -> None:
    if not embeddings_available():
        pytest.fail("the embeddings extra is not installed (make install installs it)")
    loaded = run(settings, "arxiv_backfill").outputs["load"]
    assert loaded["rows_inserted"] == SNAPSHOT_PAPERS

    trained = run(settings, "arxiv_train", model_name=model_name).outputs
    candidates = {
        trained[step]["method"]: trained[step] for step in ("fit_tfidf", "fit_embeddings")
    }
    assert set(candidates) == {"tfidf", "embeddings"}
    for candidate in candidates.values():
        assert 0 < candidate["macro_f1"] <= 1
        assert candidate["evaluation_rows"] == trained["snapshot"]["evaluation"]["row_count"]
    best = max(candidates.values(), key=lambda candidate: candidate["macro_f1"])
    assert trained["train"]["method"] == best["method"]
    client = use_tracking(settings)
    version = client.get_model_version(model_name, trained["train"]["model_version"])
    assert version.run_id == best["mlflow_run_id"]  # the kept candidate's own MLflow run
    assert trained["promote"]["alias"] == "champion"
    assert set(trained["summary"]["candidates"]) == {"tfidf", "embeddings"}

    classified = run(settings, "arxiv_classify", model_name=model_name).outputs["classify"]
    assert classified["predicted"] == SNAPSHOT_PAPERS
    assert (
        run(settings, "arxiv_classify", model_name=model_name).outputs["classify"]["predicted"] == 0
    )

    # The snapshot's papers are a month old; then the recorded API answers bring papers from
    # physics, mathematics and more, far from the snapshot's computer vision and ML.
    with sessions.begin() as session:
        session.execute(update(Item).values(updated_at=utcnow() - timedelta(days=30)))
    fetched = run(settings, "arxiv_ingest", replay=True).outputs["fetch"]
    assert fetched["rows_inserted"] > 50
    run(settings, "arxiv_classify", model_name=model_name)
    report = run(settings, "arxiv_monitor", model_name=model_name).outputs["drift"]
    assert report["checked"]
    assert report["current_rows"] == fetched["rows_inserted"]
    assert set(report["psi"]) == {"text length", "predicted subject", "embedding"}
    assert report["psi"]["embedding"] >= 0.2  # out-of-domain papers: at least an alert
    assert report["severity"] in {"alert", "critical"}
    with sessions() as session:
        stored = session.get_one(DriftCheck, report["drift_report_id"])
        assert stored.severity == report["severity"]
        assert stored.report["current_rows"] == report["current_rows"]


def test_maintenance_dry_run_reports_then_purge_removes_old_outputs_only(
    settings: Settings, sessions, model_name: str
) -> None:
    run(settings, "arxiv_backfill")
    run(settings, "arxiv_train", model_name=model_name, methods=["tfidf"])
    # Before any classification the check still runs, on the text lengths alone.
    unclassified = run(settings, "arxiv_monitor", model_name=model_name, embeddings=False)
    assert set(unclassified.outputs["drift"]["psi"]) == {"text length"}
    run(settings, "arxiv_classify", model_name=model_name)
    with sessions.begin() as session:  # a run still going elsewhere: never purged
        going = PipelineRun(pipeline="arxiv_ingest", status="running", engine="airflow")
        session.add(going)
        session.flush()
        going_id = going.id
    runs_before = count(sessions, PipelineRun) - 1

    dry = run(settings, "arxiv_maintenance", everything=True).outputs["purge"]
    assert dry["dry_run"] is True
    assert dry["counts"]["predictions"] == SNAPSHOT_PAPERS
    assert dry["counts"]["pipeline_runs"] == runs_before  # every run but the purging one
    assert count(sessions, Prediction) == SNAPSHOT_PAPERS  # nothing went

    recent = run(settings, "arxiv_maintenance", older_than_days=1, dry_run=False)
    assert recent.outputs["purge"]["counts"] == {
        "predictions": 0,
        "annotations": 0,
        "pipeline_runs": 0,
    }
    purged = run(settings, "arxiv_maintenance", everything=True, dry_run=False)
    assert purged.outputs["purge"]["counts"]["predictions"] == SNAPSHOT_PAPERS
    assert count(sessions, Prediction) == 0
    assert count(sessions, Item, Item.dataset == "arxiv") == SNAPSHOT_PAPERS  # never purged
    with sessions() as session:
        left = session.scalars(select(PipelineRun.id)).all()
    assert sorted(left) == sorted([going_id, purged.run_id])
    again = run(settings, "arxiv_classify", model_name=model_name).outputs["classify"]
    assert again["predicted"] == SNAPSHOT_PAPERS  # purged articles are pending again


def test_maintenance_refuses_to_guess_what_to_purge(settings: Settings) -> None:
    with pytest.raises(InvalidParams, match="everything=true"):
        run_pipeline(
            get_pipeline("arxiv_maintenance"), {"older_than_days": None}, settings=settings
        )
