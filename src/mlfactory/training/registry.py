"""Logging a model to MLflow with its signature and input example, and registering it."""

from __future__ import annotations

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


def log_and_register(
    model: BaseEstimator,
    features: pd.DataFrame,
    registered_name: str,
    *,
    serialization_format: str = SKOPS,
) -> RegisteredModel:
    """Log ``model`` to the active run (signature inferred from ``features``) and register it
    as a new version of ``registered_name``.

    skops (MLflow's safe default) is right for small models; it takes minutes on a TF-IDF model
    with a large vocabulary, where cloudpickle takes under a second. Both this platform writes
    and reads the registry, so cloudpickle is acceptable there.
    """
    example = features.head(5)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=model_requirements(serialization_format),
        serialization_format=serialization_format,
        registered_model_name=registered_name,
    )
    return RegisteredModel(
        name=registered_name,
        version=str(info.registered_model_version),
        model_uri=f"models:/{registered_name}/{info.registered_model_version}",
        run_id=info.run_id,
    )


def load_model(model_uri: str) -> Any:
    """The native scikit-learn model behind ``models:/name/version`` (or any MLflow model URI)."""
    return mlflow.sklearn.load_model(model_uri)
