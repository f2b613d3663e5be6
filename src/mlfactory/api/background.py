"""Runs started from the API: ``run_pipeline`` in a thread, answering with the run id as soon
as the run record exists.

The thread is not a daemon: a started run is allowed to finish when the server shuts down
gracefully, and one cut short is marked failed by the next reader of the run records.
"""

from __future__ import annotations

import logging
import threading

from pydantic import BaseModel

from mlfactory.orchestration import Pipeline, run_pipeline
from mlfactory.settings import Settings

log = logging.getLogger(__name__)


class RunNotStarted(Exception):
    """The run failed before its record was written; the message says why."""


def start_run(pipeline: Pipeline, params: BaseModel, settings: Settings) -> int:
    """Start a run of ``pipeline`` with validated ``params`` in a new thread; its run id."""
    ready = threading.Event()
    run_ids: list[int] = []
    errors: list[BaseException] = []

    def started(run_id: int) -> None:
        run_ids.append(run_id)
        ready.set()

    def work() -> None:
        try:
            run_pipeline(pipeline, params, settings=settings, on_start=started)
        except BaseException as exc:
            log.exception("run of %s started from the API did not complete", pipeline.name)
            errors.append(exc)
        finally:
            ready.set()

    threading.Thread(target=work, name=f"mlfactory-run-{pipeline.name}").start()
    ready.wait()
    if not run_ids:
        error = errors[0] if errors else None
        log.error("run of %s not started", pipeline.name, exc_info=error)
        raise RunNotStarted(f"{type(error).__name__}: {error}")
    return run_ids[0]
