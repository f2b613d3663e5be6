"""What a project file declares: data sets (source, key, label, typed columns, load mode) and
pipelines made from a template. Pydantic checks each declaration on its own; ``project.py`` reads
the files, checks what declarations say of each other and names the file and line of a mistake.

A column is written ``Age: integer`` or ``Age: {type: integer, min: 0, nullable: true}``; a label
``label: Exited`` or ``label: {column: Stars, map: {1: bad, 5: good}}``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ColumnType = Literal["number", "integer", "category", "text", "date", "boolean", "file"]
KeyRule = Literal["content", "line", "source"]
LoadMode = Literal["upsert", "append", "replace"]
Template = Literal["tabular_classification", "text_classification"]
Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "weighted_f1", "macro_f1"]

FILE_KINDS = ("csv", "jsonl", "parquet")
FOLDER_KIND = "folder"
NUMERIC_TYPES = frozenset({"number", "integer"})
TABULAR_TYPES = frozenset({"number", "integer", "category", "boolean", "date"})
"""Column types the tabular template turns into features."""
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Column(BaseModel):
    """A typed column; every value of a loaded row and of a prediction request is checked."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType
    nullable: bool = Field(False, description="A row may have no value (imputed in training).")
    min: int | float | datetime | date | None = Field(None, description="Smallest value allowed.")
    max: int | float | datetime | date | None = Field(None, description="Largest value allowed.")
    choices: list[str | int | float | bool] | None = Field(None, min_length=1)
    pattern: str | None = Field(None, description="A regular expression the whole text matches.")
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _constraints_fit_the_type(self) -> Column:
        numeric = self.type in NUMERIC_TYPES
        if (self.min is not None or self.max is not None) and not (numeric or self.type == "date"):
            raise ValueError(f"min and max apply to numbers, integers and dates, not {self.type}")
        for bound in (self.min, self.max):
            if bound is not None and numeric != isinstance(bound, int | float):
                raise ValueError(f"a bound of a {self.type} column must be a {self.type}")
        textual = self.type in ("category", "text", "file")
        uses_text = self.pattern or self.min_length is not None or self.max_length is not None
        if uses_text and not textual:
            raise ValueError(f"pattern and lengths apply to text, not {self.type}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}"
                ) from None
        if self.choices is not None:
            if self.type not in ("category", "integer", "text"):
                raise ValueError(
                    f"choices apply to categories, integers and texts, not {self.type}"
                )
            self.choices = [_as(self.type, choice, "choice") for choice in self.choices]
        return self


class Source(BaseModel):
    """Where rows come from: a file (``path`` relative to the project file, or an ``https``
    ``url`` with its ``sha256``), a folder of files, or a kind registered in code through the
    ``mlfactory.sources`` entry points, which may take options of its own."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    path: str | None = None
    url: str | None = Field(None, pattern=r"^https://\S+$")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    shared: str | None = Field(
        None, description="The file's path under MLF_DATASETS_DIR, looked at before the URL."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    pattern: str = Field("**/*", description="Files of a folder source (a glob).")

    @field_validator("shared")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(f"{value!r} must be a path inside MLF_DATASETS_DIR (no / or ..)")
        return value

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        if self.kind in (*FILE_KINDS, FOLDER_KIND):
            if self.model_extra:
                unknown = ", ".join(map(repr, self.model_extra))
                raise ValueError(f"a {self.kind} source has no field {unknown}")
            if (self.path is None) == (self.url is None):
                raise ValueError(f"a {self.kind} source needs a path or a url (one of them)")
            if self.url is not None and self.sha256 is None:
                raise ValueError("a url needs the sha256 of the file it serves")
            if self.kind == FOLDER_KIND and self.url is not None:
                raise ValueError("a folder source is a local path, not a url")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The options a code-registered kind was given."""
        return dict(self.model_extra or {})


