"""Scores and plots of a classifier on a held-out set (figures built without pyplot, so no
display backend or global figure state is involved)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

BINARY_ONLY = frozenset({"precision", "recall", "f1", "roc_auc"})


def binary_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], y_score: Sequence[float], positive: Any = 1
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the ``positive`` class, and ROC AUC of its
    scores (its predicted probabilities)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, pos_label=positive, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, pos_label=positive, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, pos_label=positive, zero_division=0)),
        "roc_auc": float(roc_auc_score([value == positive for value in y_true], y_score)),
    }


def classification_metrics(
    model: Any, features: Any, y_true: Sequence[Any], positive: Any = None
) -> tuple[dict[str, float], list[Any], Any]:
    """The metrics of ``model`` on a held-out set, its predictions (the most probable class)
    and, for two classes, the scores of the positive class (default: the larger label):
    :func:`binary_metrics` for a model of two classes, :func:`multiclass_metrics` for more."""
    classes = list(model.classes_)
    probabilities = model.predict_proba(features)
    predicted = [classes[index] for index in probabilities.argmax(axis=1)]
    if len(classes) != 2:
        return multiclass_metrics(y_true, predicted), predicted, None
    positive = classes[-1] if positive is None else positive
    if positive not in classes:
        raise ValueError(f"positive class {positive!r} is not one of the labels {classes}")
    scores = probabilities[:, classes.index(positive)]
    return binary_metrics(y_true, predicted, scores, positive), predicted, scores


def metric_score(
    metric: str, model: Any, features: Any, y_true: Sequence[Any], positive: Any = None
) -> float:
    """One metric of ``model`` on a held-out set: what the champion rule compares."""
    metrics, predicted, _ = classification_metrics(model, features, y_true, positive)
    if metric not in metrics and metric not in BINARY_ONLY:
        metrics = multiclass_metrics(y_true, predicted)
    if metric not in metrics:
        classes = len(model.classes_)
        raise ValueError(f"metric {metric!r} needs two classes; the model knows {classes}")
    return metrics[metric]


def confusion_matrix_figure(y_true: Sequence[Any], y_pred: Sequence[Any], title: str) -> Figure:
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, ax=axes, colorbar=False)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def roc_figure(y_true: Sequence[Any], y_score: Sequence[float], title: str) -> Figure:
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    RocCurveDisplay.from_predictions(y_true, y_score, ax=axes)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def multiclass_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Accuracy, and F1 averaged over classes weighted by support and unweighted (macro)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def per_class_report(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, Any]:
    """Precision, recall, F1 and support of every class (scikit-learn's report as a dict)."""
    return classification_report(y_true, y_pred, output_dict=True, zero_division=0)
