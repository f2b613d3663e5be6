"""The tabular template's work as a plain pandas + scikit-learn + MLflow script, without mlfactory.

Baseline of ``bench_tabular.py``, on the same CSV (the advertising rows with an ``id`` column):
read it with pandas; check types, ranges and choices as the declaration does, keeping the bad
rows aside with their reason; write the rows and the rejections into a SQLite file (the data
set's store); split 70/30 (stratified, seed 42); fit StandardScaler + LogisticRegression on the
same five features; log to a SQLite MLflow store under ``--home`` the params, the training data
as a dataset input, the model (signature, input example, pip requirements, registered), test
metrics, confusion matrix and ROC figures; make the version champion (scoring the champion
before it on the same test rows, when there is one); predict every row with the champion and
write the predictions into the SQLite file; write ``summary.json``.

    .venv/bin/python benchmarks/plain_tabular.py --home /tmp/plain --csv rows.csv
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import mlflow
import mlflow.data
import mlflow.sklearn
import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
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
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

NAME = "visits"
TARGET = "Clicked on Ad"
FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
RANGES = {
    "Daily Time Spent on Site": (0, 1440),
    "Age": (10, 120),
    "Area Income": (0, None),
    "Daily Internet Usage": (0, 1440),
}


def validated(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The good rows, typed, and the bad ones with their reason."""
    reasons = pd.Series("", index=frame.index)
    for column, (low, high) in RANGES.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < low) | ((values > high) if high is not None else False)
        reasons[bad] += f"{column} out of range; "
        frame[column] = values
    for column in ("Male", TARGET):
        values = pd.to_numeric(frame[column], errors="coerce")
        reasons[~values.isin([0, 1])] += f"{column} not 0 or 1; "
        frame[column] = values
    timestamps = pd.to_datetime(frame["Timestamp"], errors="coerce", format="ISO8601")
    reasons[timestamps.isna()] += "Timestamp not a date; "
    for column in ("Ad Topic Line", "City", "Country"):
        reasons[frame[column].isna()] += f"{column} missing; "
    bad = reasons != ""
    return frame[~bad], frame[bad].assign(reason=reasons[bad])


def figure() -> tuple[Figure, object]:
    fig = Figure(figsize=(4.5, 4))
    return fig, fig.subplots()


def main(home: Path, csv: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    good, bad = validated(pd.read_csv(csv))
    with sqlite3.connect(home / "store.db") as store:
        good.to_sql("items", store, if_exists="replace", index=False)
        bad.to_sql("rejections", store, if_exists="append", index=False)
    train, test = train_test_split(good, test_size=0.3, random_state=42, stratify=good[TARGET])
    x_train, y_train = train[FEATURES].astype("float64"), train[TARGET].astype(int)
    x_test, y_test = test[FEATURES].astype("float64"), test[TARGET].astype(int)
    model = Pipeline(
        [("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000, random_state=42))]
    )
    model.fit(x_train, y_train)
    train_accuracy = float(model.score(x_train, y_train))

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
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_params(
            {"features": ",".join(FEATURES), "C": 1.0, "max_iter": 1000, "train_rows": len(train)}
        )
        mlflow.log_metric("train_accuracy", train_accuracy)
        mlflow.log_input(mlflow.data.from_pandas(train, targets=TARGET), context="training")
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
        scores = model.predict_proba(x_test)[:, 1]
        predicted = model.predict(x_test)
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "precision": float(precision_score(y_test, predicted, zero_division=0)),
            "recall": float(recall_score(y_test, predicted, zero_division=0)),
            "f1": float(f1_score(y_test, predicted, zero_division=0)),
            "roc_auc": float(roc_auc_score(y_test, scores)),
        }
        mlflow.log_metrics({f"test_{name}": value for name, value in metrics.items()})
        cm_fig, cm_axes = figure()
        ConfusionMatrixDisplay.from_predictions(y_test, predicted, ax=cm_axes, colorbar=False)
        mlflow.log_figure(cm_fig, "confusion_matrix.png")
        roc_fig, roc_axes = figure()
        RocCurveDisplay.from_predictions(y_test, scores, ax=roc_axes)
        mlflow.log_figure(roc_fig, "roc_curve.png")

        try:
            champion = client.get_model_version_by_alias(NAME, "champion").version
        except MlflowException:
            champion = None
        alias = "champion"
        if champion is not None:
            old = mlflow.sklearn.load_model(f"models:/{NAME}/{champion}")
            if roc_auc_score(y_test, old.predict_proba(x_test)[:, 1]) >= metrics["roc_auc"]:
                alias = "challenger"
        client.set_registered_model_alias(NAME, alias, version)
        serving = model if alias == "champion" else old
        everything = good[FEATURES].astype("float64")
        probabilities = serving.predict_proba(everything)
        predictions = pd.DataFrame(
            {
                "id": good["id"],
                "label": probabilities.argmax(axis=1),
                "score": probabilities[:, 1],
                "version": version if alias == "champion" else champion,
            }
        )
        with sqlite3.connect(home / "store.db") as store:
            predictions.to_sql("predictions", store, if_exists="append", index=False)
        summary = {
            "train_score": train_accuracy,
            "test_score": metrics["accuracy"],
            "samples": {"train": len(train), "test": len(test)},
            "rejected": len(bad),
            "model": {"name": NAME, "version": version},
            "alias": alias,
        }
        mlflow.log_dict(summary, "summary.json")
        (home / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="Folder of the stores.")
    parser.add_argument("--csv", type=Path, required=True, help="The rows (bench_tabular.py).")
    args = parser.parse_args()
    main(args.home, args.csv)
