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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import arxiv
import requests

from mlfactory.errors import UserError
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
"""Further tries of a page after an HTTP error, a connection error or an unexpected empty page."""

StoppedBy = Literal["watermark", "end", "max_results"]


class ArxivUnavailable(UserError):
    """The arXiv API refused the query, kept failing or could not be reached."""


@dataclass(frozen=True)
class Fetch:
    rows: list[Record | BadRow]
    stopped_by: StoppedBy
    """``watermark``: reached a paper already loaded; ``end``: no more results;
    ``max_results``: the cap, possibly before newer papers ran out."""


def arxiv_client(settings: Settings) -> arxiv.Client:
    """An arXiv client with the settings' endpoint, page size and delay between requests."""
    client = arxiv.Client(
        page_size=settings.arxiv_page_size,
        delay_seconds=settings.arxiv_delay_seconds,
        num_retries=RETRIES,
    )
    # The client formats each page's URL as query_url_format.format(<query string>).
    endpoint = settings.arxiv_api_url.replace("{", "{{").replace("}", "}}")
    client.query_url_format = f"{endpoint}?{{}}"
    return client


def fetch_papers(settings: Settings, watermark: Any = None) -> Fetch:
    """The papers matching ``arxiv_query`` updated after ``watermark`` (all when None), newest
    first, at most ``arxiv_max_results``, each paper once; entries that cannot be stored come
    back as :class:`BadRow`. Raises :class:`ArxivUnavailable` when the API cannot be read."""
    floor = _timestamp(watermark)
    search = arxiv.Search(
        query=settings.arxiv_query,
        max_results=settings.arxiv_max_results,
        sort_by=arxiv.SortCriterion.LastUpdatedDate,
        sort_order=arxiv.SortOrder.Descending,
    )
    rows: list[Record | BadRow] = []
    stopped_by: StoppedBy = "end"
    try:
        for line, result in enumerate(arxiv_client(settings).results(search), start=1):
            if floor is not None and result.updated <= floor:
                stopped_by = "watermark"
                break
            rows.append(paper_row(result, line, settings.max_field_bytes))
            if line == settings.arxiv_max_results:
                stopped_by = "max_results"
    except arxiv.HTTPError as exc:
        hint = f"; check MLF_ARXIV_QUERY ({settings.arxiv_query!r})" if exc.status == 400 else ""
        raise ArxivUnavailable(
            f"the arXiv API answered HTTP {exc.status} to {exc.url} "
            f"({exc.retry + 1} attempts){hint}"
        ) from exc
    except (arxiv.ArxivError, requests.RequestException) as exc:
        raise ArxivUnavailable(
            f"cannot read the arXiv API at {settings.arxiv_api_url}: {exc}"
        ) from exc
    return Fetch(list(first_per_key(rows)), stopped_by)


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
        "arXiv: %d new, %d updated, %d rejected; watermark %s",
        result.rows_inserted,
        result.rows_updated,
        result.rows_rejected,
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
