"""Prometheus metrics of the API (exported at ``/metrics``).

Counted as things happen: requests and their latency per route template (``/v1/items/{item_id}``,
never the raw path, so ids cannot multiply the series), method and status, by the
:class:`RequestMetrics` middleware; predictions and model loads, by the serving code. Read at
scrape time: run outcomes from the store and champion versions from the registry
(:class:`ScrapeCollector`).

With several server processes, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, the same for
all of them, before they start): :func:`process_metrics` then adds up every process's counters,
whichever process answers the scrape.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlfactory.api.queries import model_name_of, run_outcomes
from mlfactory.api.registry import ModelRegistry, RegistryUnavailable
from mlfactory.orchestration import Pipeline

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of requests no route matched (404s of any path)."""

REQUESTS = Counter(
    "mlfactory_http_requests_total",
    "HTTP requests answered, per method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "mlfactory_http_request_duration_seconds",
    "Time to answer an HTTP request, per method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PREDICTIONS = Counter(
    "mlfactory_predictions_total",
    "Predictions served, per pipeline, model version and label.",
    ["pipeline", "model", "version", "label"],
)
MODEL_LOAD_SECONDS = Histogram(
    "mlfactory_model_load_seconds",
    "Time to load a champion model from the registry.",
    ["pipeline", "model"],
)


def record_predictions(pipeline: str, model: str, version: str, labels: Iterable[str]) -> None:
    for label in labels:
        PREDICTIONS.labels(pipeline, model, version, label).inc()


def record_model_load(pipeline: str, model: str, seconds: float) -> None:
    MODEL_LOAD_SECONDS.labels(pipeline, model).observe(seconds)


class RequestMetrics:
    """Pure ASGI middleware counting every HTTP request and timing it until its last byte.

    The route template is read after the app ran: the router leaves the matched route in the
    scope (``scope["route"]``); routes that do not (Starlette's own, in older versions) are
    matched again here. A request that raised before answering counts as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        began = time.perf_counter()
        try:
            await self.app(scope, receive, watch)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            labels = (method, route_template(scope), str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - began)


def route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    if path is not None:
        return path
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


class ScrapeCollector(Collector):
    """Metrics read when scraped: runs per pipeline and status, and the time the last of them
    ended, from the store (one grouped query); the champion version of each pipeline's model,
    from the registry (one lookup per pipeline); whether the registry answered."""

    def __init__(
        self, sessions: sessionmaker[Session], pipelines: list[Pipeline], registry: ModelRegistry
    ) -> None:
        self._sessions = sessions
        self._pipelines = pipelines
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "mlfactory_pipeline_runs",
            "Runs recorded in the store, per pipeline and status.",
            labels=["pipeline", "status"],
        )
        ended = GaugeMetricFamily(
            "mlfactory_pipeline_last_run_end_timestamp_seconds",
            "When the last run of each pipeline and status ended (Unix time).",
            labels=["pipeline", "status"],
        )
        for pipeline, status, count, last_end in run_outcomes(self._sessions):
            runs.add_metric([pipeline, status], count)
            if last_end is not None:
                ended.add_metric([pipeline, status], last_end.timestamp())
        yield runs
        yield ended
        yield from self._champions()

    def _champions(self) -> Iterator[Metric]:
        champions = GaugeMetricFamily(
            "mlfactory_champion_version",
            "The registered model version holding alias champion, per pipeline and model.",
            labels=["pipeline", "model"],
        )
        up = GaugeMetricFamily(
            "mlfactory_model_registry_up", "Whether the model registry answered this scrape."
        )
        answered = True
        for pipeline in self._pipelines:
            name = (
                pipeline.serving.model_name
                if pipeline.serving
                else model_name_of(self._sessions, pipeline.name)
            )
            if name is None:
                continue
            try:
                champion = self._registry.champion(name)
            except RegistryUnavailable as exc:
                log.warning("champion of %s not read: %s", name, exc)
                answered = False
                break
            if champion is not None and champion.version.isdigit():
                champions.add_metric([pipeline.name, name], int(champion.version))
        up.add_metric([], 1 if answered else 0)
        yield champions
        yield up


def process_metrics() -> bytes:
    """The counters and histograms of this process, or of every server process when
    ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
