"""Batch inference: predict every item of a data set that has no prediction from the champion.

Work selection instead of a queue. The work is "items with no ``predictions`` row for this model
name and champion version", read from the store each time, so a crash or a restart loses nothing
(committed batches stay, the rest is still pending) and several workers can share the work.

Each batch is one transaction: claim up to ``batch_size`` pending items, predict them, insert
their predictions in one statement, commit. Claiming:

- PostgreSQL: ``SELECT ... FOR NO KEY UPDATE SKIP LOCKED LIMIT n`` on ``items``. Workers skip
  each other's batches instead of waiting for them. ``NO KEY UPDATE`` rather than ``UPDATE``: it
  excludes other claimers just the same, but does not block inserts that merely reference the
  item (the foreign key check of another step's annotation or another model's prediction).
- SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock first, so the select and the
  insert are serialised with every other writer.

On PostgreSQL a claim often returns items another worker has just predicted: the claim's snapshot
is taken when the statement starts, before that worker commits, and the row lock is free again
by the time the scan reaches the row (the item row itself is not changed, so PostgreSQL does not
re-check it). So once the locks are held, a second statement, with a fresh snapshot, drops the
claimed items that have a prediction by now; whoever predicted them had to commit before this
transaction could lock them, so the check is exact and no model work is wasted. The unique index
on (item, model name, version) with ``ON CONFLICT DO NOTHING`` remains the last guard (against a
writer that does not claim first); only rows really inserted are counted.

When nothing can be claimed but items are still pending on PostgreSQL, they are locked by another
transaction (another worker's batch, another step, a load in progress): the call looks again
shortly and stops after ``LOCKED_PATIENCE`` seconds without a claim, leaving them for later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Select, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.inference.champion import LoadedModel, load_champion
from mlfactory.settings import Settings
from mlfactory.store import Item, Prediction

if TYPE_CHECKING:
    import pandas as pd

Sessions = sessionmaker[Session]
Features = Callable[[list[dict[str, Any]]], "pd.DataFrame"]

LOCKED_RETRY_DELAY = 0.05  # seconds between looks while every pending item is locked by others
LOCKED_PATIENCE = 30.0  # seconds without a claim after which locked items are left for later

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPredictionResult:
    model_name: str
    model_version: str
    predicted: int  # predictions this call inserted
    batches: int  # batches that predicted something, each committed on its own
    duplicates_dropped: int = 0  # predictions not written: the item had one by then

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_pending(
    sessions: Sessions,
    settings: Settings,
    dataset: str,
    model_name: str,
    *,
    to_features: Features,
    batch_size: int = 500,
    run_id: int | None = None,
    limit: int | None = None,
) -> BatchPredictionResult:
    """Predict the items of ``dataset`` that have no prediction from the champion version of
    ``model_name``, in batches, until none is pending (or ``limit`` predictions were written).

    ``to_features`` turns the items' ``data`` (JSON as stored) into the model's input frame, one
    row per item in the same order. The champion is resolved once: every prediction of the call
    carries that version, even if the alias moves meanwhile.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    champion = load_champion(settings, model_name)
    predicted = batches = dropped = 0
    last_claim = time.monotonic()
    while limit is None or predicted < limit:
        size = batch_size if limit is None else min(batch_size, limit - predicted)
        with sessions.begin() as session:
            locked, claimed = _claim(session, dataset, champion, size)
            inserted = (
                _predict_and_write(session, dataset, champion, claimed, to_features, run_id)
                if claimed
                else 0
            )
        if locked:
            last_claim = time.monotonic()
            if claimed:
                batches += 1
                predicted += inserted
                dropped += len(claimed) - inserted
            logger.debug(
                "%s v%s: %d items claimed, %d still pending, %d predicted",
                model_name,
                champion.version,
                locked,
                len(claimed),
                inserted,
            )
            continue
        if not _locked_items_pending(sessions, dataset, champion):
            break
        if time.monotonic() - last_claim > LOCKED_PATIENCE:
            logger.warning(
                "%s v%s: pending items of %r stayed locked by other transactions for %.0fs; "
                "left for a later run",
                model_name,
                champion.version,
                dataset,
                LOCKED_PATIENCE,
            )
            break
        time.sleep(LOCKED_RETRY_DELAY)
    logger.info(
        "%s v%s: %d items of %r predicted in %d batches",
        model_name,
        champion.version,
        predicted,
        dataset,
        batches,
    )
    return BatchPredictionResult(
        model_name=model_name,
        model_version=champion.version,
        predicted=predicted,
        batches=batches,
        duplicates_dropped=dropped,
    )


