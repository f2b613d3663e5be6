"""The local runner: a pipeline's steps in dependency order, in this process, with retries."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel
from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_fixed

from mlfactory.errors import UserError
from mlfactory.orchestration import records
from mlfactory.orchestration.announce import announce_run
from mlfactory.orchestration.context import Context, run_artifact_dir
from mlfactory.orchestration.params import validate_params
from mlfactory.orchestration.pipeline import Pipeline, Step
from mlfactory.settings import Settings, get_settings
from mlfactory.store import session_factory

MAX_OUTPUT_BYTES = 64 * 1024
"""A step's output travels as a run record and an Airflow XCom; big data belongs elsewhere."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepEvent:
    """What an observer (a progress bar) hears about a step."""

    step: str
    kind: Literal["started", "succeeded", "failed", "retrying", "skipped"]
    attempt: int = 0
    duration_s: float = 0.0
    error: str | None = None


@dataclass
class RunOutcome:
    run_id: int
    pipeline: str
    status: Literal["success", "failed"] = "success"
    error: str | None = None
    error_type: str | None = None  # the exception class of the failed step
    failed_step: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0


class StepOutputError(TypeError):
    pass


def check_output(step: str, output: object) -> dict[str, Any]:
    """A step's output as a JSON-ready dict, or a clear error saying why it cannot be one."""
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise StepOutputError(f"step {step!r} returned {type(output).__name__}, not a dict or None")
    try:
        size = len(json.dumps(output))
    except (TypeError, ValueError) as exc:
        raise StepOutputError(f"step {step!r} returned output that is not JSON: {exc}") from None
    if size > MAX_OUTPUT_BYTES:
        raise StepOutputError(
            f"step {step!r} returned {size:,} bytes of output (limit {MAX_OUTPUT_BYTES:,}); "
            "write large data to the store or the run's artifact_dir and return its path"
        )
    return output


def run_pipeline(
    pipeline: Pipeline,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    settings: Settings | None = None,
    observer: Callable[[StepEvent], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunOutcome:
    """Run every step once in order (each retried as configured) and record every attempt.

    Parameters are validated before anything is recorded; a failed step marks the steps that
    need it ``upstream_failed`` while independent steps still run. Hooks never fail the run.
    ``on_start`` hears the run id as soon as the run record exists (an API answering before
    the run ends needs it).
    """
    settings = settings or get_settings()
    settings.ensure_dirs()
    typed = (
        params if isinstance(params, BaseModel) else validate_params(pipeline.params, params or {})
    )
    sessions = session_factory(settings.database_url)
    records.fail_interrupted_runs(sessions)
    run_id = records.start_run(sessions, pipeline.name, typed.model_dump(mode="json"), "local")
    if on_start is not None:
        on_start(run_id)
    outcome = RunOutcome(run_id=run_id, pipeline=pipeline.name)
    notify = observer or (lambda _event: None)
    started = time.perf_counter()
    try:
        for step in pipeline.ordered_steps():
            if any(need not in outcome.outputs for need in step.needs):
                records.skip_step(sessions, run_id, step.name, "local")
                notify(StepEvent(step.name, "skipped"))
                continue
            context = Context(
                run_id=run_id,
                pipeline=pipeline.name,
                step=step.name,
                attempt=0,
                engine="local",
                params=typed,
                settings=settings,
                upstream={need: outcome.outputs[need] for need in step.needs},
                sessions=sessions,
                artifact_dir=run_artifact_dir(settings, pipeline.name, run_id),
                log=logging.getLogger(f"mlfactory.{pipeline.name}.{step.name}"),
            )
            try:
                outcome.outputs[step.name] = _run_with_retries(pipeline, step, context, notify)
            except Exception as exc:  # the step's own error, recorded; the run goes on to finish
                if outcome.failed_step is None:
                    outcome.status, outcome.failed_step = "failed", step.name
                    outcome.error_type = type(exc).__name__
                    outcome.error = f"step {step.name!r} failed: {type(exc).__name__}: {exc}"
    except BaseException:
        records.finish_run(sessions, run_id, "failed", "interrupted")
        raise
    outcome.duration_s = time.perf_counter() - started
    records.finish_run(sessions, run_id, outcome.status, outcome.error)
    announce_run(pipeline, outcome, settings, sessions)
    return outcome


def run_step_attempt(step: Step, context: Context) -> dict[str, Any]:
    """One attempt of one step with its ``task_runs`` row; engines share this path."""
    sessions = context.sessions
    task_id = records.start_attempt(
        sessions, context.run_id, step.name, context.attempt, context.engine
    )
    try:
        output = check_output(step.name, step.fn(context))
    except Exception as exc:
        records.finish_attempt(
            sessions,
            task_id,
            "failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
        raise
    records.finish_attempt(sessions, task_id, "success", output=output)
    return output


def _run_with_retries(
    pipeline: Pipeline, step: Step, context: Context, notify: Callable[[StepEvent], None]
) -> dict[str, Any]:
    retries, delay = pipeline.retry_policy(step)

    def before_sleep(state: Any) -> None:
        error = state.outcome.exception()
        notify(StepEvent(step.name, "retrying", state.attempt_number, error=str(error)))
        context.log.info(
            "attempt %d failed (%s); retrying in %ss", state.attempt_number, error, delay
        )

    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        retry=retry_if_not_exception_type(UserError),  # a mistake to fix fails at once
        wait=wait_fixed(delay),
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            number = attempt.retry_state.attempt_number
            notify(StepEvent(step.name, "started", number))
            began = time.perf_counter()
            try:
                output = run_step_attempt(step, replace(context, attempt=number))
            except Exception as exc:
                if number > retries or isinstance(exc, UserError):
                    notify(
                        StepEvent(
                            step.name, "failed", number, time.perf_counter() - began, str(exc)
                        )
                    )
                raise
            notify(StepEvent(step.name, "succeeded", number, time.perf_counter() - began))
    return output
