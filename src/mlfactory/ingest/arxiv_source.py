"""The live arXiv source: papers updated since the last fetch, from the arXiv API.

Newest first, stopping early. The client asks for the query's papers sorted by last update
date, descending, and stops paging at the first paper that is not newer than the watermark
(the highest ``updated`` of the last completed load, :func:`loader.current_watermark`):
every paper after it is older still. This relies on the API's server-side sort, which arXiv
documents and which is the only way not to page through the whole result set on every run
(``cat:cs.*`` alone matches hundreds of thousands of papers, and arXiv asks for at most one
request every three seconds). The tests' replay server therefore honours ``sortBy`` and
``sortOrder`` rather than this code paging through everything to be order-independent.

Newest first has one cost: ``arxiv_max_results`` caps a fetch, and when more papers than that
are new, the older ones are never fetched, since the watermark moves past them. The batch's
metadata then says ``stopped_by: max_results`` and a warning is logged: raise the cap or fetch
more often. (The first fetch, with no watermark, takes the newest papers up to the cap by
design: the back-fill comes from the snapshot, not from the API.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

import arxiv
import httpx

from mlfactory.errors import UserError
from mlfactory.ingest.arxiv_feed import BadEntry, FeedError, Page, cut_row, parse_page
from mlfactory.ingest.arxiv_papers import first_per_key, paper_row
from mlfactory.ingest.arxiv_replay import read_recorded
from mlfactory.ingest.csv_reader import BadRow
from mlfactory.ingest.loader import (
    LoadResult,
    Record,
    Sessions,
    current_watermark,
    load_batch,
    ordering_value,
)
from mlfactory.settings import Settings

log = logging.getLogger(__name__)

DATASET = "arxiv"
WATERMARK_FIELD = "updated"
RETRIES = 3
"""Further tries of a page after an HTTP error, a connection error, an answer that is no feed,
a page cut short or an unexpected empty page."""
USER_AGENT = "mlfactory (https://github.com/; arXiv API client)"

StoppedBy = Literal["watermark", "end", "max_results"]


class ArxivUnavailable(UserError):
    """The arXiv API refused the query, kept failing or could not be reached."""


@dataclass(frozen=True)
class Fetch:
    rows: list[Record | BadRow]
    stopped_by: StoppedBy
    """``watermark``: reached a paper already loaded; ``end``: no more results;
    ``max_results``: the cap, possibly before newer papers ran out."""


def fetch_papers(settings: Settings, watermark: Any = None) -> Fetch:
    """The papers matching ``arxiv_query`` updated after ``watermark`` (all when None), newest
    first, at most ``arxiv_max_results``, each paper once; entries that cannot be stored, and
    the entries of a page cut short, come back as :class:`BadRow` with the reason. Raises
    :class:`ArxivUnavailable` when the API cannot be read."""
    floor = _timestamp(watermark)
    rows: list[Record | BadRow] = []
    stopped_by: StoppedBy = "end"
    line = 0
    for page in _pages(settings):
        for entry in page.entries:
            line += 1
            if isinstance(entry, BadEntry):
                rows.append(BadRow(line, entry.reason, entry.raw, len(entry.raw.encode())))
            elif floor is not None and entry.updated <= floor:
                stopped_by = "watermark"
                return Fetch(list(first_per_key(rows)), stopped_by)
            else:
                rows.append(paper_row(entry, line, settings.max_field_bytes))
            if line == settings.arxiv_max_results:
                return Fetch(list(first_per_key(rows)), "max_results")
        if page.cut is not None:
            rows.append(cut_row(page, line + 1))
            line += page.lost or 0
    return Fetch(list(first_per_key(rows)), stopped_by)


def _pages(settings: Settings) -> Iterator[Page]:
    """The pages of the query, newest first, as the arXiv API serves them: ``arxiv_page_size``
    entries a request, ``arxiv_delay_seconds`` between requests, each request tried again
    ``RETRIES`` times after an HTTP error, a connection error, an answer that is no Atom feed,
    a page cut short or an unexpected empty page. Reading stops at the end of the result set
    (the first page's ``totalResults``) or when the caller stops asking."""
    search = arxiv.Search(
        query=settings.arxiv_query,
        sort_by=arxiv.SortCriterion.LastUpdatedDate,
        sort_order=arxiv.SortOrder.Descending,
    )
    reader = _PageReader(settings)
    offset, total = 0, None
    with reader:
        while True:
            arguments = search._url_args() | {
                "start": str(offset),
                "max_results": str(settings.arxiv_page_size),
            }
            page = reader.read(f"{settings.arxiv_api_url}?{urlencode(arguments)}", offset == 0)
            yield page
            if offset == 0:
                if not page.entries:
                    return
                total = page.total or 0
            offset += len(page.entries) + (page.lost or 0)
            if total is None or offset >= total:
                return


class _PageReader:
    """Requests of one fetch: the delay between them, retries, and what an error says."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = httpx.Client(timeout=settings.download_timeout, follow_redirects=True)
        self._last: float | None = None

    def __enter__(self) -> _PageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def read(self, url: str, first: bool) -> Page:
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            self._wait()
            try:
                response = self._client.get(url, headers={"User-Agent": USER_AGENT})
            except httpx.TransportError as exc:
                if last:
                    raise ArxivUnavailable(
                        f"cannot read the arXiv API at {self._settings.arxiv_api_url}: {exc}"
                    ) from exc
                continue
            if response.status_code != 200:
                if last:
                    query = self._settings.arxiv_query
                    hint = (
                        f"; check MLF_ARXIV_QUERY ({query!r})"
                        if response.status_code == 400
                        else ""
                    )
                    raise ArxivUnavailable(
                        f"the arXiv API answered HTTP {response.status_code} to {url} "
                        f"({attempt + 1} attempts){hint}"
                    )
                continue
            try:
                page = parse_page(response.content)
            except FeedError as exc:
                if last:
                    raise ArxivUnavailable(
                        f"the arXiv API at {url} answered no feed: {exc}"
                    ) from exc
                continue
            if not first and not page.entries and page.cut is None:
                if last:
                    raise ArxivUnavailable(f"the arXiv API answered an empty page to {url}")
                continue
            if page.cut is not None and not last:
                log.warning("arXiv page cut short (%s); asking again", page.cut)
                continue
            return page
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self) -> None:
        if self._last is not None:
            pause = self._settings.arxiv_delay_seconds - (time.monotonic() - self._last)
            if pause > 0:
                time.sleep(pause)
        self._last = time.monotonic()


def fetch_new(
    settings: Settings, sessions: Sessions, *, replay: bool = False, run_id: int | None = None
) -> LoadResult:
    """Load the papers updated since the last fetch into data set ``arxiv``, as one watermark
    batch on ``updated``: new papers are inserted, new versions update their item, and the
    batch's highest ``updated`` becomes the next watermark.

    ``replay`` reads the recorded API responses of the data set registry instead of the API
    (offline runs); the same watermark applies. Nothing is written when the API cannot be read.
    """
    with sessions() as session:
        watermark = current_watermark(session, DATASET)
    if replay:
        rows: Iterable[Record | BadRow] = read_recorded(settings)
        source, meta = "recorded arXiv API responses", {"replay": True}
    else:
        fetch = fetch_papers(settings, watermark)
        rows = fetch.rows
        source = f"{settings.arxiv_api_url}?search_query={settings.arxiv_query}"
        meta = {"query": settings.arxiv_query, "stopped_by": fetch.stopped_by}
        if fetch.stopped_by == "max_results" and watermark is not None:
            log.warning(
                "arXiv: %d papers fetched (MLF_ARXIV_MAX_RESULTS) before reaching the last "
                "fetch's watermark %s; older new papers are skipped",
                settings.arxiv_max_results,
                watermark,
            )
    result = load_batch(
        sessions,
        DATASET,
        rows,
        mode="watermark",
        watermark_field=WATERMARK_FIELD,
        source=source,
        meta=meta,
        run_id=run_id,
    )
    log.info(
        "arXiv: %d new, %d updated, %d rejected, %d older than the watermark skipped; watermark %s",
        result.rows_inserted,
        result.rows_updated,
        result.rows_rejected,
        result.older_than_watermark,
        result.watermark,
    )
    return result


def _timestamp(watermark: Any) -> datetime | None:
    if watermark is None:
        return None
    value = ordering_value(watermark)
    if not isinstance(value, datetime):
        raise ValueError(f"the arXiv watermark {watermark!r} is not a timestamp")
    return value
