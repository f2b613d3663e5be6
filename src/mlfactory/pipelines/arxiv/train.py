"""``arxiv_train``: the top-level subject of a paper (``cs``, ``math``, ``stat``, ...) from its
title and abstract, trained two ways and the better one kept.

snapshot (fixed held-out evaluation set, class-balanced training set) -> fit_tfidf (TF-IDF word
and character n-grams, logistic regression) and fit_embeddings (all-MiniLM-L6-v2 sentence
embeddings, logistic regression), each scored on the held-out set -> train (register the one with
the better macro F1) -> promote (champion rule on the same set) -> summary. Weekly, and by hand.

The embeddings need the ``embeddings`` extra; without it that candidate is skipped and says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Serving, Step
from mlfactory.pipelines.arxiv.articles import DATASET, MODEL_NAME, TEXT_COLUMNS, article_features
from mlfactory.pipelines.common import (
    log_snapshots,
    promote_version,
    publish_summary,
    registered_output,
    take_snapshots,
    training_run,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline as ModelPipeline

PROMOTION_METRIC = "macro_f1"
Method = Literal["tfidf", "embeddings"]


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed of the evaluation set, balancing and the models.")
    evaluation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share held out once for evaluation."
    )
    balance: bool = Field(True, description="Oversample minority subjects for training.")
    c: float = Field(10.0, gt=0, description="Inverse regularisation of both classifiers.")
    methods: list[Method] = Field(
        default=["tfidf", "embeddings"], min_length=1, description="Candidate models to train."
    )
    model_name: str = Field(MODEL_NAME, min_length=1, description="Registered model name.")


def _params(ctx: Context) -> TrainParams:
    assert isinstance(ctx.params, TrainParams)
    return ctx.params


def snapshot(ctx: Context) -> dict[str, Any]:
    """The held-out evaluation set (carved once) and this run's training snapshot."""
    params = _params(ctx)
    return take_snapshots(
        ctx,
        DATASET,
        evaluation_fraction=params.evaluation_fraction,
        balance=params.balance,
        seed=params.seed,
    )


def fit_tfidf(ctx: Context) -> dict[str, Any]:
    """TF-IDF word (1-2) and character (2-5) n-grams of title and abstract, then a linear model."""
    from mlfactory.training.text import text_classifier

    params = _params(ctx)
    if "tfidf" not in params.methods:
        return {"method": "tfidf", "skipped": "not among the methods asked for"}
    return _fit_candidate(ctx, "tfidf", text_classifier(TEXT_COLUMNS, c=params.c, seed=params.seed))


def fit_embeddings(ctx: Context) -> dict[str, Any]:
    """Sentence embeddings (all-MiniLM-L6-v2, offline) of title and abstract, then a linear model."""
    from mlfactory.training.embeddings import (
        REQUIREMENTS,
        embedding_classifier,
        embeddings_available,
    )

    params = _params(ctx)
    if "embeddings" not in params.methods:
        return {"method": "embeddings", "skipped": "not among the methods asked for"}
    if not embeddings_available():
        reason = "sentence-transformers is not installed: pip install 'mlfactory[embeddings]'"
        ctx.log.warning("embeddings candidate skipped: %s", reason)
        return {"method": "embeddings", "skipped": reason}
    model = embedding_classifier(TEXT_COLUMNS, c=params.c, seed=params.seed)
    return _fit_candidate(ctx, "embeddings", model, REQUIREMENTS)


