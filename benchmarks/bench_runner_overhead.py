"""Overhead of the local runner per step, against calling the same step functions directly.

Baseline ``direct``: the advertising pipeline's ``step.fn(ctx)`` in order with hand-built
contexts (same settings and sessions, a run id from ``records.start_run``, upstream outputs passed
by hand). Subject ``runner``: ``run_pipeline(pipeline, {}, settings=...)``, which adds parameter
validation, a sweep of interrupted runs, a ``task_runs`` row per attempt, output checks, tenacity
retries, observer events and the run's final status. Both run in this process, alternating which
goes first, each in a fresh ``MLF_HOME`` whose store and MLflow database are created before the
clock starts, after one unmeasured warm-up of each (imports and first-use costs).

    .venv/bin/python benchmarks/bench_runner_overhead.py --repeat 5
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from harness import Timings, datasets_dir, parse_args, report
from mlfactory.orchestration import Context, Pipeline, get_pipeline, records, run_pipeline
from mlfactory.orchestration.context import run_artifact_dir
from mlfactory.settings import Settings
from mlfactory.store import session_factory

GOAL = 1.05


def fresh_settings(root: Path) -> Settings:
    """Settings on a new home whose store and MLflow database already exist (one-time costs)."""
    settings = Settings(home=Path(tempfile.mkdtemp(dir=root)), datasets_dir=datasets_dir())
    if not settings.database_url.startswith(f"sqlite:///{settings.home}"):
        raise SystemExit(f"MLF_DATABASE_URL is set ({settings.database_url}); unset it")
    settings.ensure_dirs()
    session_factory(settings.database_url)  # migrates the store
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    client.search_experiments()  # creates the tracking tables
    client.search_registered_models()  # and opens the registry store
    return settings


def direct(pipeline: Pipeline, settings: Settings) -> None:
    """Every step function in order with hand-built contexts."""
    params = pipeline.params()
    sessions = session_factory(settings.database_url)
    run_id = records.start_run(sessions, pipeline.name, params.model_dump(mode="json"), "local")
    outputs: dict[str, dict[str, Any]] = {}
    for step in pipeline.ordered_steps():
        context = Context(
            run_id=run_id,
            pipeline=pipeline.name,
            step=step.name,
            attempt=1,
            engine="local",
            params=params,
            settings=settings,
            upstream={need: outputs[need] for need in step.needs},
            sessions=sessions,
            artifact_dir=run_artifact_dir(settings, pipeline.name, run_id),
            log=logging.getLogger(f"mlfactory.{pipeline.name}.{step.name}"),
        )
        outputs[step.name] = step.fn(context) or {}


def runner(pipeline: Pipeline, settings: Settings) -> None:
    """``run_pipeline`` on the same pipeline."""
    outcome = run_pipeline(pipeline, {}, settings=settings)
    if outcome.status != "success":
        raise SystemExit(f"runner failed: {outcome.error}")


def measure(side: Callable[[Pipeline, Settings], None], root: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``side`` in a fresh home, with MLflow's chatter
    on stderr kept off the screen."""
    settings = fresh_settings(root)
    gc.collect()  # leave no garbage of the previous run for this one's clock
    with contextlib.redirect_stderr(io.StringIO()):
        wall, cpu = time.perf_counter(), time.process_time()
        side(get_pipeline("advertising"), settings)
        return time.perf_counter() - wall, time.process_time() - cpu


def main(repeat: int) -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    steps = len(get_pipeline("advertising").ordered_steps())
    subject, baseline = Timings("runner"), Timings("direct")
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        measure(direct, root)  # warm-up: imports, lazy initialisation in sklearn and MLflow
        measure(runner, root)
        for i in range(repeat):
            pairs = [(baseline, direct), (subject, runner)]
            for timings, side in pairs if i % 2 == 0 else reversed(pairs):
                timings.add(*measure(side, root))
            print(f"repetition {i + 1}/{repeat} done", flush=True)
    print(f"advertising pipeline, {steps} steps, {repeat} repetitions per side")
    report(subject, baseline, GOAL)
    overhead = (subject.median - baseline.median) / steps
    paired = statistics.median(r - d for r, d in zip(subject.wall, baseline.wall, strict=True))
    print(
        f"runner overhead per step: {overhead * 1000:+.1f} ms (difference of medians), "
        f"{paired / steps * 1000:+.1f} ms (median of paired differences)"
    )


if __name__ == "__main__":
    main(parse_args(__doc__.splitlines()[0]).repeat)
