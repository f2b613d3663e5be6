"""Operations: the metrics Prometheus scrapes."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import generate_latest

from mlfactory.api.catalog import CatalogDep
from mlfactory.api.deps import SessionsDep, Viewer
from mlfactory.api.metrics import CONTENT_TYPE, ScrapeCollector, process_metrics
from mlfactory.api.registry import RegistryDep
from mlfactory.api.store_metrics import StoreCollector

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
)
def metrics(
    _: Viewer, sessions: SessionsDep, catalog: CatalogDep, registry: RegistryDep
) -> Response:
    """Prometheus text format: requests and latency per route, predictions, model loads, run
    outcomes, durations and metrics, champion versions per pipeline, rows loaded, rows per
    table, and the latest drift figures per data set and feature group."""
    scraped = generate_latest(ScrapeCollector(sessions, catalog.all(), registry))
    stored = generate_latest(StoreCollector(sessions))
    return Response(process_metrics() + scraped + stored, media_type=CONTENT_TYPE)
