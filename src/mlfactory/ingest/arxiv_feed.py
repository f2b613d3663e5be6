"""One page of the arXiv API, read strictly: an Atom feed, its header and its entries.

The arxiv client's own parser recovers from broken XML: a page cut in the middle of an entry
came out as a paper with no categories, no authors and no subject, stored as if whole. Here:

- the answer must be an Atom ``<feed>`` (an HTML page answered with 200 is an error);
- the XML is read as far as it is well formed; a page cut short keeps the entries that were
  complete before the cut, and says how many of those its header promised were lost;
- every entry is checked for what a paper needs (id, dates, title, abstract, authors,
  categories, a primary category) before it becomes a paper; one that lacks any is a
  :class:`BadEntry` with the reason, never a half-paper.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import arxiv
from arxiv._feed import _build_result  # the client's own Result builder (no public one)
from lxml import etree

from mlfactory.ingest.csv_reader import BadRow

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"
RAW_CHARS = 2_000


class FeedError(Exception):
    """The answer is not an Atom feed at all (an HTML page, not XML, another document)."""


@dataclass(frozen=True)
class BadEntry:
    reason: str
    raw: str


@dataclass(frozen=True)
class Page:
    entries: list[arxiv.Result | BadEntry]
    total: int | None  # opensearch:totalResults: the whole result set
    start: int | None  # opensearch:startIndex: where this page starts in it
    per_page: int | None  # opensearch:itemsPerPage
    cut: str | None  # why reading stopped before the end of the document

    @property
    def lost(self) -> int | None:
        """Entries the header promises that the page does not hold whole (None: the header
        itself was lost)."""
        if self.cut is None:
            return 0
        if self.total is None or self.start is None or self.per_page is None:
            return None
        expected = min(self.per_page, max(self.total - self.start, 0))
        return max(expected - len(self.entries), 0)


def parse_page(content: bytes) -> Page:
    """The page in ``content``; :class:`FeedError` when it is no Atom feed."""
    header: dict[str, int | None] = {"total": None, "start": None, "per_page": None}
    names = {
        f"{OPENSEARCH}totalResults": "total",
        f"{OPENSEARCH}startIndex": "start",
        f"{OPENSEARCH}itemsPerPage": "per_page",
    }
    entries: list[arxiv.Result | BadEntry] = []
    events = etree.iterparse(
        io.BytesIO(content),
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
    )
    root = None
    cut = None
    try:
        for event, element in events:
            if root is None:
                root = element
                if element.tag != f"{ATOM}feed":
                    raise FeedError(
                        f"the answer is a <{etree.QName(element).localname}>, not an Atom feed"
                    )
                continue
            if event != "end" or element.getparent() is not root:
                continue
            if element.tag in names:
                header[names[element.tag]] = _integer(element.text)
            elif element.tag == f"{ATOM}entry":
                entries.append(_entry(element))
                root.remove(element)  # a page's memory stays one entry
    except etree.XMLSyntaxError as exc:
        if root is None:
            raise FeedError(f"the answer is not XML: {exc}") from None
        cut = str(exc)
    if root is None:
        raise FeedError("the answer is empty")
    return Page(entries, header["total"], header["start"], header["per_page"], cut)


def _integer(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _entry(element: Any) -> arxiv.Result | BadEntry:
    missing = [
        what
        for what, present in (
            ("id", _text(element, "id")),
            ("updated", _text(element, "updated")),
            ("published", _text(element, "published")),
            ("authors", element.find(f"{ATOM}author/{ATOM}name") is not None),
            ("categories", element.find(f"{ATOM}category[@term]") is not None),
            ("primary category", element.find(f"{ARXIV}primary_category[@term]") is not None),
        )
        if not present
    ]
    raw = etree.tostring(element, encoding="unicode")[:RAW_CHARS]
    if missing:
        return BadEntry(f"entry without {', '.join(missing)}", raw)
    result = _build_result(element)
    if result is None:  # dates that do not parse
        return BadEntry("entry with an unreadable <updated> or <published>", raw)
    return result


def _text(element: Any, name: str) -> str:
    found = element.find(f"{ATOM}{name}")
    return (found.text or "").strip() if found is not None else ""


def cut_row(page: Page, line: int) -> BadRow:
    """The entries a page cut short lost, as one rejection that says how many."""
    lost = "an unknown number of" if page.lost is None else f"{page.lost}"
    reason = (
        f"the answer was cut after {len(page.entries)} entries: {lost} entries lost ({page.cut})"
    )
    return BadRow(line, reason, "", 0)
