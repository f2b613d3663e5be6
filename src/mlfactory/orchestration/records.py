"""Run records: one ``pipeline_runs`` row per run and one ``task_runs`` row per step attempt.

Every engine writes through these functions, so status, history and metrics read the same
whether the local runner or Airflow ran the steps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.processes import is_dead, owner
from mlfactory.store import PipelineRun, TaskRun, utcnow

Sessions = sessionmaker[Session]


def start_run(
    sessions: Sessions,
    pipeline: str,
    params: dict[str, Any],
    engine: str,
    external_id: str | None = None,
) -> int:
    # Only a local run lives and dies with this process; an Airflow run outlives the worker
    # process that happened to start it, so it records no owner to be judged by.
    host, pid = owner() if engine == "local" else (None, None)
    with sessions.begin() as session:
        run = PipelineRun(
            pipeline=pipeline,
            status="running",
            engine=engine,
            params=params,
            external_id=external_id,
            host=host,
            pid=pid,
        )
        session.add(run)
        session.flush()
        return run.id


def find_run(sessions: Sessions, external_id: str) -> int | None:
    """The run an engine knows as ``external_id`` (e.g. an Airflow DAG run), if recorded."""
    with sessions() as session:
        return session.scalar(select(PipelineRun.id).where(PipelineRun.external_id == external_id))


def start_or_get_run(
    sessions: Sessions, pipeline: str, params: dict[str, Any], engine: str, external_id: str
) -> int:
    """The run record of ``external_id``, created by whichever task gets there first."""
    found = find_run(sessions, external_id)
    if found is not None:
        return found
    try:
        return start_run(sessions, pipeline, params, engine, external_id)
    except IntegrityError:  # another task of the same run created it meanwhile
        found = find_run(sessions, external_id)
        assert found is not None
        return found


def finish_run(sessions: Sessions, run_id: int, status: str, error: str | None = None) -> None:
    with sessions.begin() as session:
        session.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id)
            .values(status=status, error=error, ended_at=utcnow())
        )


def update_run(sessions: Sessions, run_id: int, **fields: Any) -> None:
    """Set link columns (``mlflow_run_id``, ``model_version``, ...); ``metrics`` and ``summary``
    are merged into what the run already holds."""
    with sessions.begin() as session:
        run = session.get_one(PipelineRun, run_id, with_for_update=True)
        for name in ("metrics", "summary"):
            if name in fields:
                fields[name] = {**getattr(run, name), **fields[name]}
        for name, value in fields.items():
            setattr(run, name, value)


def start_attempt(sessions: Sessions, run_id: int, step: str, attempt: int, engine: str) -> int:
    with sessions.begin() as session:
        task = TaskRun(run_id=run_id, step=step, attempt=attempt, status="running", engine=engine)
        session.add(task)
        session.flush()
        return task.id


def finish_attempt(
    sessions: Sessions,
    task_id: int,
    status: str,
    *,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    traceback: str | None = None,
) -> None:
    with sessions.begin() as session:
        task = session.get_one(TaskRun, task_id)
        task.status, task.output, task.error, task.traceback = status, output, error, traceback
        task.ended_at = utcnow()
        task.duration_s = (task.ended_at - task.started_at).total_seconds()


def skip_step(sessions: Sessions, run_id: int, step: str, engine: str) -> None:
    """Record that a step did not run because a step it needs failed."""
    with sessions.begin() as session:
        now = utcnow()
        session.add(
            TaskRun(
                run_id=run_id,
                step=step,
                attempt=0,
                status="upstream_failed",
                engine=engine,
                started_at=now,
                ended_at=now,
                duration_s=0.0,
            )
        )


def fail_interrupted_runs(sessions: Sessions) -> list[int]:
    """Mark as failed the runs still 'running' whose process on this host is gone (a crash,
    SIGKILL, power loss), with their unfinished attempts; returns their ids."""
    with sessions.begin() as session:
        running = session.scalars(select(PipelineRun).where(PipelineRun.status == "running"))
        dead = [run for run in running if is_dead(run.host, run.pid)]
        for run in dead:
            run.status, run.ended_at = "failed", utcnow()
            run.error = (
                f"interrupted: process {run.pid} on {run.host} ended before the run finished"
            )
            session.execute(
                update(TaskRun)
                .where(TaskRun.run_id == run.id, TaskRun.status == "running")
                .values(status="failed", error="interrupted", ended_at=utcnow())
            )
        return [run.id for run in dead]
