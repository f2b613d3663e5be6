"""Values of declared columns: read from a source (lenient: text from a CSV, JSON values, Arrow
values) or from a prediction request (strict: a JSON number is a number, ``"35"`` is text),
then checked against the column's constraints. A bad value raises ``ValueError`` with a message
that names the column.

Stored values are JSON: numbers, integers and booleans as such, dates as ISO 8601 text,
categories, texts and file paths as text. An empty text or a null is a missing value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from mlfactory.datasets.declarations import Column, Dataset

MISSING: Any = object()
"""A field that a request's record does not have at all (not even null)."""

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
SHOWN_CHARS = 60
MAX_EXACT_INTEGER = 2**53
TOO_LARGE = f"beyond ±{MAX_EXACT_INTEGER:,}, the largest integer a model takes exactly"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _source_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError
    return number


def _source_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return _exact(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)  # exactly, not through a float
        except ValueError:
            value = text  # "35.0"
        else:
            return _exact(number)
    number = float(value)
    if not number.is_integer():
        raise ValueError
    return _exact(int(number))


class _TooLarge(ValueError):
    """An integer a model's float64 input cannot hold exactly."""


def _exact(value: int) -> int:
    """An integer a model's float64 input holds exactly (a 400-digit one is refused)."""
    if abs(value) > MAX_EXACT_INTEGER:
        raise _TooLarge
    return value


def _source_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _iso_date(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = value.strip() if isinstance(value, str) else None
    if not text:
        raise ValueError
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return datetime.fromisoformat(text).isoformat()


def _source_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError
    return str(value)


def _request_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    return float(value)


def _request_integer(value: Any) -> int:
    """A JSON integer, or a number with no fraction (35.0: what many clients send for 35)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError
    return _exact(int(value))


def _request_boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _request_text(value: Any) -> str:
    """Text as a source gives it: without the spaces around it."""
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


def _request_date(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return _iso_date(value)


# type -> (from a source, from a request, what a bad value is not)
_PARSERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], str]] = {
    "number": (_source_number, _request_number, "a finite number"),
    "integer": (_source_integer, _request_integer, "an integer"),
    "boolean": (_source_boolean, _request_boolean, "true or false"),
    "date": (_iso_date, _request_date, "an ISO 8601 date or date and time"),
    "category": (_source_text, _request_text, "text"),
    "text": (_source_text, _request_text, "text"),
    "file": (_source_text, _request_text, "a file path"),
}


Check = Callable[[Any, Any], None]  # (parsed value, value as given) -> None or ValueError


class ColumnReader:
    """Reads and checks the values of one declared column. The checks its constraints call for
    are picked once: a load reads every value of every row through here."""

    def __init__(self, name: str, column: Column) -> None:
        self.name, self.column = name, column
        self._source, self._request, self._expected = _PARSERS[column.type]
        self._checks = _checks(name, column)

    def from_source(self, value: Any) -> Any:
        """The stored value of a source's raw value (None when missing), or ValueError."""
        if value is None or value == "" or (value.__class__ is str and value.isspace()):
            return self._missing()
        return self._checked(self._source, value)

    def from_request(self, value: Any) -> Any:
        """The value of a request's field (None when null or absent), or ValueError."""
        if value is None or value is MISSING:
            return self._missing("field required" if value is MISSING else "must not be null")
        return self._checked(self._request, value)

    def _checked(self, parse: Callable[[Any], Any], value: Any) -> Any:
        try:
            parsed = parse(value)
        except _TooLarge:
            raise ValueError(f"{self.name}: {_shown(value)} is {TOO_LARGE}") from None
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{self.name}: {_shown(value)} is not {self._expected}") from None
        for check in self._checks:
            check(parsed, value)
        return parsed

    def _missing(self, message: str = "missing value") -> None:
        if not self.column.nullable:
            raise ValueError(f"{self.name}: {message}")
        return None


def _checks(name: str, column: Column) -> list[Check]:
    """The checks of ``column``'s constraints on a parsed value (the given one is what the
    messages show)."""
    checks: list[Check] = []
    if column.choices is not None:
        choices = column.choices
        allowed = ", ".join(repr(choice) for choice in choices)

        def choice(value: Any, given: Any) -> None:
            if value not in choices:
                raise ValueError(f"{name}: {_shown(given)} is not one of {allowed}")

        checks.append(choice)
    low, high = _comparable(column.min, column), _comparable(column.max, column)
    if low is not None or high is not None:

        def bounds(value: Any, given: Any) -> None:
            comparable = _comparable(value, column)
            if low is not None and comparable < low:
                raise ValueError(f"{name}: {_shown(given)} is below the minimum {column.min}")
            if high is not None and comparable > high:
                raise ValueError(f"{name}: {_shown(given)} is above the maximum {column.max}")

        checks.append(bounds)
    if column.min_length is not None or column.max_length is not None:
        shortest, longest = column.min_length or 0, column.max_length

        def length(value: Any, given: Any) -> None:
            if len(value) < shortest:
                raise ValueError(f"{name}: shorter than {shortest} characters")
            if longest is not None and len(value) > longest:
                raise ValueError(f"{name}: longer than {longest} characters")

        checks.append(length)
    if column.pattern is not None:
        compiled, pattern = re.compile(column.pattern), column.pattern

        def matches(value: Any, given: Any) -> None:
            if not compiled.fullmatch(value):
                raise ValueError(f"{name}: {_shown(value)} does not match {pattern!r}")

        checks.append(matches)
    return checks


def _comparable(value: Any, column: Column) -> Any:
    """Numbers as they are; dates as naive UTC datetimes (a date is its midnight, a time
    without a zone is taken as UTC)."""
    if value is None or column.type != "date":
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def readers(dataset: Dataset) -> dict[str, ColumnReader]:
    return {name: ColumnReader(name, column) for name, column in dataset.columns.items()}


def native(value: Any) -> Any:
    """A numpy scalar (a model's class) as the Python value it holds."""
    return value.item() if hasattr(value, "item") else value


def label_text(value: Any) -> str | None:
    """A label as the store keeps it (text): ``true``/``false``, ``1``, ``spam``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def label_value(text: str | None, kind: str) -> Any:
    """A stored label in its declared type: the inverse of :func:`label_text`."""
    if text is None:
        return None
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text == "true"
    return text
