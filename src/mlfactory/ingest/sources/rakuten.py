"""The ``rakuten`` kind: the Rakuten France challenge's catalogue, whose texts (X) and product
type codes (Y) come in two files joined on their unnamed row index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mlfactory.datasets import resolve
from mlfactory.ingest.csv_reader import BadRow, SourceRow, read_csv_rows, read_header
from mlfactory.ingest.sources import SourceRequest, SourceRows

TEXTS = "X_train_update_sample499.csv"
LABELS = "Y_train_CVw08PX.csv"
INDEX, LABEL = "index", "prdtypecode"


def read_rakuten(request: SourceRequest) -> SourceRows:
    """The texts file (the registered sample, or the file given for the load) with the row
    index as column ``index`` and each row's code from the labels file as ``prdtypecode``
    (missing when the labels file has none)."""
    settings = request.settings
    texts = request.path or resolve("rakuten", TEXTS, settings=settings)
    labels_file = resolve("rakuten", LABELS, settings=settings)
    columns = [INDEX if name == "" else name for name in read_header(texts)]
    return SourceRows(
        _joined(texts, labels_file, settings.max_field_bytes),
        origin=str(texts),
        columns=[*columns, LABEL],
    )


def _joined(texts: Path, labels_file: Path, max_field_bytes: int) -> Iterator[SourceRow | BadRow]:
    labels = {
        row.fields[""]: row.fields[LABEL]
        for row in read_csv_rows(labels_file)
        if isinstance(row, SourceRow)
    }
    for row in read_csv_rows(texts, max_field_bytes=max_field_bytes):
        if isinstance(row, BadRow):
            yield row
            continue
        fields = {INDEX if name == "" else name: value for name, value in row.fields.items()}
        yield SourceRow(row.line, {**fields, LABEL: labels.get(fields.get(INDEX, ""))})