def pending_items(dataset: str, model_name: str, model_version: str) -> Select[Any]:
    """Ids and data of the items of ``dataset`` with no prediction from this model version, in id
    order."""
    predicted = exists().where(
        Prediction.item_id == Item.id,
        Prediction.model_name == model_name,
        Prediction.model_version == model_version,
    )
    return select(Item.id, Item.data).where(Item.dataset == dataset, ~predicted).order_by(Item.id)


def _claim(
    session: Session, dataset: str, champion: LoadedModel, size: int
) -> tuple[int, list[Row[Any]]]:
    """Lock up to ``size`` pending items: how many were locked, and those still pending."""
    query = pending_items(dataset, champion.name, champion.version).limit(size)
    if _dialect(session) == "sqlite":
        # The write lock first, as the transaction's first statement: the select is then current.
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        claimed = list(session.execute(query))
        return len(claimed), claimed
    locked = list(session.execute(query.with_for_update(skip_locked=True, key_share=True, of=Item)))
    if not locked:
        return 0, []
    done = set(
        session.scalars(
            select(Prediction.item_id).where(
                Prediction.item_id.in_([row.id for row in locked]),
                Prediction.model_name == champion.name,
                Prediction.model_version == champion.version,
            )
        )
    )
    return len(locked), [row for row in locked if row.id not in done]


def _predict_and_write(
    session: Session,
    dataset: str,
    champion: LoadedModel,
    claimed: list[Row[Any]],
    to_features: Features,
    run_id: int | None,
) -> int:
    """Predict the claimed items and insert their predictions; the number really inserted."""
    features = to_features([row.data for row in claimed])
    if len(features) != len(claimed):
        raise ValueError(
            f"to_features returned {len(features)} rows for {len(claimed)} items: it must give "
            "one row per item, in order"
        )
    model = champion.model
    labels = model.predict(features)
    if hasattr(model, "predict_proba"):
        classes = [str(label) for label in model.classes_]
        scores = [
            {label: float(p) for label, p in zip(classes, row, strict=True)}
            for row in model.predict_proba(features)
        ]
    else:
        scores = [{} for _ in claimed]
    rows = [
        {
            "item_id": item.id,
            "dataset": dataset,
            "model_name": champion.name,
            "model_version": champion.version,
            "label": str(label),
            "scores": item_scores,
            "run_id": run_id,
        }
        for item, label, item_scores in zip(claimed, labels, scores, strict=True)
    ]
    dialect = _dialect(session)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Prediction.__table__)
        .on_conflict_do_nothing(index_elements=["item_id", "model_name", "model_version"])
        .returning(Prediction.__table__.c.item_id)
    )
    return len(session.execute(statement, rows).all())


def _locked_items_pending(sessions: Sessions, dataset: str, champion: LoadedModel) -> bool:
    """Whether items are still pending although none could be claimed (PostgreSQL only: there
    they are locked by another transaction; on SQLite an empty claim means none is pending)."""
    with sessions() as session:
        if _dialect(session) != "postgresql":
            return False
        pending = pending_items(dataset, champion.name, champion.version).limit(1)
        return session.execute(pending).first() is not None


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in {"postgresql", "sqlite"}:
        raise ValueError(f"batch inference supports PostgreSQL and SQLite stores, not {name}")
    return name
