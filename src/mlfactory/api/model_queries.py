"""What the store knows of a registered model: the pipelines that trained it and the champion
decisions their runs recorded (``summary.promotion``, written by ``pipelines/common.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store import PipelineRun

Sessions = sessionmaker[Session]


def trained_by(sessions: Sessions, model_name: str) -> list[str]:
    """The pipelines whose runs registered a version of ``model_name``, by name."""
    with sessions() as session:
        return list(
            session.scalars(
                select(PipelineRun.pipeline)
                .where(PipelineRun.model_name == model_name)
                .distinct()
                .order_by(PipelineRun.pipeline)
            )
        )


def recorded_promotions(sessions: Sessions, model_name: str) -> list[dict[str, Any]]:
    """The champion decision of each run that registered a version of ``model_name``, oldest
    first, with the run and when it was made."""
    with sessions() as session:
        runs = session.execute(
            select(
                PipelineRun.id, PipelineRun.summary, PipelineRun.started_at, PipelineRun.ended_at
            )
            .where(PipelineRun.model_name == model_name)
            .order_by(PipelineRun.id)
        ).all()
    decisions = []
    for run_id, summary, started_at, ended_at in runs:
        promotion = (summary or {}).get("promotion")
        if not isinstance(promotion, dict) or promotion.get("model_name") != model_name:
            continue
        decisions.append(
            {
                "version": str(promotion.get("version")),
                "decided_at": ended_at or started_at,
                "alias": promotion.get("alias"),
                "metric": promotion.get("metric"),
                "score": promotion.get("score"),
                "previous_champion": promotion.get("champion_version"),
                "previous_score": promotion.get("champion_score"),
                "reason": promotion.get("reason") or "",
                "pipeline_run_id": run_id,
            }
        )
    return decisions
