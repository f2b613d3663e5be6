"""Batch inference: predict every item of a data set that has no prediction from the champion.

Work selection instead of a queue (:mod:`mlfactory.store.claims`): the work is "items with no
``predictions`` row for this model name and champion version", read from the store each time, so
a crash or a restart loses nothing (committed batches stay, the rest is still pending) and
several workers can share the work. Each batch claims up to ``batch_size`` pending items,
predicts them and inserts their predictions in one statement; on PostgreSQL all in one
transaction that holds the claim's row locks (``FOR NO KEY UPDATE SKIP LOCKED``), on SQLite with
the write in a ``BEGIN IMMEDIATE`` transaction. Items another worker predicted meanwhile are
dropped before the model sees them where possible, and always before writing. The unique index
on (item, model name, version) with ``ON CONFLICT DO NOTHING`` remains the last guard (against a
writer that does not claim first); only rows really inserted are counted.

When nothing can be claimed but items are still pending on PostgreSQL, they are locked by another
transaction (another worker's batch, another step, a load in progress): the call looks again
shortly and stops after ``LOCKED_PATIENCE`` seconds without a claim, leaving them for later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Row, Select, exists, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.datasets.columns import label_text, native
from mlfactory.inference.champion import LoadedModel, load_champion
from mlfactory.settings import Settings
from mlfactory.store import Item, Prediction, utcnow
from mlfactory.store.claims import LOCKED_PATIENCE, work_through
from mlfactory.store.tables import db_timestamp

if TYPE_CHECKING:
    import pandas as pd

Sessions = sessionmaker[Session]
Features = Callable[[list[dict[str, Any]], list[str]], "pd.DataFrame"]

logger = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO predictions (item_id, dataset, model_name, model_version, label, scores, run_id,"
    " created_at) VALUES ({}) ON CONFLICT (item_id, model_name, model_version) DO NOTHING"
)
INSERT_SQLITE = _INSERT.format(", ".join("?" * 8))
INSERT_POSTGRESQL = _INSERT.format("%s, %s, %s, %s, %s, CAST(%s AS jsonb), %s, %s")


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

    ``to_features(records, columns)`` turns the items' ``data`` (JSON as stored) into the model's
    input frame of ``columns`` (those it was fitted with), one row per item in the same order. The champion is resolved once: every prediction of the call
    carries that version, even if the alias moves meanwhile.
    """
    champion = load_champion(settings, model_name)

    def predict(claimed: Sequence[Row[Any]]) -> dict[int, dict[str, Any]]:
        return _predict(dataset, champion, claimed, to_features, run_id)

    progress = work_through(
        sessions,
        pending_items(dataset, champion.name, champion.version),
        predict,
        _write,
        batch_size=batch_size,
        limit=limit,
        patience=LOCKED_PATIENCE,
    )
    logger.info(
        "%s v%s: %d items of %r predicted in %d batches",
        model_name,
        champion.version,
        progress.written,
        dataset,
        progress.batches,
    )
    return BatchPredictionResult(
        model_name=model_name,
        model_version=champion.version,
        predicted=progress.written,
        batches=progress.batches,
        duplicates_dropped=progress.offered - progress.written,
    )


def pending_items(dataset: str, model_name: str, model_version: str) -> Select[Any]:
    """Ids and data of the items of ``dataset`` with no prediction from this model version, in id
    order."""
    predicted = exists().where(
        Prediction.item_id == Item.id,
        Prediction.model_name == model_name,
        Prediction.model_version == model_version,
    )
    return (
        select(Item.id, Item.data)
        .where(Item.dataset == dataset, Item.deleted_batch_id.is_(None), ~predicted)
        .order_by(Item.id)
    )


def _predict(
    dataset: str,
    champion: LoadedModel,
    claimed: Sequence[Row[Any]],
    to_features: Features,
    run_id: int | None,
) -> dict[int, dict[str, Any]]:
    """The prediction rows of the claimed items, by item id."""
    model = champion.model
    columns = [str(name) for name in getattr(model, "feature_names_in_", ())]
    features = to_features([row.data for row in claimed], columns)
    if len(features) != len(claimed):
        raise ValueError(
            f"to_features returned {len(features)} rows for {len(claimed)} items: it must give "
            "one row per item, in order"
        )
    if hasattr(model, "predict_proba"):
        # One pass of the model: the label is the most probable class, so it always agrees
        # with the scores stored beside it (and a TF-IDF model does not vectorise twice).
        classes = [label_text(native(label)) for label in model.classes_]
        probabilities = model.predict_proba(features)
        labels = [classes[index] for index in probabilities.argmax(axis=1)]
        scores = [
            {label: float(p) for label, p in zip(classes, row, strict=True)}
            for row in probabilities
        ]
    else:
        labels = model.predict(features)
        scores = [{} for _ in claimed]
    return {
        item.id: {
            "item_id": item.id,
            "dataset": dataset,
            "model_name": champion.name,
            "model_version": champion.version,
            "label": label_text(native(label)),
            "scores": item_scores,
            "run_id": run_id,
        }
        for item, label, item_scores in zip(claimed, labels, scores, strict=True)
    }


def _write(session: Session, rows: Mapping[int, dict[str, Any]]) -> int:
    """Insert the predictions; the number really inserted. Through the driver, the scores
    serialised by orjson: the column types' own per-row processing cost more than the model."""
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = INSERT_POSTGRESQL if postgres else INSERT_SQLITE
    stamp = db_timestamp(session, utcnow())
    values = [
        (
            row["item_id"],
            row["dataset"],
            row["model_name"],
            row["model_version"],
            row["label"],
            orjson.dumps(row["scores"]).decode(),
            row["run_id"],
            stamp,
        )
        for row in rows.values()
    ]
    return session.connection().exec_driver_sql(statement, values).rowcount
