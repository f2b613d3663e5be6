"""A template's view of a pipeline declaration: its data set, the model's input columns, the
run parameters with the declared values as defaults, and the frames the model sees."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from mlfactory.datasets.declarations import Dataset, PipelineDeclaration
from mlfactory.datasets.project import Declarations, feature_columns, text_columns

if TYPE_CHECKING:
    import pandas as pd

    from mlfactory.training.classifiers import Inputs, ModelChoice

Prepare = Callable[["pd.DataFrame"], "pd.DataFrame"]


class TemplateParams(BaseModel):
    """Run parameters every template pipeline takes; the declaration sets their defaults."""

    model_config = ConfigDict(extra="forbid")
    ALLOWED_FEATURES: ClassVar[tuple[str, ...]] = ()

    source: str | None = Field(
        None,
        description="A file with the data set's columns to train on instead of its source: "
        "checked like the source, loaded into a data set of its own (<data set>@<file>).",
    )
    seed: int = Field(42, description="Seed of the held-out set, the oversampling and the model.")
    balance: bool = Field(False, description="Oversample minority classes in training.")
    c: float = Field(1.0, gt=0, description="Inverse regularisation of logistic regression.")
    model_name: str = Field(min_length=1, description="Registered model name.")
    batch_size: int = Field(500, gt=0, description="Items claimed per batch-prediction batch.")

    @model_validator(mode="after")
    def _known_features(self) -> TemplateParams:
        features = getattr(self, "features", None)
        unknown = sorted(set(features or ()) - set(self.ALLOWED_FEATURES))
        if unknown:
            raise ValueError(
                f"unknown features {unknown}; choose among {list(self.ALLOWED_FEATURES)}"
            )
        return self


@dataclass(frozen=True, eq=False)
class Plan:
    """What the steps of a template pipeline work from."""

    declaration: PipelineDeclaration
    dataset: Dataset
    features: tuple[str, ...]
    text: tuple[str, ...]
    prepare: Prepare | None = None
    """A pipeline's own last touch on the model's input frame (in training, evaluation,
    serving and batch prediction alike)."""

    @classmethod
    def of(cls, declaration: PipelineDeclaration, declarations: Declarations, **extra: Any) -> Plan:
        dataset = declarations.dataset(declaration.dataset)
        return cls(
            declaration=declaration,
            dataset=dataset,
            features=tuple(feature_columns(declaration, dataset)),
            text=tuple(text_columns(declaration, dataset)),
            **extra,
        )

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def model_name(self) -> str:
        return self.declaration.model_name or self.declaration.name

    @property
    def holdout(self) -> bool:
        return self.declaration.evaluation.method == "holdout"

    def inputs(self, params: BaseModel | None = None) -> list[str]:
        """The model's input columns: the run's features (or the declared ones), then texts."""
        features = getattr(params, "features", None) or self.features
        return [*features, *self.text]

    def frame(
        self, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Sequence[str]
    ) -> pd.DataFrame:
        """``columns`` of stored rows or a snapshot, as the model takes them."""
        from mlfactory.datasets.frames import model_frame

        frame = model_frame(self.dataset, rows, columns)
        return self.prepare(frame) if self.prepare else frame

    def model_inputs(self, columns: Sequence[str]) -> Inputs:
        from mlfactory.training.classifiers import Inputs

        declared = self.dataset.columns
        return Inputs.of(
            {name: declared[name].type for name in columns},
            nullable=[name for name in columns if declared[name].nullable],
        )

    def model_choice(self, params: BaseModel) -> ModelChoice:
        from mlfactory.training.classifiers import ModelChoice

        declaration = self.declaration
        return ModelChoice(
            kind=declaration.model,
            c=params.c,  # type: ignore[attr-defined]
            max_iter=declaration.max_iter,
            n_estimators=declaration.n_estimators,
            max_depth=declaration.max_depth,
            learning_rate=declaration.learning_rate,
            class_weight=declaration.class_weight,
            seed=params.seed,  # type: ignore[attr-defined]
        )

    def params_model(self, base: type[TemplateParams] = TemplateParams) -> type[TemplateParams]:
        """The run parameters of the pipeline, defaults from its declaration."""
        declaration = self.declaration
        evaluation = declaration.evaluation
        fields: dict[str, Any] = {
            "seed": (
                int,
                Field(evaluation.seed, description=base.model_fields["seed"].description),
            ),
            "balance": (
                bool,
                Field(evaluation.balance, description="Oversample minority classes."),
            ),
            "c": (float, Field(declaration.c, gt=0, description="Inverse regularisation (LR).")),
            "model_name": (
                str,
                Field(self.model_name, min_length=1, description="Registered model."),
            ),
            "batch_size": (
                int,
                Field(declaration.batch_size, gt=0, description="Items per claim."),
            ),
        }
        if self.holdout:
            fields["test_size"] = (
                float,
                Field(evaluation.fraction, gt=0, lt=1, description="Share held out at each run."),
            )
        else:
            fields["evaluation_fraction"] = (
                float,
                Field(evaluation.fraction, gt=0, lt=1, description="Share carved out once."),
            )
        if declaration.template == "tabular_classification":
            fields["features"] = (
                list[str],
                Field(list(self.features), min_length=1, description="Model inputs."),
            )
        words = re.split(r"[^A-Za-z0-9]+", self.name)
        model = create_model(
            "".join(word.capitalize() for word in words) + "Params", __base__=base, **fields
        )
        model.ALLOWED_FEATURES = tuple(
            name for name in self.dataset.columns if name in _usable(self)
        )
        return model


def _usable(plan: Plan) -> set[str]:
    from mlfactory.datasets.declarations import TABULAR_TYPES

    label = plan.dataset.label.column if plan.dataset.label else None
    return {
        name
        for name, column in plan.dataset.columns.items()
        if column.type in TABULAR_TYPES and name != label
    }


def derived_dataset(dataset: str, source: Path) -> str:
    """The data set a run's ``source`` file is loaded into: named after the declared data set
    and the file, never the declared one (rows of one origin never merge into another's)."""
    path = source.expanduser().resolve()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:60] or "file"
    return f"{dataset}@{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:6]}"
