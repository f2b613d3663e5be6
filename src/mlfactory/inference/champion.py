"""The champion of a registered model: alias ``champion`` resolved to an explicit version.

The version is resolved first and the model loaded by that version (``models:/<name>/<version>``),
never by alias, so whoever uses the model knows exactly which version answered, even if the alias
moves while it loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.sklearn
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlfactory.errors import UserError
from mlfactory.settings import Settings

CHAMPION = "champion"
# What the registry answers for an unknown model name (RESOURCE_DOES_NOT_EXIST) or a model
# without the alias (INVALID_PARAMETER_VALUE on a local store); anything else is a real failure.
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class NoChampionError(UserError):
    """The registered model does not exist or has no version with alias ``champion``."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    model: Any  # the native scikit-learn estimator
    run_id: str


def registry_client(settings: Settings) -> MlflowClient:
    """A client of the configured registry; MLflow's global URIs are pointed at it too, because
    ``mlflow.sklearn.load_model`` resolves ``models:/`` URIs through them."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def champion_version(client: MlflowClient, model_name: str) -> tuple[str, str]:
    """The version that holds alias ``champion`` and its MLflow run id."""
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise NoChampionError(
                f"model {model_name!r} has no {CHAMPION!r} version in the registry: "
                "train and promote one first"
            ) from exc
        raise
    return str(version.version), str(version.run_id)


def load_champion(settings: Settings, model_name: str) -> LoadedModel:
    """Resolve alias ``champion`` of ``model_name`` to a version and load that version."""
    client = registry_client(settings)
    version, run_id = champion_version(client, model_name)
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    return LoadedModel(name=model_name, version=version, model=model, run_id=run_id)
