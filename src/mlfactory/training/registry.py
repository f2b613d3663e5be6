"""Logging a model to MLflow with its signature and input example, and registering it."""

from __future__ import annotations

from dataclasses import dataclass

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


def model_requirements() -> list[str]:
    """Pinned requirements of a scikit-learn model, given so that MLflow does not spend seconds
    inferring them in a subprocess (and wrongly adding test tools)."""
    return [
        f"mlflow=={mlflow.__version__}",
        *mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    ]


def log_and_register(
    model: BaseEstimator, features: pd.DataFrame, registered_name: str
) -> RegisteredModel:
    """Log ``model`` to the active run (signature inferred from ``features``) and register it
    as a new version of ``registered_name``."""
    example = features.head(5)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=model_requirements(),
        registered_model_name=registered_name,
    )
    return RegisteredModel(
        name=registered_name,
        version=str(info.registered_model_version),
        model_uri=f"models:/{registered_name}/{info.registered_model_version}",
        run_id=info.run_id,
    )
