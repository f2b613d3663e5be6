"""Loading a declared data set: read its source, check the source against the declaration
before anything is written, type and check every row, key and label it, and load it as one
audited batch with the declared load mode.

The schema check reads the source's columns (a CSV header, a Parquet schema, or the fields of
the first rows) and a sample of its rows: a missing or unexpected column, or a column none of
whose sampled values has the declared type, refuses the whole source in one line
(:class:`SchemaMismatch`). Past the check, a row with a bad value is kept aside with its reason,
and the others load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain, islice
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from mlfactory.datasets.columns import ColumnReader, label_text, readers
from mlfactory.datasets.declarations import Dataset
from mlfactory.datasets.project import declarations
from mlfactory.errors import UserError
from mlfactory.ingest.csv_reader import BadRow, SourceRow, bad_bytes
from mlfactory.ingest.loader import LoadResult, Record, Sessions, load_batch
from mlfactory.ingest.sources import SourceRequest, SourceRows, source_kind
from mlfactory.settings import Settings
from mlfactory.store import DataLoad

SAMPLE_ROWS = 1_000
_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class SchemaMismatch(UserError):
    """The source does not have the declared columns or types; nothing was written."""


def read_declared(
    settings: Settings, dataset: Dataset, path: Path | None = None
) -> tuple[Iterator[Record | BadRow], str]:
    """The typed records of ``dataset`` (from ``path`` instead of its declared location when
    given), after the schema check, and where they come from."""
    folder = declarations(settings).folders.get(dataset.name, Path.cwd())
    request = SourceRequest(dataset=dataset, settings=settings, folder=folder, path=path)
    source = source_kind(dataset.source.kind)(request)
    checked = check_schema(dataset, source)
    return typed_records(dataset, checked), source.origin


def load_declared(
    sessions: Sessions,
    settings: Settings,
    dataset: Dataset,
    *,
    path: Path | None = None,
    into: str | None = None,
    run_id: int | None = None,
    **selection: Any,
) -> LoadResult:
    """Load ``dataset`` (into the data set ``into``, by default its own) as one batch, with its
    declared load mode; ``selection`` passes a fraction or watermark to the loader."""
    target = into or dataset.name
    check_columns_unchanged(sessions, dataset, target)
    records, origin = read_declared(settings, dataset, path)
    return load_batch(
        sessions,
        target,
        records,
        write=dataset.mode,
        source=origin,
        run_id=run_id,
        meta=declared_meta(dataset),
        **selection,
    )


def declared_meta(dataset: Dataset) -> dict[str, Any]:
    """What a batch records of the declaration it was loaded with: each column's type, and
    ``?`` after it when the column may be missing."""
    return {
        "columns": {
            name: column.type + ("?" if column.nullable else "")
            for name, column in dataset.columns.items()
        }
    }


def check_columns_unchanged(sessions: Sessions, dataset: Dataset, target: str) -> None:
    """Refuse to upsert or append rows of other columns into a data set whose last load had
    them declared otherwise: its stored rows would mix two shapes. A replace may change them."""
    if dataset.mode == "replace" or not dataset.columns:
        return
    with sessions() as session:
        meta = session.scalar(
            select(DataLoad.meta)
            .where(DataLoad.dataset == target, DataLoad.status == "completed")
            .order_by(DataLoad.id.desc())
            .limit(1)
        )
    before = (meta or {}).get("columns")
    now = declared_meta(dataset)["columns"]
    if before is None or before == now:
        return
    changes = [
        f"{name!r} {before.get(name, 'absent')} -> {now.get(name, 'absent')}"
        for name in dict.fromkeys([*before, *now])
        if before.get(name) != now.get(name)
    ]
    raise SchemaMismatch(
        f"data set {target!r} was loaded with other columns ({'; '.join(changes)}): its stored "
        f"rows would mix two shapes. Declare `mode: replace` for one load, or a new data set"
    )


def check_schema(dataset: Dataset, source: SourceRows) -> Iterator[SourceRow | BadRow | Record]:
    """The source's rows, once its columns and a sample of its values are found to match the
    declaration; otherwise :class:`SchemaMismatch` naming every column at fault."""
    rows = iter(source.rows)
    sample = list(islice(rows, SAMPLE_ROWS))
    if not dataset.columns:  # a kind that keys and types its own records
        return chain(sample, rows)
    fields = _sample_fields(sample) if source.columns is None else list(source.columns)
    declared = dataset.columns
    problems = []
    # A source that names its columns must have every declared one; rows of JSON may leave
    # out a column that can be missing.
    missing = [
        name
        for name, column in declared.items()
        if name not in fields and (source.columns is not None or not column.nullable)
    ]
    if missing:
        problems.append("missing columns " + ", ".join(map(repr, missing)))
    unexpected = [name for name in fields if name not in declared]
    if unexpected and dataset.other_columns == "refuse":
        problems.append("unexpected columns " + ", ".join(map(repr, unexpected)))
    for name, reader in readers(dataset).items():
        if name not in missing:
            problem = _type_problem(reader, [_field(row, name) for row in sample])
            if problem:
                problems.append(problem)
    if problems:
        raise SchemaMismatch(
            f"{source.origin} does not match data set {dataset.name!r}: " + "; ".join(problems)
        )
    return chain(sample, rows)


def _sample_fields(sample: list[SourceRow | BadRow | Record]) -> list[str]:
    fields: dict[str, None] = {}
    for row in sample:
        if isinstance(row, SourceRow | Record):
            fields.update(dict.fromkeys(_fields_of(row)))
    return list(fields)


def _fields_of(row: SourceRow | Record) -> dict[str, Any]:
    return row.fields if isinstance(row, SourceRow) else row.data


def _field(row: SourceRow | BadRow | Record, name: str) -> Any:
    return None if isinstance(row, BadRow) else _fields_of(row).get(name)


def _type_problem(reader: ColumnReader, values: list[Any]) -> str | None:
    """A column whose sampled values all fail to be of its type has the wrong type (single
    values that fail are the rows' own problem)."""
    given = [value for value in values if value is not None and value != ""]
    if not given:
        return None
    errors = []
    for value in given:
        try:
            reader.from_source(value)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        return None
    return (
        f"column {reader.name!r} is declared {reader.column.type}, but none of its "
        f"{len(given):,} sampled values is (first: {errors[0]})"
    )


def typed_records(
    dataset: Dataset, rows: Iterable[SourceRow | BadRow | Record]
) -> Iterator[Record | BadRow]:
    """Records of the declared columns, typed, keyed and labelled as declared; a row with a bad
    value, a missing value, an undeclared field or a label outside the label map is a
    :class:`BadRow` naming each problem. A kind's own records pass as they are."""
    columns = readers(dataset)
    read = [(name, reader.from_source) for name, reader in columns.items()]  # bound once
    declared = set(columns)
    label = dataset.label
    refuse_others = dataset.other_columns == "refuse"
    for row in rows:
        if row.__class__ is not SourceRow:  # a BadRow, or a kind's own Record
            yield row  # type: ignore[misc]
            continue
        fields = row.fields
        data: dict[str, Any] = {}
        problems = []
        for name, from_source in read:
            try:
                data[name] = from_source(fields.get(name))
            except ValueError as exc:
                problems.append(str(exc))
        if refuse_others and not fields.keys() <= declared:
            problems += [f"unexpected field {name!r}" for name in fields if name not in columns]
        value = None
        if label is not None:
            value = data.get(label.column)
            if label.map is not None and value is not None:
                if value not in label.map:
                    problems.append(f"{label.column}: {value!r} is not in the label map")
                value = label.map.get(value)
        if problems:
            yield _bad_row(row, "; ".join(problems), _key(dataset, row, data, problems))
            continue
        key = _key(dataset, row, data)
        assert key is not None
        yield Record(key=key, data=data, label=label_text(value), line=row.line)


def _key(
    dataset: Dataset, row: SourceRow, data: dict[str, Any], problems: list[str] | None = None
) -> str | None:
    """The row's key; for a row with problems, the key when it can be told (its key columns
    were read), else None."""
    if dataset.key == "line":
        return str(row.line)
    if dataset.key == "content":
        return None if problems else hashlib.sha256(orjson.dumps(data, option=_JSON)).hexdigest()
    assert isinstance(dataset.key, list)
    values = [data.get(column) for column in dataset.key]
    if any(value is None for value in values):
        return None
    if len(values) == 1:
        return label_text(values[0])
    return orjson.dumps(values).decode()


def _bad_row(row: SourceRow, reason: str, key: str | None) -> BadRow:
    raw = orjson.dumps(row.fields, default=str, option=orjson.OPT_NON_STR_KEYS)
    return replace(bad_bytes(row.line, reason, [raw]), key=key)
