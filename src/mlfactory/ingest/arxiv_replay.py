"""Offline arXiv sources, from the files of the ``arxiv`` data set.

- :func:`read_recorded`: papers from recorded arXiv API responses, parsed by the ``arxiv``
  client's own parser, newest first: what a live fetch would have returned.
- :func:`read_snapshot`: the CSV snapshot (titles, abstracts and category terms of 1,000
  papers, no arXiv id), the back-fill a classifier is trained on.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from arxiv import Result

from mlfactory.datasets import CATALOG, resolve
from mlfactory.ingest.arxiv_feed import BadEntry, FeedError, Page, cut_row, parse_page
from mlfactory.ingest.arxiv_papers import (
    bad_row,
    clean_text,
    first_per_key,
    paper_record,
    paper_row,
)
from mlfactory.ingest.csv_reader import BadRow, SourceFileError, read_csv_rows, read_header
from mlfactory.ingest.loader import Record
from mlfactory.settings import Settings

log = logging.getLogger(__name__)

DATASET = "arxiv"
SNAPSHOT = "arxiv_data.csv"
SNAPSHOT_COLUMNS = ("titles", "summaries", "terms")

Rows = Iterator[Record | BadRow]


def read_recorded(settings: Settings, path: Path | None = None) -> Rows:
    """Papers from the recorded API responses of the data set (its files other than the
    snapshot), or from ``path``: a recorded exchange (``.json`` holding ``url``,
    ``status_code`` and ``body``), an Atom feed (``.xml``) or a folder of them.

    Responses overlap, so the papers are sorted by last update, newest first, and each is
    kept once, in its most recent version. Recorded error responses (HTTP status other than
    200) hold no papers and are skipped.
    """
    pages = [_page(file) for file in _recorded_files(settings, path)]
    results = [entry for page in pages for entry in page.entries if isinstance(entry, Result)]
    results.sort(key=lambda result: result.updated, reverse=True)
    limit = settings.max_field_bytes
    rows: list[Record | BadRow] = [
        paper_row(result, line, limit) for line, result in enumerate(results, start=1)
    ]
    line = len(rows)
    for page in pages:  # entries that are no paper, and what a cut answer lost, say why
        for entry in page.entries:
            if isinstance(entry, BadEntry):
                line += 1
                rows.append(BadRow(line, entry.reason, entry.raw, len(entry.raw.encode())))
        if page.cut is not None:
            line += 1
            rows.append(cut_row(page, line))
    return first_per_key(rows)


def read_snapshot(settings: Settings, path: Path | None = None) -> Rows:
    """The CSV snapshot's papers, keyed by :func:`snapshot_key` (it has no arXiv ids),
    labelled with the subject of their first term; all terms are kept as ``categories``.
    Rows repeated in the file are loaded once."""
    path = path or resolve(DATASET, SNAPSHOT, settings=settings)
    missing = [name for name in SNAPSHOT_COLUMNS if name not in read_header(path)]
    if missing:
        raise SourceFileError(f"{path}: no column {', '.join(map(repr, missing))}")
    limit = settings.max_field_bytes
    rows = read_csv_rows(path, max_field_bytes=limit)
    return first_per_key(
        row if isinstance(row, BadRow) else _snapshot_paper(row.fields, row.line, limit)
        for row in rows
    )


def snapshot_key(title: str, abstract: str) -> str:
    """A stable key for a paper without an id: the sha256 of its title and abstract, with
    whitespace normalised so that a re-wrapped abstract keeps its key."""
    text = f"{clean_text(title)}\n{clean_text(abstract)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _snapshot_paper(fields: dict[str, str], line: int, limit: int) -> Record | BadRow:
    data = {"title": clean_text(fields["titles"]), "abstract": clean_text(fields["summaries"])}
    try:
        terms = ast.literal_eval(fields["terms"])
    except (ValueError, SyntaxError, RecursionError):
        terms = None
    if not (isinstance(terms, list) and terms and all(isinstance(t, str) for t in terms)):
        return bad_row(line, f"terms {fields['terms'][:200]!r} is not a list of categories", data)
    data["categories"] = terms
    return paper_record(snapshot_key(data["title"], data["abstract"]), data, terms[0], line, limit)


def _recorded_files(settings: Settings, path: Path | None) -> list[Path]:
    if path is None:
        names = [file.name for file in CATALOG[DATASET].files if file.name != SNAPSHOT]
        return [resolve(DATASET, name, settings=settings) for name in names]
    if path.is_dir():
        return sorted(file for file in path.iterdir() if file.suffix in (".json", ".xml"))
    return [path]


def _page(file: Path) -> Page:
    """The page of one recorded response, read as a live page is (an error answer: none)."""
    try:
        content = file.read_bytes()
        if file.suffix == ".json":
            exchange = json.loads(content)
            if exchange["status_code"] != 200:
                log.info("%s: skipped, a recorded HTTP %s", file, exchange["status_code"])
                return Page([], 0, 0, 0, None)
            content = exchange["body"].encode()
    except OSError as exc:
        raise SourceFileError(f"{file}: cannot read: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SourceFileError(
            f"{file}: not a recorded response {{url, status_code, body}}: {exc!r}"
        ) from exc
    try:
        return parse_page(content)
    except FeedError as exc:
        raise SourceFileError(f"{file}: {exc}") from None
