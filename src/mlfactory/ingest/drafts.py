"""Drafting the declaration of a new data set from its file: what ``mlfactory data add`` writes
for a person to review."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from mlfactory.datasets.declarations import Dataset, PipelineDeclaration, Source
from mlfactory.datasets.infer import infer_columns
from mlfactory.datasets.project import pipeline_problems
from mlfactory.errors import UserError
from mlfactory.ingest.csv_reader import SourceRow
from mlfactory.ingest.declared import SAMPLE_ROWS
from mlfactory.ingest.sources import SourceRequest, source_kind
from mlfactory.settings import Settings

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


def draft_dataset(
    settings: Settings,
    name: str,
    path: Path,
    *,
    folder: Path,
    key: list[str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """The declaration of data set ``name`` read from ``path`` (relative to ``folder``, the
    project file's, when it lies under it): source, key, label and inferred columns."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(SUFFIXES))
        raise UserError(f"{path}: cannot tell the kind of file from its name (known: {known})")
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        shown = str(path.relative_to(folder.resolve()))
    except ValueError:
        shown = str(path)
    source: dict[str, Any] = {"kind": kind, "path": shown}
    if path.suffix.lower() == ".tsv":
        source["delimiter"] = "\t"
    # Only the source matters to read a sample: no columns are declared yet.
    reading = Dataset.model_construct(name=name, source=Source(**source))
    rows = source_kind(kind)(SourceRequest(reading, settings, folder, path))
    sample = [row.fields for row in islice(rows.rows, SAMPLE_ROWS) if isinstance(row, SourceRow)]
    fields = rows.columns or list(dict.fromkeys(field for row in sample for field in row))
    for column in [*(key or []), *([label] if label else [])]:
        if column not in fields:
            raise UserError(f"{path} has no column {column!r} (its columns: {fields})")
    columns = infer_columns(fields, sample, label=label)
    for column in key or []:
        if columns[column].pop("nullable", False):
            raise UserError(f"key column {column!r} has empty values in {path}")
    declaration: dict[str, Any] = {"source": source, "key": key or "content"}
    if not key:  # a row keyed by its content: an edited row is a new key, the old one must go
        declaration["mode"] = "replace"
    if label:
        declaration["label"] = label
    declaration["columns"] = {name: _short(column) for name, column in columns.items()}
    return declaration


def _short(column: dict[str, Any]) -> Any:
    """``integer`` for a plain column, the mapping otherwise: shorter to read."""
    return column["type"] if set(column) == {"type"} else column


def draft_pipeline(
    name: str, declaration: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """A pipeline for a drafted data set with a label: the text template when it has a text
    column, else the tabular one; or None and why, when neither has an input to use."""
    dataset = Dataset(name=name, **declaration)
    types = [column.type for column in dataset.columns.values()]
    template = "text_classification" if "text" in types else "tabular_classification"
    pipeline = {"template": template, "dataset": name}
    problems = pipeline_problems(PipelineDeclaration(name=name, **pipeline), {name: dataset})
    if problems:
        return None, "; ".join(message for _, message in problems)
    return pipeline, None
