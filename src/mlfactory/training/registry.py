"""Logging a model to MLflow with its signature and input example, and registering it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    model_uri: str
    run_id: str


SKOPS = "skops"
CLOUDPICKLE = "cloudpickle"


def model_requirements(serialization_format: str = SKOPS) -> list[str]:
    """Pinned requirements of a scikit-learn model, given so that MLflow does not spend seconds
    inferring them in a subprocess (and wrongly adding test tools)."""
    return [
        f"mlflow=={mlflow.__version__}",
        *mlflow.sklearn.get_default_pip_requirements(
            include_cloudpickle=serialization_format == CLOUDPICKLE,
            include_skops=serialization_format == SKOPS,
        ),
    ]


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to an MLflow run, not (yet) a version of a registered model."""

    model_uri: str  # models:/m-<id>
    run_id: str


def log_model(
    model: BaseEstimator,
    features: pd.DataFrame,
    *,
    serialization_format: str = SKOPS,
    extra_requirements: tuple[str, ...] = (),
) -> LoggedModel:
    """Log ``model`` to the active run with a signature inferred from ``features`` and an input
    example.

    skops (MLflow's safe default) is right for small models; it takes minutes on a TF-IDF model
    with a large vocabulary, where cloudpickle takes under a second. Both this platform writes
    and reads the registry, so cloudpickle is acceptable there.
    """
    example = features.head(5)
    with _cloudpickle_warning_off():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=[*model_requirements(serialization_format), *extra_requirements],
            serialization_format=serialization_format,
        )
    return LoggedModel(model_uri=info.model_uri, run_id=info.run_id)


@contextmanager
def _cloudpickle_warning_off() -> Iterator[None]:
    """MLflow warns at every cloudpickle save that pickles run code when loaded: a choice made
    above on purpose, which would otherwise fill every run's output."""
    logger = logging.getLogger("mlflow.sklearn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def register(logged: LoggedModel, registered_name: str) -> RegisteredModel:
    """A new version of ``registered_name`` from a logged model."""
    version = mlflow.register_model(logged.model_uri, registered_name).version
    return RegisteredModel(
        name=registered_name,
        version=str(version),
        model_uri=f"models:/{registered_name}/{version}",
        run_id=logged.run_id,
    )


def log_and_register(
    model: BaseEstimator,
    features: pd.DataFrame,
    registered_name: str,
    *,
    serialization_format: str = SKOPS,
) -> RegisteredModel:
    """Log ``model`` to the active run and register it as a new version of ``registered_name``."""
    logged = log_model(model, features, serialization_format=serialization_format)
    return register(logged, registered_name)


def load_model(model_uri: str) -> Any:
    """The native scikit-learn model behind ``models:/name/version`` (or any MLflow model URI)."""
    return mlflow.sklearn.load_model(model_uri)
