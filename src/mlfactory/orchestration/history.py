"""Reading run records back: recent runs, one run's attempts, the last run of each pipeline."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store import PipelineRun, TaskRun


def list_runs(
    sessions: sessionmaker[Session], pipeline: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Newest first, each with its steps' final states."""
    query = select(PipelineRun).order_by(PipelineRun.id.desc()).limit(limit)
    if pipeline:
        query = query.where(PipelineRun.pipeline == pipeline)
    with sessions() as session:
        runs = session.scalars(query).all()
        return [_run_dict(run, _attempts(session, run.id)) for run in runs]


def get_run(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any] | None:
    with sessions() as session:
        run = session.get(PipelineRun, run_id)
        return None if run is None else _run_dict(run, _attempts(session, run_id))


def latest_runs(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """The last run of every pipeline that has run."""
    newest = select(func.max(PipelineRun.id)).group_by(PipelineRun.pipeline)
    with sessions() as session:
        runs = session.scalars(
            select(PipelineRun).where(PipelineRun.id.in_(newest)).order_by(PipelineRun.pipeline)
        ).all()
        return [_run_dict(run, _attempts(session, run.id)) for run in runs]


def page_runs(
    sessions: sessionmaker[Session],
    pipeline: str,
    *,
    limit: int = 20,
    offset: int = 0,
    status: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of a pipeline's runs, newest first (optionally only those in ``status``), and
    how many runs there are in all."""
    where = [PipelineRun.pipeline == pipeline]
    if status is not None:
        where.append(PipelineRun.status == status)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(PipelineRun).where(*where)) or 0
        runs = session.scalars(
            select(PipelineRun)
            .where(*where)
            .order_by(PipelineRun.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return total, [_run_dict(run, _attempts(session, run.id)) for run in runs]


def _attempts(session: Session, run_id: int) -> list[TaskRun]:
    return list(
        session.scalars(select(TaskRun).where(TaskRun.run_id == run_id).order_by(TaskRun.id))
    )


def _run_dict(run: PipelineRun, attempts: list[TaskRun]) -> dict[str, Any]:
    final = {attempt.step: attempt for attempt in attempts}  # the last attempt of each step wins
    duration = (run.ended_at - run.started_at).total_seconds() if run.ended_at else None
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status,
        "engine": run.engine,
        "params": run.params,
        "started_at": run.started_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration_s": duration,
        "error": run.error,
        "mlflow_run_id": run.mlflow_run_id,
        "model_name": run.model_name,
        "model_version": run.model_version,
        "metrics": run.metrics,
        "summary": run.summary,
        "step_states": dict(Counter(attempt.status for attempt in final.values())),
        "attempts": [
            {
                "step": attempt.step,
                "attempt": attempt.attempt,
                "status": attempt.status,
                "engine": attempt.engine,
                "duration_s": attempt.duration_s,
                "error": attempt.error,
                "traceback": attempt.traceback,
                "output": attempt.output,
            }
            for attempt in attempts
        ],
    }
