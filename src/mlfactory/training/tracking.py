"""Connecting to MLflow: tracking and registry URI from settings, one experiment per pipeline."""

from __future__ import annotations

from typing import Any

import mlflow
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from mlfactory.settings import Settings


def use_tracking(settings: Settings) -> MlflowClient:
    """Point MLflow (fluent API and client) at the configured tracking store and registry."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def experiment_id(name: str, settings: Settings) -> str:
    """The experiment ``name``. A new one keeps its artefacts where the tracking server says
    (an ``mlflow server`` proxies them to its own store: every worker of a cluster reads what
    another wrote), or, on a local store, under ``MLF_HOME`` (MLflow's own default would be a
    folder in the current directory)."""
    client = use_tracking(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        return client.create_experiment(name)
    return client.create_experiment(
        name, artifact_location=f"{settings.mlflow_artifacts_uri}/{name}"
    )


def log_to_run(
    settings: Settings,
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    dicts: dict[str, Any] | None = None,
    figures: dict[str, Figure] | None = None,
) -> None:
    """Add metrics, JSON artefacts and figures to an MLflow run by id: steps after training
    may run in other processes (Airflow workers), so each resumes the run it needs."""
    use_tracking(settings)
    with mlflow.start_run(run_id=run_id):
        if metrics:
            mlflow.log_metrics(metrics)
        for path, value in (dicts or {}).items():
            mlflow.log_dict(value, path)
        for path, figure in (figures or {}).items():
            mlflow.log_figure(figure, path)
