"""Recent items of a data set with the label a model predicted for them: what drift checks
compare with the training snapshot."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store import Item, Prediction

Sessions = sessionmaker[Session]


def recent_items(
    sessions: Sessions, dataset: str, since: datetime, model_name: str | None = None
) -> pd.DataFrame:
    """Items of ``dataset`` inserted or updated since ``since``: columns ``key``, ``label``,
    ``predicted_label`` (the latest prediction of ``model_name``, None when it has none), then
    the data fields. Rows in key order."""
    with sessions() as session:
        items = session.execute(
            select(Item.id, Item.key, Item.label, Item.data)
            .where(
                Item.dataset == dataset,
                Item.updated_at >= since,
                Item.deleted_batch_id.is_(None),
            )
            .order_by(Item.key)
        ).all()
        predicted: dict[int, str] = {}
        if model_name is not None and items:
            for item_id, label in session.execute(
                select(Prediction.item_id, Prediction.label)
                .join(Item, Item.id == Prediction.item_id)
                .where(Item.dataset == dataset, Item.updated_at >= since)
                .where(Prediction.model_name == model_name)
                .order_by(Prediction.id)
            ):
                predicted[item_id] = label  # later predictions replace earlier ones
    rows = [
        {"key": key, "label": label, "predicted_label": predicted.get(item_id), **data}
        for item_id, key, label, data in items
    ]
    return pd.DataFrame(rows, columns=None if rows else ["key", "label", "predicted_label"])


def batch_items(sessions: Sessions, dataset: str, batch_id: int) -> pd.DataFrame:
    """The live items of ``dataset`` that batch ``batch_id`` inserted or changed: columns
    ``key``, ``label``, then the data fields, in key order."""
    with sessions() as session:
        items = session.execute(
            select(Item.key, Item.label, Item.data)
            .where(
                Item.dataset == dataset,
                Item.last_batch_id == batch_id,
                Item.deleted_batch_id.is_(None),
            )
            .order_by(Item.key)
        ).all()
    rows = [{"key": key, "label": label, **data} for key, label, data in items]
    return pd.DataFrame(rows, columns=None if rows else ["key", "label"])
