"""Sources: how the rows of each built-in data set are read, as records for the loader.

A source turns files found by the data set registry (or a file given by the user) into
:class:`Record` objects with a key and a label, passing bad rows through as :class:`BadRow`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlfactory.datasets import resolve
from mlfactory.errors import UserError
from mlfactory.ingest.arxiv_replay import read_recorded, read_snapshot
from mlfactory.ingest.csv_reader import BadRow, SourceRow, read_csv_rows
from mlfactory.ingest.loader import Record, records_from_csv
from mlfactory.settings import Settings

Rows = Iterator[Record | BadRow]


@dataclass(frozen=True)
class Source:
    dataset: str
    description: str
    read: Callable[[Settings, Path | None], Rows]
    """Read the records; a path, when given, replaces the registered file."""


def read_advertising(settings: Settings, path: Path | None = None) -> Rows:
    """Advertising click data: one row per user, keyed by its line in the file."""
    path = path or resolve("advertising", settings=settings)
    rows = read_csv_rows(path, max_field_bytes=settings.max_field_bytes)
    return records_from_csv(rows, label_field="Clicked on Ad")


def read_products(settings: Settings, path: Path | None = None) -> Rows:
    """Rakuten products: the challenge's X (texts) and Y (product type codes) files merged on
    their row index, which becomes the key. A product with no label is rejected."""
    texts = path or resolve("rakuten", "X_train_update_sample499.csv", settings=settings)
    labels_file = resolve("rakuten", "Y_train_CVw08PX.csv", settings=settings)
    labels = {
        row.fields[""]: row.fields["prdtypecode"]
        for row in read_csv_rows(labels_file)
        if isinstance(row, SourceRow)
    }
    for row in read_csv_rows(texts, max_field_bytes=settings.max_field_bytes):
        if isinstance(row, BadRow):
            yield row
            continue
        key = row.fields.pop("")
        label = labels.get(key)
        if label is None:
            yield BadRow(row.line, f"no product type code for index {key!r}", str(row.fields), 0)
            continue
        yield Record(key=key, data=row.fields, label=label, line=row.line)


SOURCES: dict[str, Source] = {
    "advertising": Source("advertising", "Advertising click data (CSV)", read_advertising),
    "products": Source("products", "Rakuten France catalogue (X/Y CSV)", read_products),
    # The live arXiv source is arxiv_source.fetch_new, a watermark load; this replays it offline.
    "arxiv": Source("arxiv", "arXiv papers from recorded API responses (Atom)", read_recorded),
    "arxiv_backfill": Source(
        "arxiv_backfill", "arXiv papers with subject labels (CSV snapshot)", read_snapshot
    ),
}


def get_source(dataset: str) -> Source:
    try:
        return SOURCES[dataset]
    except KeyError:
        known = ", ".join(sorted(SOURCES))
        raise UserError(f"no source for data set {dataset!r} (known: {known})") from None
