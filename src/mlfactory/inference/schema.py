"""The input schema of a served model, read from its MLflow signature, and the check of request
values against it.

A check reports every bad value with its record index and field, so a client learns all its
mistakes at once, where MLflow's own enforcement stops at the first bad column of a whole frame.
Values are checked column by column in plain Python: a number is a JSON number (``true`` is not
1, ``"35"`` is not 35), a string a JSON string.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlfactory.errors import UserError

MISSING: Any = object()
"""The value of a field that a record does not have."""

NUMERIC = frozenset({"double", "float"})


class UnservableModel(UserError):
    """The model's signature does not describe named columns of types the API can check."""


@dataclass(frozen=True)
class FieldError:
    """One bad value: the record it is in (its index in the request), the field, what is wrong."""

    record: int
    field: str
    message: str
    type: str


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # an MLflow data type: double, float, long, integer, boolean, string, datetime
    required: bool = True


def _finite_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a double
        return False


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _iso_datetime(value: Any) -> bool:
    if isinstance(value, datetime):
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# kind -> (accepts a value, message and error type when it does not)
_CHECKS: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "double": (_finite_number, "must be a finite number", "float_type"),
    "float": (_finite_number, "must be a finite number", "float_type"),
    "long": (_integer, "must be an integer", "int_type"),
    "integer": (_integer, "must be an integer", "int_type"),
    "boolean": (lambda value: isinstance(value, bool), "must be true or false", "bool_type"),
    "string": (lambda value: isinstance(value, str), "must be a string", "string_type"),
    "datetime": (_iso_datetime, "must be an ISO 8601 date and time", "datetime_type"),
}


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def numeric(self) -> bool:
        """Every column is a required float: the input fits one float64 array."""
        return all(column.kind in NUMERIC and column.required for column in self.columns)

    @classmethod
    def from_signature(cls, signature: Any, model: str) -> InputSchema:
        """The schema of an MLflow ``ModelSignature`` (column based, of the types above)."""
        inputs = getattr(signature, "inputs", None)
        if inputs is None or not inputs.has_input_names() or inputs.is_tensor_spec():
            raise UnservableModel(
                f"model {model} has no input signature of named columns: log it with one"
            )
        columns = []
        for spec in inputs.inputs:
            kind = getattr(spec.type, "name", str(spec.type))
            if kind not in _CHECKS:
                raise UnservableModel(
                    f"model {model}: input {spec.name!r} has type {kind}, which the API cannot "
                    f"check (supported: {', '.join(_CHECKS)})"
                )
            columns.append(Column(spec.name, kind, bool(spec.required)))
        return cls(tuple(columns))

    def check(self, values: dict[str, Sequence[Any]]) -> list[FieldError]:
        """Bad values among ``values`` (column name -> one value per record, ``MISSING`` or None
        where a record has none), in record order."""
        errors = []
        for column in self.columns:
            accepts, message, error_type = _CHECKS[column.kind]
            for index, value in enumerate(values[column.name]):
                if value is MISSING or value is None:
                    if column.required:
                        missing = "field required" if value is MISSING else "must not be null"
                        errors.append(FieldError(index, column.name, missing, "missing"))
                elif not accepts(value):
                    errors.append(FieldError(index, column.name, message, error_type))
        errors.sort(key=lambda error: error.record)
        return errors
