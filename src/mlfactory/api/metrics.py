"""Prometheus metrics of the API (exported at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

PREDICTIONS = Counter(
    "mlfactory_predictions_total",
    "Predictions served, per pipeline, model version and label.",
    ["pipeline", "model", "version", "label"],
)
MODEL_LOAD_SECONDS = Histogram(
    "mlfactory_model_load_seconds",
    "Time to load a champion model from the registry.",
    ["pipeline", "model"],
)


def record_predictions(pipeline: str, model: str, version: str, labels: Iterable[str]) -> None:
    for label in labels:
        PREDICTIONS.labels(pipeline, model, version, label).inc()


def record_model_load(pipeline: str, model: str, seconds: float) -> None:
    MODEL_LOAD_SECONDS.labels(pipeline, model).observe(seconds)
