"""A first declaration of a data set, inferred from a sample of its rows, for a person to review.

Each column gets the narrowest type every sampled value has: boolean, integer, number, date,
then category (few distinct short values) or text. A column with an empty value is nullable.
No range or choices are inferred: a sample's range is no rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlfactory.datasets.columns import ColumnReader
from mlfactory.datasets.declarations import Column

MAX_CATEGORY_CHARS = 40  # mean length above which repeated strings are text, not a category
MAX_CATEGORY_SHARE = 0.2  # distinct values / rows above which strings are text


def infer_columns(
    fields: list[str], rows: Iterable[Mapping[str, Any]], *, label: str | None = None
) -> dict[str, dict[str, Any]]:
    """Column name -> the declaration of its column (``{"type": ..., "nullable": true}``)."""
    sample = list(rows)
    declared = {}
    for name in fields:
        values = [row.get(name) for row in sample]
        given = [value for value in values if value is not None and str(value).strip() != ""]
        column: dict[str, Any] = {"type": _type(given, len(sample), is_label=name == label)}
        if len(given) < len(values):
            column["nullable"] = True
        declared[name] = column
    return declared


def _type(values: list[Any], rows: int, *, is_label: bool) -> str:
    if not values:
        return "text"
    if not is_label and _all_are("boolean", values) and not _all_are("integer", values):
        return "boolean"
    for kind in ("integer", "number", "date"):
        if _all_are(kind, values):
            return kind
    texts = [str(value) for value in values]
    distinct = len(set(texts))
    mean_length = sum(map(len, texts)) / len(texts)
    if is_label or (
        mean_length <= MAX_CATEGORY_CHARS and distinct <= max(2, MAX_CATEGORY_SHARE * rows)
    ):
        return "category"
    return "text"


def _all_are(kind: str, values: list[Any]) -> bool:
    reader = ColumnReader("sample", Column(type=kind))  # type: ignore[arg-type]
    try:
        for value in values:
            reader.from_source(value)
    except ValueError:
        return False
    return True
