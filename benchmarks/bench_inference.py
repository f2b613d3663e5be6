"""Batch inference: classifying the pending articles in the store vs raw ``predict`` on the rows.

Rows: the 993 labelled papers of the arXiv snapshot, replicated under new keys up to ``--rows``,
loaded into a fresh store (SQLite and PostgreSQL). Model: the TF-IDF + logistic regression of
``arxiv_train``, trained on the snapshot and registered as champion in a temporary MLflow store.

- subject ``batch``: ``predict_pending`` on the store — claim the pending items in batches of
  500, build the model's input, predict with probabilities, write one ``predictions`` row per item,
  commit each batch; every repetition starts with no prediction stored.
- baseline ``raw``: ``model.predict`` on the same rows already in memory as a data frame (no store,
  no probabilities, nothing written).

Goal: the batch step's rows/s >= 0.7x raw predict's (its time <= 1/0.7 = 1.43x).

    .venv/bin/python benchmarks/bench_inference.py --rows 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import delete

from bench_ingest import DEFAULT_POSTGRES
from bench_ingest import store as empty_store
from harness import Timings, datasets_dir, report
from mlfactory.ingest.arxiv_replay import read_snapshot
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.pipelines.arxiv.articles import TEXT_COLUMNS, article_features
from mlfactory.settings import Settings
from mlfactory.store import Prediction, session_factory

GOAL = 1 / 0.7
MODEL = "arxiv_bench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="Articles in the store.")
    parser.add_argument("--repeat", type=int, default=3, help="Measured repetitions per side.")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("MLF_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as root:
        settings = Settings(home=Path(root), datasets_dir=datasets_dir())
        settings.ensure_dirs()
        papers = [row for row in read_snapshot(settings) if isinstance(row, Record)]
        model = train(settings, papers)
        replicas = [
            Record(f"{copy}-{paper.key}", paper.data, paper.label, paper.line)
            for copy in range(-(-args.rows // len(papers)))
            for paper in papers
        ][: args.rows]
        frame = article_features([paper.data for paper in replicas])
        for backend in args.backend or ["sqlite", "postgresql"]:
            with ExitStack() as stack:
                url = stack.enter_context(empty_store(backend, args.postgres_url))
                measure(
                    backend,
                    settings.model_copy(update={"database_url": url}),
                    model,
                    frame,
                    replicas,
                    args.repeat,
                )


def train(settings: Settings, papers: list[Record]) -> Any:
    """The TF-IDF classifier of ``arxiv_train`` fitted on the papers, registered as champion."""
    import mlflow

    from mlfactory.training.registry import CLOUDPICKLE, log_and_register
    from mlfactory.training.text import text_classifier
    from mlfactory.training.tracking import experiment_id, use_tracking

    features = article_features([paper.data for paper in papers])
    model = text_classifier(TEXT_COLUMNS).fit(features, [paper.label for paper in papers])
    client = use_tracking(settings)
    with mlflow.start_run(experiment_id=experiment_id(MODEL, settings)):
        registered = log_and_register(model, features, MODEL, serialization_format=CLOUDPICKLE)
    client.set_registered_model_alias(MODEL, "champion", registered.version)
    return model


def measure(
    backend: str,
    settings: Settings,
    model: Any,
    frame: pd.DataFrame,
    replicas: list[Record],
    repeat: int,
) -> None:
    from mlfactory.inference.batch import predict_pending

    sessions = session_factory(settings.database_url)
    load_batch(sessions, "arxiv", replicas)
    batch, raw = Timings("batch"), Timings("raw")

    def clear() -> None:
        with sessions.begin() as session:
            session.execute(delete(Prediction))

    def classify() -> None:
        result = predict_pending(
            sessions, settings, "arxiv", MODEL, to_features=article_features, batch_size=500
        )
        if result.predicted != len(replicas):
            raise RuntimeError(f"predicted {result.predicted} of {len(replicas)} articles")

    clear()
    classify()  # warm-up: the model is loaded once per process, as in a worker
    for _ in range(repeat):
        clear()
        timed(batch, classify)
        timed(raw, lambda: model.predict(frame))
    rows = len(replicas)
    print(f"{backend}: {rows:,} articles")
    report(batch, raw, GOAL)
    throughput = raw.median / batch.median
    print(
        f"  batch {rows / batch.median:,.0f} rows/s, raw {rows / raw.median:,.0f} rows/s: "
        f"{throughput:.2f}x (goal >= 0.70x: {'met' if throughput >= 0.7 else 'missed'})"
    )


def timed(timings: Timings, work: Callable[[], object]) -> None:
    started, cpu = time.perf_counter(), _cpu()
    work()
    timings.add(time.perf_counter() - started, _cpu() - cpu)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