class Label(BaseModel):
    """The column a model learns to predict, optionally mapped to other values."""

    model_config = ConfigDict(extra="forbid")

    column: str
    map: dict[str | int | float | bool, str | int | float | bool] | None = Field(
        None, min_length=1, description="Source value -> label; values not in it are refused."
    )
    positive: str | int | float | bool | None = Field(
        None, description="The positive class of binary metrics (default: the largest label)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value


class Dataset(BaseModel):
    """A declared data set: its source, key, label, typed columns and load mode."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    description: str = ""
    source: Source
    key: list[str] | KeyRule = Field(
        "content",
        description="Key columns; `content` (hash of the row); `line` (with mode replace only); "
        "`source` (the source kind keys its rows itself).",
    )
    label: Label | None = None
    columns: dict[str, Column] = Field(default_factory=dict)
    other_columns: Literal["refuse", "drop"] = Field(
        "refuse", description="Source columns not declared: refuse the file, or drop them."
    )
    mode: LoadMode = Field("upsert", description="How a load changes the stored rows.")

    @field_validator("key", mode="before")
    @classmethod
    def _one_key_column(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("content", "line", "source"):
            return [value]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Dataset:
        if self.key == "line" and self.mode != "replace":
            raise ValueError(
                "key `line` only with mode `replace`: line numbers name rows of one file only"
            )
        if not self.columns and self.key != "source":
            raise ValueError("declare the columns (only a source that keys its rows may omit them)")
        if self.key == "source" and self.source.kind in (*FILE_KINDS, FOLDER_KIND):
            raise ValueError(f"a {self.source.kind} source does not key its rows: declare a key")
        if isinstance(self.key, list):
            if not self.key:
                raise ValueError("key needs at least one column")
            for column in self.key:
                declared = self.columns.get(column)
                if declared is None:
                    raise ValueError(f"key column {column!r} is not a declared column")
                if declared.nullable:
                    raise ValueError(f"key column {column!r} cannot be nullable")
        if self.label is not None and self.columns:
            column = self.columns.get(self.label.column)
            if column is None:
                raise ValueError(f"label column {self.label.column!r} is not a declared column")
            if self.label.map is not None:  # YAML reads `1:` as a number, `yes:` as text
                self.label.map = {
                    _as(column.type, key, "label map key"): value
                    for key, value in self.label.map.items()
                }
            if self.label.positive is not None:
                kind = self.label_type
                self.label.positive = _as(kind, self.label.positive, "positive label")
        return self

    @property
    def label_type(self) -> ColumnType:
        """The type of the labels as stored and answered: the label column's, or the type of
        the values it is mapped to."""
        if self.label is None:
            raise ValueError(f"data set {self.name!r} declares no label")
        if self.label.map:
            values = list(self.label.map.values())
            if all(isinstance(value, bool) for value in values):
                return "boolean"
            if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
                return "integer"
            return "category"
        column = self.columns.get(self.label.column)
        return column.type if column else "category"


class Evaluation(BaseModel):
    """How a pipeline holds data out to score its models on."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["holdout", "fixed"] = Field(
        "holdout",
        description="`holdout`: a seeded stratified split of the current rows at every run; "
        "`fixed`: a set carved once from the first load and never trained on.",
    )
    fraction: float = Field(0.3, gt=0, lt=1, description="Share of the rows held out.")
    seed: int = 42
    balance: bool = Field(False, description="Oversample minority classes in training.")


class PipelineDeclaration(BaseModel):
    """A pipeline made from a template and a data set."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    template: Template
    dataset: str
    description: str = ""
    label: str | None = Field(None, description="Label column (default: the data set's).")
    features: list[str] | None = Field(
        None, min_length=1, description="Input columns (default: every usable column)."
    )
    text: list[str] | None = Field(
        None, min_length=1, description="Text columns (text template; default: every text column)."
    )
    model: Literal["logistic_regression", "hist_gradient_boosting", "random_forest"] = (
        "logistic_regression"
    )
    text_features: Literal["tfidf", "embeddings"] = Field(
        "tfidf", description="Text template: TF-IDF n-grams, or sentence embeddings."
    )
    c: float = Field(1.0, gt=0, description="Inverse regularisation of logistic regression.")
    max_iter: int = Field(1000, gt=0)
    n_estimators: int = Field(200, gt=0, description="Trees of a random forest.")
    max_depth: int | None = Field(None, gt=0)
    learning_rate: float = Field(0.1, gt=0, description="Of histogram gradient boosting.")
    class_weight: Literal["balanced"] | None = None
    metric: Metric | None = Field(
        None, description="Promotion metric (default: roc_auc for two classes, else macro_f1)."
    )
    evaluation: Evaluation = Field(default_factory=Evaluation)
    schedule: str | None = Field(None, description="Cron expression or preset such as @daily.")
    model_name: str | None = Field(None, description="Registered model (default: the name).")
    build: str | None = Field(
        None,
        pattern=r"^[\w.]+:\w+$",
        description="module:function that builds the pipeline from this declaration (a "
        "template plus steps of its own).",
    )
    retries: int = Field(1, ge=0)
    retry_delay: float = Field(5.0, ge=0)
    tags: list[str] = Field(default_factory=list)
    notify_to: list[str] = Field(default_factory=list)
    batch_size: int = Field(500, gt=0, description="Items per batch-prediction claim.")
    drift_min_rows: int = Field(
        20, gt=0, description="Fewer new rows than this in a load: no drift check."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value.startswith("@") or len(value.split()) == 5:
            return value
        raise ValueError(f"{value!r} is neither a preset (@daily) nor a 5-field cron expression")


class ProjectFile(BaseModel):
    """The top level of a project file."""

    model_config = ConfigDict(extra="forbid")

    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = Field(default_factory=dict)


def _as(kind: str, value: Any, what: str) -> Any:
    """A value written in YAML as the column type holds it: a category's ``1`` is ``"1"``."""
    if kind in ("category", "text", "file"):
        return (
            value
            if isinstance(value, str)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError(f"{what} {value!r} is not an integer")
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} {value!r} is not a number")
        return float(value)
    if kind == "boolean" and not isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not true or false")
    return value
