"""Serving a template pipeline: request records checked against the data set's declaration,
then turned into the model's input frame as in training."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlfactory.pipelines.templates.plan import Plan

if TYPE_CHECKING:
    import pandas as pd

RequestFeatures = Callable[[list[dict[str, Any]], list[str]], "pd.DataFrame"]


def request_features(plan: Plan) -> RequestFeatures:
    """``(records, model columns) -> frame``: every field a declared column, every column the
    model needs present unless declared nullable (then imputed), every value of its type and
    within its constraints; ``InvalidRecords`` names each that is not."""

    def features(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
        from mlfactory.datasets.frames import UndeclaredColumns, checked_frame
        from mlfactory.inference.schema import FieldError, UnservableModel
        from mlfactory.inference.serving import InvalidRecords

        try:
            frame, problems = checked_frame(plan.dataset, records, columns)
        except UndeclaredColumns as exc:
            raise UnservableModel(str(exc)) from None
        if problems:
            raise InvalidRecords(
                [FieldError(p.record, p.field, p.message, p.type) for p in problems]
            )
        return plan.prepare(frame) if plan.prepare else frame

    return features
