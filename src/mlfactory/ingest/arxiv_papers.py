"""arXiv papers as store records: one shape whether they come from the live API, a recorded
API response or the CSV snapshot.

A paper from the API is keyed by its arXiv identifier without version (``2202.12139``,
``quant-ph/0201082``); the version stays in the data, so a new version of a paper updates its
item rather than adding one. Its label is the archive of its primary category (:func:`subject`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mlfactory.ingest.csv_reader import RAW_KEEP_CHARS, BadRow
from mlfactory.ingest.loader import Record

if TYPE_CHECKING:
    import arxiv

log = logging.getLogger(__name__)

# New-style (0704.0001 onwards) and old-style (archive[.XX]/YYMMNNN) identifiers, with an
# optional version: https://info.arxiv.org/help/arxiv_identifier.html
_IDENTIFIER = re.compile(
    r"(?P<id>\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?"
)
# archive[.subject class]: cs.LG, astro-ph.CO, cond-mat.str-el, hep-th, ...
_CATEGORY = re.compile(r"(?P<archive>[a-z]+(?:-[a-z]+)*)(?:\.[A-Za-z]+(?:-[a-z]+)*)?")


def subject(category: str) -> str:
    """The top-level subject of an arXiv category: its archive, the part before the dot.

    ``cs.LG`` -> ``cs``, ``astro-ph.CO`` -> ``astro-ph``, ``math.AG`` -> ``math``; a category
    without subject classes is its own archive (``hep-th`` -> ``hep-th``). This is the label
    the classifier learns: the ~150 categories are too many, too fine and too unevenly
    populated, the ~20 archives are not. Anything else (an ACM or MSC class such as ``I.2.6``
    or ``68T05``, which some papers list among their terms) raises ValueError.
    """
    match = _CATEGORY.fullmatch(category.strip())
    if match is None:
        raise ValueError(f"{category!r} is not an arXiv category (archive or archive.class)")
    return match["archive"]


def clean_text(text: str | None) -> str:
    """``text`` on one line with single spaces: abstracts come hard-wrapped and indented."""
    return " ".join((text or "").split())


def paper_row(result: arxiv.Result, line: int, max_field_bytes: int) -> Record | BadRow:
    """The record of one parsed API entry, or a :class:`BadRow` saying what is wrong with it.

    ``line`` is the entry's position in its fetch or replay, which rejections report.
    """
    short_id = result.get_short_id()
    identifier = _IDENTIFIER.fullmatch(short_id)
    data: dict[str, Any] = {
        "id": identifier["id"] if identifier else short_id,
        "version": int(identifier["version"]) if identifier and identifier["version"] else None,
        "title": clean_text(result.title),
        "abstract": clean_text(result.summary),
        "authors": [author.name for author in result.authors],
        "primary_category": result.primary_category,
        "categories": list(result.categories),
        "published": result.published.isoformat(),
        "updated": result.updated.isoformat(),
        "link": next(
            (link.href for link in result.links if link.rel == "alternate"), result.entry_id
        ),
    }
    if identifier is None:
        return bad_row(line, f"entry id {result.entry_id!r} holds no arXiv identifier", data)
    return paper_record(data["id"], data, result.primary_category, line, max_field_bytes)


def paper_record(
    key: str, data: dict[str, Any], category: str, line: int, max_field_bytes: int
) -> Record | BadRow:
    """A paper keyed by ``key`` and labelled with the subject of ``category``, unless it has no
    key, title or abstract, a field over ``max_field_bytes`` or a category that is none."""
    missing = [
        name
        for name, value in (("id", key), ("title", data["title"]), ("abstract", data["abstract"]))
        if not value
    ]
    if missing:
        return bad_row(line, f"no {' and no '.join(missing)}", data)
    for name, value in data.items():
        size = len((value if isinstance(value, str) else json.dumps(value)).encode())
        if size > max_field_bytes:
            reason = f"field {name!r} is {size:,} bytes, over the limit of {max_field_bytes:,}"
            return bad_row(line, reason, data)
    try:
        label = subject(category) if category else None
    except ValueError as exc:
        return bad_row(line, f"primary category: {exc}", data)
    return Record(key=key, data=data, label=label, line=line)


def bad_row(line: int, reason: str, data: dict[str, Any]) -> BadRow:
    raw = json.dumps(data, ensure_ascii=False)
    return BadRow(line, reason, raw[:RAW_KEEP_CHARS], len(raw.encode()))


def first_per_key(rows: Iterable[Record | BadRow]) -> Iterator[Record | BadRow]:
    """Each key once, at its first occurrence; bad rows pass through.

    The same paper turns up twice when arXiv's result list shifts between two page requests
    (a paper updated meanwhile moves to the top and pushes the others down one place) and
    when recorded responses overlap; the snapshot CSV repeats some rows. Newest first, the
    first occurrence is the most recent version.
    """
    seen: set[str] = set()
    repeats = 0
    for row in rows:
        if isinstance(row, Record):
            if row.key in seen:
                repeats += 1
                continue
            seen.add(row.key)
        yield row
    if repeats:
        log.info("dropped %d repeated papers", repeats)
