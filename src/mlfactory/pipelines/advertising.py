"""``advertising``: will this user click the ad? Logistic regression on the Advertising click data.

load -> validate -> split -> train -> evaluate -> promote -> summary, daily.

Features: the four usage figures and ``Male``. ``Ad Topic Line`` and ``City`` are (near) unique
per row, ``Country`` has ~240 values for 1,000 rows and ``Timestamp`` is spread evenly over the
period: none of them carries a signal a linear model could generalise from.

Heavy libraries (pandas, scikit-learn, MLflow) are imported inside the steps: importing this
module must stay cheap, because Airflow imports it every time it parses its DAG folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlfactory.orchestration import Context, Pipeline, Serving, Step
from mlfactory.pipelines.common import (
    promote_trained,
    publish_summary,
    registered_output,
    training_run,
)

if TYPE_CHECKING:
    import pandas as pd

DATASET = "advertising"
TARGET = "Clicked on Ad"
FEATURES = ("Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male")
PROMOTION_METRIC = "roc_auc"


class AdvertisingRow(BaseModel):
    """One valid row of the source: types, ranges and no missing values."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    daily_time_spent_on_site: float = Field(alias="Daily Time Spent on Site", ge=0, le=24 * 60)
    age: int = Field(alias="Age", ge=10, le=120)
    area_income: float = Field(alias="Area Income", ge=0)
    daily_internet_usage: float = Field(alias="Daily Internet Usage", ge=0, le=24 * 60)
    ad_topic_line: str = Field(alias="Ad Topic Line", min_length=1)
    city: str = Field(alias="City", min_length=1)
    male: Literal[0, 1] = Field(alias="Male")
    country: str = Field(alias="Country", min_length=1)
    timestamp: datetime = Field(alias="Timestamp")
    clicked_on_ad: Literal[0, 1] = Field(alias=TARGET)

    @field_validator("male", "clicked_on_ad", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip() in {"0", "1"} else value


class AdvertisingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(
        None, description="A CSV file to load instead of the registered advertising data set."
    )
    test_size: float = Field(0.3, gt=0, lt=1, description="Share of rows held out for evaluation.")
    seed: int = Field(42, description="Seed of the stratified split.")
    features: list[str] = Field(list(FEATURES), min_length=1, description="Model inputs.")
    c: float = Field(1.0, gt=0, description="Inverse regularisation strength of the model.")
    model_name: str = Field(DATASET, min_length=1, description="Registered model name.")

    @field_validator("features")
    @classmethod
    def _known_features(cls, features: list[str]) -> list[str]:
        unknown = sorted(set(features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose among {list(FEATURES)}")
        return features


def _params(ctx: Context) -> AdvertisingParams:
    assert isinstance(ctx.params, AdvertisingParams)
    return ctx.params


def load(ctx: Context) -> dict[str, Any]:
    """Read the source CSV into the store as one audited batch; unreadable rows are rejected."""
    from mlfactory.ingest.loader import load_batch
    from mlfactory.ingest.sources import read_advertising

    source = _params(ctx).source
    path = Path(source).expanduser() if source else None
    result = load_batch(
        ctx.sessions,
        DATASET,
        read_advertising(ctx.settings, path),
        source=str(path) if path else DATASET,
        run_id=ctx.run_id,
    )
    return result.as_dict()


def validate(ctx: Context) -> dict[str, Any]:
    """Type-check every current row; invalid ones are rejected with a reason, the run goes on."""
    import pandas as pd

    from mlfactory.ingest.validate import validate_items

    result = validate_items(
        ctx.sessions,
        DATASET,
        AdvertisingRow,
        batch_id=ctx.output_of("load")["batch_id"],
        run_id=ctx.run_id,
    )
    if not result.rows:
        raise ValueError(f"no valid rows in data set {DATASET!r}; see the rejections")
    path = ctx.artifact_dir / "validated.parquet"
    pd.DataFrame(result.rows, index=result.keys).to_parquet(path)
    return {"path": str(path), "valid_rows": len(result.rows), "rejected_rows": result.rejected}


def split(ctx: Context) -> dict[str, Any]:
    """Seeded, stratified train/test split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    params = _params(ctx)
    frame = pd.read_parquet(ctx.output_of("validate")["path"])
    train, test = train_test_split(
        frame, test_size=params.test_size, random_state=params.seed, stratify=frame[TARGET]
    )
    paths = {"train": ctx.artifact_dir / "train.parquet", "test": ctx.artifact_dir / "test.parquet"}
    train.to_parquet(paths["train"])
    test.to_parquet(paths["test"])
    return {
        "train_path": str(paths["train"]),
        "test_path": str(paths["test"]),
        "train_rows": len(train),
        "test_rows": len(test),
        "train_classes": _class_counts(train),
        "test_classes": _class_counts(test),
    }


def train(ctx: Context) -> dict[str, Any]:
    """Scaling + logistic regression, logged to MLflow and registered as a new version."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlfactory.training.registry import log_and_register

    params = _params(ctx)
    frame = pd.read_parquet(ctx.output_of("split")["train_path"])
    # Doubles, not integers, in the model's input schema: an integer column cannot carry a
    # missing value, so MLflow's schema would refuse requests that a double schema accepts.
    features, target = frame[params.features].astype("float64"), frame[TARGET]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=params.c, max_iter=1000, random_state=42)
    )
    model.fit(features, target)
    train_accuracy = float(model.score(features, target))
    with training_run(ctx):
        mlflow.log_params(
            {
                "features": ",".join(params.features),
                "C": params.c,
                "max_iter": 1000,
                "random_state": 42,
                "test_size": params.test_size,
                "seed": params.seed,
                "train_rows": len(frame),
            }
        )
        mlflow.log_metric("train_accuracy", train_accuracy)
        registered = log_and_register(model, features, params.model_name)
    return registered_output(ctx, registered, train_accuracy=train_accuracy)


def evaluate(ctx: Context) -> dict[str, Any]:
    """Scores on the test split, logged to the training run with a confusion matrix and ROC."""
    import pandas as pd

    from mlfactory.training.evaluate import binary_metrics, confusion_matrix_figure, roc_figure
    from mlfactory.training.registry import load_model
    from mlfactory.training.tracking import log_to_run, use_tracking

    use_tracking(ctx.settings)
    trained = ctx.output_of("train")
    model = load_model(trained["model_uri"])
    test = pd.read_parquet(ctx.output_of("split")["test_path"])
    features = test[list(model.feature_names_in_)]
    predicted, scores = model.predict(features), model.predict_proba(features)[:, 1]
    metrics = binary_metrics(test[TARGET], predicted, scores)
    title = f"{ctx.pipeline} v{trained['model_version']}"
    log_to_run(
        ctx.settings,
        trained["mlflow_run_id"],
        metrics={f"test_{name}": value for name, value in metrics.items()},
        figures={
            "confusion_matrix.png": confusion_matrix_figure(test[TARGET], predicted, title),
            "roc_curve.png": roc_figure(test[TARGET], scores, title),
        },
    )
    ctx.update_run(metrics=metrics)
    return metrics


def promote(ctx: Context) -> dict[str, Any]:
    """Champion only if the new version beats the champion on this run's test split."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    test = pd.read_parquet(ctx.output_of("split")["test_path"])

    def score_on_test(model: Any) -> float:
        features = test[list(model.feature_names_in_)]
        return float(roc_auc_score(test[TARGET], model.predict_proba(features)[:, 1]))

    return promote_trained(ctx, _params(ctx).model_name, PROMOTION_METRIC, score_on_test)


def summary(ctx: Context) -> dict[str, Any]:
    """Train and test scores, their difference, sample and class counts: an artefact and the run
    record."""
    splits, trained = ctx.output_of("split"), ctx.output_of("train")
    test_accuracy = ctx.output_of("evaluate")["accuracy"]
    report = {
        "train_score": trained["train_accuracy"],
        "test_score": test_accuracy,
        "difference": trained["train_accuracy"] - test_accuracy,
        "samples": {"train": splits["train_rows"], "test": splits["test_rows"]},
        "class_counts": {"train": splits["train_classes"], "test": splits["test_classes"]},
        "rows_loaded": ctx.output_of("load")["rows_seen"],
        "rows_rejected": ctx.output_of("load")["rows_rejected"]
        + ctx.output_of("validate")["rejected_rows"],
        "model": {"name": _params(ctx).model_name, "version": trained["model_version"]},
        "alias": ctx.output_of("promote")["alias"],
    }
    return publish_summary(ctx, report)


def _class_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {
        str(label): int(count) for label, count in frame[TARGET].value_counts().sort_index().items()
    }


pipeline = Pipeline(
    name="advertising",
    description=__doc__ or "",
    schedule="@daily",
    params=AdvertisingParams,
    retries=1,
    retry_delay=5.0,
    tags=("tabular", "binary-classification"),
    serving=Serving(model_name=DATASET),
    steps=(
        Step("load", load),
        Step("validate", validate, needs=("load",)),
        Step("split", split, needs=("validate",)),
        Step("train", train, needs=("split",)),
        Step("evaluate", evaluate, needs=("train", "split")),
        Step("promote", promote, needs=("train", "split", "evaluate")),
        Step(
            "summary", summary, needs=("load", "validate", "split", "train", "evaluate", "promote")
        ),
    ),
)
