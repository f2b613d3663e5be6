"""Model inputs from declared data: stored rows, snapshots or request records as the frame a
model is trained and asked on, with the same dtypes every time.

Numbers, integers and booleans become float64 (a missing value is NaN, which the model's
imputer fills); categories and file paths text (a missing one NaN); texts text (a missing one
""); dates datetime64 in UTC (a missing one NaT). A request's records are checked first, value
by value, against the declaration (:func:`checked_frame`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlfactory.datasets.columns import MISSING, ColumnReader, label_value, readers
from mlfactory.datasets.declarations import Dataset
from mlfactory.errors import UserError

NUMERIC = frozenset({"number", "integer", "boolean"})


@dataclass(frozen=True)
class Problem:
    """A bad value of a request: its record (index), field, what is wrong and its kind."""

    record: int
    field: str
    message: str
    type: str


class UndeclaredColumns(UserError):
    """A model asks for columns its data set no longer declares (renamed since it trained)."""


def model_frame(
    dataset: Dataset, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Sequence[str]
) -> pd.DataFrame:
    """The ``columns`` of stored rows or a snapshot, as the model takes them."""
    _require_declared(dataset, columns)
    if isinstance(rows, pd.DataFrame):
        size = len(rows)
        values = {name: rows[name].tolist() if name in rows else [None] * size for name in columns}
    else:
        records = rows if isinstance(rows, list) else list(rows)
        size = len(records)
        values = {name: [record.get(name) for record in records] for name in columns}
    data = {name: _typed(dataset.columns[name].type, values[name]) for name in columns}
    return pd.DataFrame(data, columns=list(columns), index=range(size))


def _require_declared(dataset: Dataset, columns: Sequence[str]) -> None:
    undeclared = [name for name in columns if name not in dataset.columns]
    if undeclared:
        raise UndeclaredColumns(
            f"the model takes columns {undeclared} that data set {dataset.name!r} no longer "
            "declares: declare them again, or train a new champion"
        )


def _typed(kind: str, values: list[Any]) -> Any:
    if kind in NUMERIC:
        return np.array(
            [np.nan if _missing(value) else float(value) for value in values], dtype="float64"
        )
    if kind == "date":
        return pd.to_datetime(
            [None if _missing(value) else value for value in values], utc=True, format="ISO8601"
        )
    if kind == "text":
        return np.array(["" if _missing(value) else str(value) for value in values], dtype=object)
    return np.array([np.nan if _missing(value) else value for value in values], dtype=object)


def _missing(value: Any) -> bool:
    """None, or the NaN a frame holds where a value is missing."""
    return value is None or (value.__class__ is float and value != value)


def checked_frame(
    dataset: Dataset, records: list[dict[str, Any]], columns: Sequence[str]
) -> tuple[pd.DataFrame, list[Problem]]:
    """Request records checked against the declaration, and the model's frame of them.

    Every field must be a declared column; the model's ``columns`` are required unless the
    declaration lets them be missing (they are then imputed as in training); other declared
    columns may be sent and are checked but not used. The frame is empty when there are
    problems.
    """
    _require_declared(dataset, columns)
    declared = readers(dataset)
    needed = [declared[name] for name in columns]
    problems: list[Problem] = []
    rows = []
    for index, record in enumerate(records):
        row = {}
        for name in record:
            if name not in declared:
                message = "unknown field: not a declared column"
                problems.append(Problem(index, name, message, "extra_forbidden"))
        for reader in declared.values():
            value = record.get(reader.name, MISSING)
            if value is MISSING and reader not in needed:
                continue
            try:
                row[reader.name] = reader.from_request(value)
            except ValueError as exc:
                problems.append(_problem(index, reader, value, exc))
        rows.append(row)
    if problems:
        return pd.DataFrame(), problems
    return model_frame(dataset, rows, columns), []


def _problem(index: int, reader: ColumnReader, value: Any, exc: ValueError) -> Problem:
    message = str(exc).removeprefix(f"{reader.name}: ")
    kind = "missing" if value is MISSING or value is None else "value_error"
    return Problem(index, reader.name, message, kind)


def labels(dataset: Dataset, stored: Iterable[str | None]) -> list[Any]:
    """Stored labels (text) in the declared label type."""
    kind = dataset.label_type
    return [label_value(text, kind) for text in stored]
