"""The MLflow model registry as the API reads it: the champion of a model, and the MLflow run
behind a model version (the pipeline run it tagged, its metrics, the data sets it trained on).

Lookups are single indexed reads, cheap enough to make per request or per scrape. A registry
that does not answer raises :class:`RegistryUnavailable`; a model or version it does not know is
``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlfactory.api.deps import SettingsDep
from mlfactory.inference.champion import NoChampionError, champion_version, registry_client
from mlfactory.settings import Settings

# What the registry answers for an unknown name or version; anything else is a real failure.
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
PIPELINE_RUN_TAG = "mlfactory.run_id"  # set on the MLflow run by the pipelines' train steps
SNAPSHOT_DIGEST_CHARS = 32  # a snapshot logged as a dataset input keeps this much of its digest


class RegistryUnavailable(Exception):
    """The registry did not answer (unreachable, misconfigured); the message says how."""


@dataclass(frozen=True)
class Champion:
    model_name: str
    version: str
    mlflow_run_id: str


@dataclass(frozen=True)
class VersionRun:
    """The MLflow run that produced a model version."""

    mlflow_run_id: str
    pipeline_run_id: int | None
    metrics: dict[str, float]
    dataset_digests: tuple[str, ...]
    """MLflow's digests of the run's dataset inputs that can be snapshots': a snapshot logs the
    first 32 characters of its own digest there (see ``mlfactory.training.datasets``); MLflow's
    own digests are shorter."""


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = registry_client(self._settings)
        return self._client

    def champion(self, model_name: str) -> Champion | None:
        try:
            version, run_id = champion_version(self.client, model_name)
        except NoChampionError:
            return None
        except Exception as exc:
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return Champion(model_name, version, run_id)

    def version_run(self, model_name: str, version: str) -> VersionRun | None:
        try:
            run_id = self.client.get_model_version(model_name, version).run_id
            if not run_id:
                return None
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in _NOT_FOUND:
                return None
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        tag = run.data.tags.get(PIPELINE_RUN_TAG, "")
        inputs = run.inputs.dataset_inputs if run.inputs else []
        return VersionRun(
            mlflow_run_id=run_id,
            pipeline_run_id=int(tag) if tag.isdigit() else None,
            metrics=dict(run.data.metrics),
            dataset_digests=tuple(
                entry.dataset.digest
                for entry in inputs
                if len(entry.dataset.digest or "") >= SNAPSHOT_DIGEST_CHARS
            ),
        )


def get_registry(settings: SettingsDep) -> ModelRegistry:
    return ModelRegistry(settings)


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
