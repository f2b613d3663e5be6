"""The file kinds: ``csv``, ``jsonl``, ``parquet`` and ``folder``.

A file is the one given for the load, else the declared ``path`` (relative to the project file),
else the declared ``url``: looked for under ``MLF_DATASETS_DIR`` (``shared``), then in the cache,
then downloaded and checked against its ``sha256``. Unreadable rows come out as
:class:`BadRow` with their line; only a file unusable as a whole raises
:class:`SourceFileError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from mlfactory.datasets.registry import DataFile, fetch
from mlfactory.ingest.csv_reader import (
    BadRow,
    SourceFileError,
    SourceRow,
    bad_bytes,
    read_csv_rows,
    read_header,
)
from mlfactory.ingest.sources import SourceRequest, SourceRows

PARQUET_BATCH_ROWS = 10_000


def located_file(request: SourceRequest) -> Path:
    """The local path of the request's file (or folder), downloading a declared URL if needed."""
    source = request.dataset.source
    if request.path is not None:
        path = request.path.expanduser().resolve()
    elif source.path is not None:
        path = (request.folder / source.path).resolve()
    else:
        assert source.url is not None and source.sha256 is not None
        name = PurePosixPath(source.url.split("?", 1)[0]).name or "data"
        shared = source.shared or f"{request.dataset.name}/{name}"
        return fetch(DataFile(name, source.url, source.sha256), shared, request.settings)
    if not path.exists():
        raise SourceFileError(f"{path}: no such file or folder")
    return path


def read_csv(request: SourceRequest) -> SourceRows:
    path = located_file(request)
    delimiter = request.dataset.source.delimiter
    return SourceRows(
        rows=read_csv_rows(
            path, max_field_bytes=request.settings.max_field_bytes, delimiter=delimiter
        ),
        origin=str(path),
        columns=read_header(path, delimiter=delimiter),
    )


def read_jsonl(request: SourceRequest) -> SourceRows:
    path = located_file(request)
    return SourceRows(_jsonl_rows(path, request.settings.max_field_bytes), origin=str(path))


def _jsonl_rows(path: Path, max_field_bytes: int) -> Iterator[SourceRow | BadRow]:
    """One JSON object per line; blank lines are skipped."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot open: {exc.strerror}") from exc
    with file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                fields = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield _bad(number, f"not valid JSON: {exc}", line)
                continue
            if not isinstance(fields, dict):
                yield _bad(number, f"a JSON {type(fields).__name__}, not an object", line)
                continue
            if len(line) > max_field_bytes:
                too_big = _oversized(fields, max_field_bytes)
                if too_big:
                    yield _bad(number, too_big, line)
                    continue
            yield SourceRow(number, fields)


def read_parquet(request: SourceRequest) -> SourceRows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = located_file(request)
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceFileError(f"{path}: not a readable Parquet file: {exc}") from exc
    return SourceRows(_parquet_rows(file, path), origin=str(path), columns=file.schema_arrow.names)


def _parquet_rows(file: Any, path: Path) -> Iterator[SourceRow]:
    import pyarrow as pa

    number = 0
    try:
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for fields in batch.to_pylist():
                number += 1
                yield SourceRow(number, fields)
    except (pa.ArrowException, OSError) as exc:
        raise SourceFileError(f"{path}: unreadable after row {number}: {exc}") from exc


FOLDER_COLUMNS = ["path", "folder", "size"]


def read_folder(request: SourceRequest) -> SourceRows:
    """One row per file matching the declared pattern: its path relative to the folder, the
    first sub-folder it is in (a label, for files sorted into folders) and its size in bytes."""
    root = located_file(request)
    if not root.is_dir():
        raise SourceFileError(f"{root}: not a folder")
    pattern = request.dataset.source.pattern
    return SourceRows(_folder_rows(root, pattern), origin=str(root), columns=FOLDER_COLUMNS)


def _folder_rows(root: Path, pattern: str) -> Iterator[SourceRow]:
    files = sorted(path for path in root.glob(pattern) if path.is_file())
    for number, path in enumerate(files, start=1):
        relative = path.relative_to(root)
        folder = relative.parts[0] if len(relative.parts) > 1 else None
        fields = {"path": relative.as_posix(), "folder": folder, "size": path.stat().st_size}
        yield SourceRow(number, fields)


def _oversized(fields: dict[str, Any], limit: int) -> str | None:
    for name, value in fields.items():
        size = len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))
        if size > limit:
            return f"field {name!r} is {size:,} bytes, over the limit of {limit:,}"
    return None


def _bad(line: int, reason: str, raw: bytes) -> BadRow:
    return bad_bytes(line, reason, [raw.rstrip(b"\r\n")])
