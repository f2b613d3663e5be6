"""The arXiv kinds, which key and label their own records: ``arxiv_api`` (the live API, or the
recorded responses at a path given for the load) and ``arxiv_snapshot`` (the labelled CSV)."""

from __future__ import annotations

from mlfactory.ingest.arxiv_replay import read_recorded, read_snapshot
from mlfactory.ingest.arxiv_source import fetch_papers
from mlfactory.ingest.sources import SourceRequest, SourceRows


def read_arxiv_api(request: SourceRequest) -> SourceRows:
    settings = request.settings
    if request.path is not None:
        return SourceRows(read_recorded(settings, request.path), origin=str(request.path))
    return SourceRows(
        fetch_papers(settings).rows,
        origin=f"{settings.arxiv_api_url}?search_query={settings.arxiv_query}",
    )


def read_arxiv_snapshot(request: SourceRequest) -> SourceRows:
    return SourceRows(
        read_snapshot(request.settings, request.path),
        origin=str(request.path) if request.path else "arxiv snapshot (CSV)",
    )
