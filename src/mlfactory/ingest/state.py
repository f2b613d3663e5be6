"""What the store holds of a data set: its current state and the history of its loads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store import DataLoad, Rejection


def dataset_status(sessions: sessionmaker[Session], dataset: str) -> dict[str, Any]:
    """Row counts, label distribution and the last completed batch, read from the store's views."""
    with sessions() as session:
        state = session.execute(
            text("SELECT items, labelled FROM current_data_state WHERE dataset = :d"),
            {"d": dataset},
        ).one_or_none()
        classes = session.execute(
            text("SELECT label, items FROM class_distribution WHERE dataset = :d ORDER BY label"),
            {"d": dataset},
        ).all()
        # From the loads, not the view: a replace may have left the data set with no live item.
        last = session.scalar(
            select(DataLoad)
            .where(DataLoad.dataset == dataset, DataLoad.status == "completed")
            .order_by(DataLoad.id.desc())
            .limit(1)
        )
    return {
        "dataset": dataset,
        "items": state.items if state else 0,
        "labelled": state.labelled if state else 0,
        "classes": {str(label): count for label, count in classes},
        "last_batch": _batch_dict(last) if last else None,
    }


def load_history(sessions: sessionmaker[Session], dataset: str) -> list[dict[str, Any]]:
    """Every load batch of the data set, oldest first."""
    with sessions() as session:
        batches = session.scalars(
            select(DataLoad).where(DataLoad.dataset == dataset).order_by(DataLoad.id)
        ).all()
    return [_batch_dict(batch) for batch in batches]


def _batch_dict(batch: DataLoad) -> dict[str, Any]:
    return {
        "id": batch.id,
        "name": batch.name,
        "mode": batch.mode,
        "percentage": batch.percentage,
        "status": batch.status,
        "rows_seen": batch.rows_seen,
        "rows_inserted": batch.rows_inserted,
        "rows_updated": batch.rows_updated,
        "rows_unchanged": batch.rows_unchanged,
        "rows_rejected": batch.rows_rejected,
        "rows_deleted": batch.rows_deleted,
        "started_at": batch.started_at.isoformat(),
        "ended_at": batch.ended_at.isoformat() if batch.ended_at else None,
        "error": batch.error,
        "metadata": batch.meta,
    }


def rejection_page(
    sessions: sessionmaker[Session],
    dataset: str,
    *,
    batch_id: int | None,
    stage: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """Rejected rows of ``dataset``, newest first, with how many there are per stage (under
    the batch filter, before the stage filter)."""
    where = [Rejection.dataset == dataset]
    if batch_id is not None:
        where.append(Rejection.batch_id == batch_id)
    with sessions() as session:
        stages = dict(
            session.execute(
                select(Rejection.stage, func.count()).where(*where).group_by(Rejection.stage)
            ).all()
        )
        if stage is not None:
            where.append(Rejection.stage == stage)
        total = session.scalar(select(func.count()).select_from(Rejection).where(*where)) or 0
        rows = session.scalars(
            select(Rejection)
            .where(*where)
            .order_by(Rejection.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        fields = [attr.key for attr in Rejection.__mapper__.column_attrs if attr.key != "dataset"]
        return {
            "total": total,
            "by_stage": {name: stages[name] for name in sorted(stages)},
            "rejections": [{name: getattr(row, name) for name in fields} for row in rows],
        }
