"""Store reads behind the load routes: a data set's batches with its size after each, and its
rejected rows with their reasons."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.ingest.state import load_history
from mlfactory.store import Rejection

Sessions = sessionmaker[Session]


def load_batches(sessions: Sessions, dataset: str) -> list[dict[str, Any]]:
    """Every batch of ``dataset``, oldest first, with ``items_after``: how many items the data
    set held once the batch completed (None for a batch that did not). The loader never
    deletes items, so that is the sum of the rows completed batches inserted."""
    size = 0
    batches = load_history(sessions, dataset)
    for batch in batches:
        completed = batch["status"] == "completed"
        size += batch["rows_inserted"] if completed else 0
        batch["items_after"] = size if completed else None
    return batches


def rejection_page(
    sessions: Sessions,
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