def _fit_candidate(
    ctx: Context, method: str, model: ModelPipeline, requirements: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Fit on the training snapshot, score on the held-out set, log both sets, the scores and
    the model (not registered yet) to an MLflow run of its own."""
    import mlflow
    import pandas as pd

    from mlfactory.training.evaluate import (
        confusion_matrix_figure,
        multiclass_metrics,
        per_class_report,
    )
    from mlfactory.training.registry import CLOUDPICKLE, log_model

    snapshots = ctx.output_of("snapshot")
    training = pd.read_parquet(snapshots["training"]["path"])
    evaluation = pd.read_parquet(snapshots["evaluation"]["path"])
    features = article_features(training)
    began = time.perf_counter()
    model.fit(features, training["label"])
    fit_seconds = time.perf_counter() - began
    predicted = model.predict(article_features(evaluation))
    metrics = multiclass_metrics(evaluation["label"], predicted)
    title = f"{ctx.pipeline} {method} (held-out set, {len(evaluation)} papers)"
    with training_run(ctx, candidate=method):
        params = _params(ctx)
        mlflow.log_params(
            {"method": method, "C": params.c, "balance": params.balance, "seed": params.seed}
        )
        mlflow.log_params({"train_rows": len(training), "evaluation_rows": len(evaluation)})
        log_snapshots(DATASET, snapshots)
        mlflow.log_metrics({f"eval_{name}": value for name, value in metrics.items()})
        mlflow.log_metric("fit_seconds", fit_seconds)
        mlflow.log_dict(per_class_report(evaluation["label"], predicted), "per_class_report.json")
        mlflow.log_figure(
            confusion_matrix_figure(evaluation["label"], predicted, title), "confusion_matrix.png"
        )
        logged = log_model(
            model, features, serialization_format=CLOUDPICKLE, extra_requirements=requirements
        )
    return {
        "method": method,
        "model_uri": logged.model_uri,
        "mlflow_run_id": logged.run_id,
        "train_rows": len(training),
        "evaluation_rows": len(evaluation),
        "fit_seconds": round(fit_seconds, 3),
        **metrics,
    }


def train(ctx: Context) -> dict[str, Any]:
    """Register the candidate with the better held-out macro F1 (TF-IDF on a tie: it is cheaper)."""
    from mlfactory.training.registry import LoggedModel, register

    fitted = [ctx.output_of("fit_tfidf"), ctx.output_of("fit_embeddings")]
    candidates = [output for output in fitted if "skipped" not in output]
    if not candidates:
        raise ValueError(
            "no candidate model was trained: " + "; ".join(o["skipped"] for o in fitted)
        )
    best = max(candidates, key=lambda output: output[PROMOTION_METRIC])  # first of equals
    registered = register(
        LoggedModel(best["model_uri"], best["mlflow_run_id"]), _params(ctx).model_name
    )
    ctx.update_run(metrics={name: best[name] for name in ("accuracy", "weighted_f1", "macro_f1")})
    return registered_output(
        ctx,
        registered,
        method=best["method"],
        macro_f1=best["macro_f1"],
        weighted_f1=best["weighted_f1"],
        candidates={output["method"]: output[PROMOTION_METRIC] for output in candidates},
    )


def promote(ctx: Context) -> dict[str, Any]:
    """Champion only if the new version beats the champion's macro F1 on the held-out set."""
    import pandas as pd
    from sklearn.metrics import f1_score

    frame = pd.read_parquet(ctx.output_of("snapshot")["evaluation"]["path"])
    features = article_features(frame)

    def macro_f1(model: Any) -> float:
        return float(f1_score(frame["label"], model.predict(features), average="macro"))

    trained = ctx.output_of("train")
    return promote_version(
        ctx,
        _params(ctx).model_name,
        trained["model_version"],
        metric=PROMOTION_METRIC,
        score=trained["macro_f1"],
        score_model=macro_f1,
    )


def summary(ctx: Context) -> dict[str, Any]:
    """Both candidates' scores, the one kept, and the champion decision."""
    snapshots, trained = ctx.output_of("snapshot"), ctx.output_of("train")
    report = {
        "training_rows": snapshots["training"]["row_count"],
        "training_classes": snapshots["training"]["class_counts"],
        "evaluation_rows": snapshots["evaluation"]["row_count"],
        "candidates": {
            output["method"]: output.get("skipped")
            or {name: output[name] for name in ("macro_f1", "weighted_f1", "fit_seconds")}
            for output in (ctx.output_of("fit_tfidf"), ctx.output_of("fit_embeddings"))
        },
        "kept": trained["method"],
        "macro_f1": trained["macro_f1"],
        "model": {"name": _params(ctx).model_name, "version": trained["model_version"]},
        "alias": ctx.output_of("promote")["alias"],
    }
    return publish_summary(ctx, report, trained["mlflow_run_id"])


pipeline = Pipeline(
    name="arxiv_train",
    description=__doc__ or "",
    schedule="@weekly",
    params=TrainParams,
    retries=1,
    retry_delay=5.0,
    tags=("arxiv", "text", "multiclass"),
    serving=Serving(model_name=MODEL_NAME, to_features=article_features),
    steps=(
        Step("snapshot", snapshot),
        Step("fit_tfidf", fit_tfidf, needs=("snapshot",)),
        Step("fit_embeddings", fit_embeddings, needs=("snapshot",)),
        Step("train", train, needs=("fit_tfidf", "fit_embeddings")),
        Step("promote", promote, needs=("train", "snapshot")),
        Step(
            "summary",
            summary,
            needs=("snapshot", "fit_tfidf", "fit_embeddings", "train", "promote"),
        ),
    ),
)
