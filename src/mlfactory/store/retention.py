"""Retention: what a purge of old predictions, annotations and run records would remove, and
removing it.

The same selection serves the dry run and the purge, so a dry run shows exactly what would go.
Items and their history are never purged: they are the audited source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Select, delete, func, select
from sqlalchemy.orm import Session

from mlfactory.store.tables import Annotation, Item, PipelineRun, Prediction


@dataclass(frozen=True)
class Purge:
    """What to purge: rows of ``datasets`` and runs of ``pipelines`` created before ``before``
    (everything when None), never the run ``keep_run_id`` (the purging run itself)."""

    datasets: tuple[str, ...]
    pipelines: tuple[str, ...]
    annotation_kinds: tuple[str, ...] = ("summary",)
    before: datetime | None = None
    keep_run_id: int | None = None


def purge(session: Session, what: Purge, *, dry_run: bool) -> dict[str, int]:
    """Rows per table that match ``what`` (``dry_run``), or deleted. Task runs go with their
    pipeline runs; runs still going are never purged."""
    counts: dict[str, int] = {}
    for table, condition in _conditions(what).items():
        if dry_run:
            count = session.scalar(select(func.count()).select_from(table).where(*condition))
        else:
            count = session.execute(_delete(table, condition)).rowcount  # type: ignore[attr-defined]
        counts[table.__tablename__] = count or 0
    return counts


def _conditions(what: Purge) -> dict[Any, list[Any]]:
    items_of_datasets: Select[Any] = select(Item.id).where(Item.dataset.in_(what.datasets))
    conditions: dict[Any, list[Any]] = {
        Prediction: [Prediction.dataset.in_(what.datasets)],
        Annotation: [
            Annotation.item_id.in_(items_of_datasets),
            Annotation.kind.in_(what.annotation_kinds),
        ],
        # A run still going keeps its records: its next step would find its run gone.
        PipelineRun: [PipelineRun.pipeline.in_(what.pipelines), PipelineRun.status != "running"],
    }
    if what.before is not None:
        conditions[Prediction].append(Prediction.created_at < what.before)
        conditions[Annotation].append(Annotation.created_at < what.before)
        conditions[PipelineRun].append(PipelineRun.started_at < what.before)
    if what.keep_run_id is not None:
        conditions[PipelineRun].append(PipelineRun.id != what.keep_run_id)
    return conditions


def _delete(table: Any, condition: list[Any]) -> Delete:
    return delete(table).where(*condition).execution_options(synchronize_session=False)
