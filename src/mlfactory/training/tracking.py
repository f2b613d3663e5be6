"""Connecting to MLflow: tracking and registry URI from settings, one experiment per pipeline."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from mlfactory.settings import Settings


def use_tracking(settings: Settings) -> MlflowClient:
    """Point MLflow (fluent API and client) at the configured tracking store and registry."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def experiment_id(name: str, settings: Settings) -> str:
    """The experiment ``name``, created with its artefacts under ``MLF_HOME`` when new (MLflow's
    own default would be a folder in the current directory)."""
    client = use_tracking(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(
        name, artifact_location=f"{settings.mlflow_artifacts_uri}/{name}"
    )
