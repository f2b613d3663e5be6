"""Metrics read from the store when Prometheus scrapes: what the pipelines did and the state
they left, so Grafana can chart it without a database connection of its own.

- ``mlfactory_run_duration_seconds`` / ``mlfactory_step_duration_seconds``: the last ended run
  of each pipeline, and the last attempt of each of its steps;
- ``mlfactory_model_metric``: the metrics the last successful run of each pipeline recorded;
- ``mlfactory_rows_loaded``: rows seen by completed loads per data set and outcome;
- ``mlfactory_table_rows``: rows per table of the store;
- ``mlfactory_drift_psi`` / ``mlfactory_drift_severity`` / ``mlfactory_dataset_drift``: the
  latest drift report of each data set, per feature group.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store import (
    Annotation,
    DataLoad,
    DriftCheck,
    Item,
    ItemHistory,
    PipelineRun,
    Prediction,
    Rejection,
    TaskRun,
)

COUNTED_TABLES = (Item, ItemHistory, DataLoad, Rejection, Prediction, Annotation, PipelineRun)
SEVERITY_LEVELS = {"none": 0, "warning": 1, "alert": 2, "critical": 3}
LOAD_OUTCOMES = ("inserted", "updated", "unchanged", "rejected")


class StoreCollector(Collector):
    """The gauges above, from a handful of grouped queries per scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        with self._sessions() as session:
            yield from _runs(session)
            yield _loads(session)
            yield _tables(session)
            yield from _drift(session)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _last_runs(session: Session, *where: Any) -> list[PipelineRun]:
    newest = select(func.max(PipelineRun.id)).where(*where).group_by(PipelineRun.pipeline)
    return list(session.scalars(select(PipelineRun).where(PipelineRun.id.in_(newest))))


def _runs(session: Session) -> Iterator[Metric]:
    runs = _gauge(
        "mlfactory_run_duration_seconds",
        "Duration of the last ended run of each pipeline.",
        "pipeline",
        "status",
    )
    steps = _gauge(
        "mlfactory_step_duration_seconds",
        "Duration of the last attempt of each step of the last ended run of each pipeline.",
        "pipeline",
        "step",
        "status",
    )
    ended = _last_runs(session, PipelineRun.ended_at.is_not(None))
    for run in ended:
        assert run.ended_at is not None
        runs.add_metric([run.pipeline, run.status], (run.ended_at - run.started_at).total_seconds())
    by_run = {run.id: run.pipeline for run in ended}
    attempts = session.execute(
        select(TaskRun.run_id, TaskRun.step, TaskRun.status, TaskRun.duration_s)
        .where(TaskRun.run_id.in_(by_run), TaskRun.duration_s.is_not(None))
        .order_by(TaskRun.attempt)
    ).all()
    last = {(run_id, step): (status, seconds) for run_id, step, status, seconds in attempts}
    for (run_id, step), (status, seconds) in sorted(last.items()):
        steps.add_metric([by_run[run_id], step, status], seconds)
    metrics = _gauge(
        "mlfactory_model_metric",
        "Metrics recorded by the last successful run of each pipeline (e.g. accuracy, macro_f1).",
        "pipeline",
        "model",
        "version",
        "metric",
    )
    for run in _last_runs(session, PipelineRun.status == "success"):
        for name, value in sorted((run.metrics or {}).items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                labels = [run.pipeline, run.model_name or "", run.model_version or "", name]
                metrics.add_metric(labels, float(value))
    yield runs
    yield steps
    yield metrics


def _loads(session: Session) -> Metric:
    loaded = _gauge(
        "mlfactory_rows_loaded",
        "Rows seen by the completed loads of each data set, by outcome.",
        "dataset",
        "outcome",
    )
    columns = [func.sum(getattr(DataLoad, f"rows_{outcome}")) for outcome in LOAD_OUTCOMES]
    for dataset, *sums in session.execute(
        select(DataLoad.dataset, *columns)
        .where(DataLoad.status == "completed")
        .group_by(DataLoad.dataset)
    ):
        for outcome, total in zip(LOAD_OUTCOMES, sums, strict=True):
            loaded.add_metric([dataset, outcome], float(total or 0))
    return loaded


def _tables(session: Session) -> Metric:
    rows = _gauge("mlfactory_table_rows", "Rows in each table of the store.", "table")
    for table in COUNTED_TABLES:
        count = session.scalar(select(func.count()).select_from(table)) or 0
        rows.add_metric([table.__tablename__], float(count))
    return rows


def _drift(session: Session) -> Iterator[Metric]:
    psi = _gauge(
        "mlfactory_drift_psi",
        "PSI of each feature group in the latest drift report of each data set.",
        "dataset",
        "group",
    )
    level = _gauge(
        "mlfactory_drift_severity",
        "Severity of each feature group's drift: 0 none, 1 warning, 2 alert, 3 critical.",
        "dataset",
        "group",
    )
    drifted = _gauge(
        "mlfactory_dataset_drift",
        "Whether the latest drift report of each data set found data set drift (1) or not (0).",
        "dataset",
    )
    newest = select(func.max(DriftCheck.id)).group_by(DriftCheck.dataset)
    for check in session.scalars(select(DriftCheck).where(DriftCheck.id.in_(newest))):
        for group in check.report.get("groups", []):
            psi.add_metric([check.dataset, group["group"]], float(group["psi"]))
            level.add_metric(
                [check.dataset, group["group"]], SEVERITY_LEVELS.get(group["severity"], 0)
            )
        drifted.add_metric([check.dataset], 1.0 if check.dataset_drift else 0.0)
    yield psi
    yield level
    yield drifted
