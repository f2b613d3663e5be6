"""The classifiers of the pipeline templates, as scikit-learn pipelines that take the frames of
``mlfactory.datasets.frames`` (float64 numbers, text categories, UTC datetimes, texts).

- numbers, integers, booleans: the median where a value may be missing, then (for the linear
  model) standardised;
- categories: "(missing)" where a value may be missing, then one-hot, rare and unseen values
  together;
- dates: days since 1970, month, weekday and hour, then as numbers;
- texts: TF-IDF word and character n-grams per column, or sentence embeddings of all of them.

When every input is a number that cannot be missing, the pipeline is only the scaler and the
model (no column transformer): the fastest to serve, and exactly a hand-written one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlfactory.training.text import tfidf_vectorizers

MISSING_CATEGORY = "(missing)"
MAX_CATEGORIES = 50  # one-hot columns per category at most; rarer values share one


@dataclass(frozen=True)
class ModelChoice:
    """The estimator at the end of a template's pipeline and its settings."""

    kind: str = "logistic_regression"  # | hist_gradient_boosting | random_forest
    c: float = 1.0  # logistic regression
    max_iter: int = 1000  # logistic regression
    n_estimators: int = 200
    max_depth: int | None = None
    learning_rate: float = 0.1
    class_weight: str | None = None
    seed: int = 42

    def estimator(self) -> Any:
        if self.kind == "logistic_regression":
            return LogisticRegression(
                C=self.c,
                max_iter=self.max_iter,
                random_state=self.seed,
                class_weight=self.class_weight,
            )
        if self.kind == "hist_gradient_boosting":
            return HistGradientBoostingClassifier(
                learning_rate=self.learning_rate,
                max_depth=self.max_depth,
                random_state=self.seed,
                class_weight=self.class_weight,
            )
        if self.kind == "random_forest":
            return RandomForestClassifier(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                random_state=self.seed,
                class_weight=self.class_weight,
            )
        raise ValueError(f"unknown model {self.kind!r}")

    @property
    def linear(self) -> bool:
        """The linear model wants standardised inputs and copes with sparse ones; trees want
        neither (gradient boosting refuses sparse input)."""
        return self.kind == "logistic_regression"


@dataclass(frozen=True)
class Inputs:
    """The model's input columns by kind, and which of them may be missing."""

    numbers: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    nullable: frozenset[str] = frozenset()

    @classmethod
    def of(cls, types: Mapping[str, str], nullable: Sequence[str] = ()) -> Inputs:
        """From column name -> declared type (number, integer, boolean, category, date, text)."""

        def named(*kinds: str) -> tuple[str, ...]:
            return tuple(name for name, kind in types.items() if kind in kinds)

        return cls(
            numbers=named("number", "integer", "boolean"),
            categories=named("category", "file"),
            dates=named("date"),
            texts=named("text"),
            nullable=frozenset(nullable),
        )


def classifier(inputs: Inputs, choice: ModelChoice, *, text_features: str = "tfidf") -> Pipeline:
    """The whole model: preprocessing of every input kind, then the chosen estimator."""
    estimator = choice.estimator()
    missing_numbers = bool(inputs.nullable & set(inputs.numbers))
    if not (inputs.categories or inputs.dates or inputs.texts or missing_numbers):
        steps = [("scale", StandardScaler())] if choice.linear else []
        return Pipeline([*steps, ("model", estimator)])
    parts: list[tuple[str, Any, Any]] = []
    if inputs.numbers:
        numbers = _numeric(impute=missing_numbers, scale=choice.linear)
        parts.append(("numbers", numbers, list(inputs.numbers)))
    if inputs.dates:
        dates = make_pipeline(
            FunctionTransformer(date_parts, feature_names_out=date_part_names),
            _numeric(impute=True, scale=choice.linear),
        )
        parts.append(("dates", dates, list(inputs.dates)))
    if inputs.categories:
        categories = make_pipeline(
            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
            OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                max_categories=MAX_CATEGORIES,
                sparse_output=choice.linear,
            ),
        )
        parts.append(("categories", categories, list(inputs.categories)))
    if inputs.texts:
        parts += _text_parts(inputs.texts, text_features)
    sparse = 0.3 if choice.linear else 0.0
    return Pipeline(
        [("features", ColumnTransformer(parts, sparse_threshold=sparse)), ("model", estimator)]
    )


def _numeric(*, impute: bool, scale: bool) -> Any:
    steps: list[Any] = []
    if impute:
        steps.append(SimpleImputer(strategy="median"))
    if scale:
        steps.append(StandardScaler())
    return make_pipeline(*steps) if steps else "passthrough"


def _text_parts(columns: Sequence[str], text_features: str) -> list[tuple[str, Any, Any]]:
    if text_features == "embeddings":
        from mlfactory.training.embeddings import SentenceEmbedder

        return [("embeddings", SentenceEmbedder(tuple(columns)), list(columns))]
    return tfidf_vectorizers(columns)


def date_parts(frame: pd.DataFrame) -> np.ndarray:
    """Each date column as days since 1970, month, weekday and hour (NaN where missing)."""
    parts = []
    for column in frame.columns:
        moments = pd.to_datetime(frame[column], utc=True)
        days = (moments - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1)
        parts += [days, moments.dt.month, moments.dt.day_of_week, moments.dt.hour]
    return np.column_stack([np.asarray(part, dtype="float64") for part in parts])


def date_part_names(transformer: Any, columns: Sequence[str]) -> list[str]:
    return [
        f"{column}_{part}" for column in columns for part in ("days", "month", "weekday", "hour")
    ]
