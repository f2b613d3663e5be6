"""The advertising run as a plain script: the same sklearn + MLflow work, without mlfactory.

Baseline of ``bench_advertising_e2e.py``. It reads the CSV with pandas, drops incomplete rows,
splits 70/30 (stratified, seed 42), fits StandardScaler + LogisticRegression on the same five
features, and logs to a SQLite MLflow store under ``--home``: params, train accuracy, the model
(signature, input example, explicit pip requirements, registered), test metrics, confusion matrix
and ROC figures, the ``champion`` alias and ``summary.json``.

    .venv/bin/python benchmarks/plain_advertising.py --home /tmp/plain-home
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

NAME = "advertising"
TARGET = "Clicked on Ad"
FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
DEFAULT_DATASETS_DIR = "/work/shared/datasets"


def figure() -> tuple[Figure, Axes]:
    """A pyplot-free figure and its axes."""
    fig = Figure(figsize=(4.5, 4))
    return fig, fig.subplots()


def main(home: Path, csv: Path) -> None:
    """Train, evaluate, log, register and promote one model with MLflow under ``home``."""
    frame = pd.read_csv(csv).dropna()
    train, test = train_test_split(frame, test_size=0.3, random_state=42, stratify=frame[TARGET])
    x_train, y_train = train[FEATURES].astype("float64"), train[TARGET]
    x_test, y_test = test[FEATURES].astype("float64"), test[TARGET]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=42))
    model.fit(x_train, y_train)
    train_accuracy = float(model.score(x_train, y_train))

    home.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name(NAME)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(
            NAME, artifact_location=(home.resolve() / "artifacts" / NAME).as_uri()
        )
    )
    mlflow.set_experiment(experiment_id=experiment_id)

    with mlflow.start_run():
        mlflow.log_params(
            {
                "features": ",".join(FEATURES),
                "C": 1.0,
                "max_iter": 1000,
                "random_state": 42,
                "test_size": 0.3,
                "seed": 42,
                "train_rows": len(train),
            }
        )
        mlflow.log_metric("train_accuracy", train_accuracy)
        example = x_train.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                *mlflow.sklearn.get_default_pip_requirements(include_skops=True),
            ],
            registered_model_name=NAME,
        )
        version = str(info.registered_model_version)

        predicted, scores = model.predict(x_test), model.predict_proba(x_test)[:, 1]
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "precision": float(precision_score(y_test, predicted, zero_division=0)),
            "recall": float(recall_score(y_test, predicted, zero_division=0)),
            "f1": float(f1_score(y_test, predicted, zero_division=0)),
            "roc_auc": float(roc_auc_score(y_test, scores)),
        }
        mlflow.log_metrics({f"test_{name}": value for name, value in metrics.items()})
        title = f"{NAME} v{version}"
        cm_fig, cm_axes = figure()
        ConfusionMatrixDisplay.from_predictions(y_test, predicted, ax=cm_axes, colorbar=False)
        cm_axes.set_title(title)
        cm_fig.tight_layout()
        mlflow.log_figure(cm_fig, "confusion_matrix.png")
        roc_fig, roc_axes = figure()
        RocCurveDisplay.from_predictions(y_test, scores, ax=roc_axes)
        roc_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        roc_axes.set_title(title)
        roc_fig.tight_layout()
        mlflow.log_figure(roc_fig, "roc_curve.png")

        client.set_registered_model_alias(NAME, "champion", version)
        mlflow.log_dict(
            {
                "train_score": train_accuracy,
                "test_score": metrics["accuracy"],
                "difference": train_accuracy - metrics["accuracy"],
                "samples": {"train": len(train), "test": len(test)},
                "model": {"name": NAME, "version": version},
                "alias": "champion",
            },
            "summary.json",
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="Folder of the MLflow store.")
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path(os.environ.get("MLF_DATASETS_DIR", DEFAULT_DATASETS_DIR))
        / NAME
        / "advertising.csv",
        help="Source file (default: $MLF_DATASETS_DIR/advertising/advertising.csv).",
    )
    args = parser.parse_args()
    main(args.home, args.csv)
