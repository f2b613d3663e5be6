"""Store reads behind the article routes: the papers of the ``arxiv`` data set, newest first,
with their subject, predicted subject and summary.

A paper is an item whose data holds ``id``, ``title``, ``abstract``, ``authors``,
``primary_category``, ``categories``, ``published``, ``updated`` and ``link``, labelled with
its top-level subject; its predicted subject is its latest prediction, its summary its latest
``summary`` annotation. Filters and search are those of the item pages (:mod:`.queries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.api.queries import ItemFilter, item_conditions, latest_predictions
from mlfactory.store import Annotation, Item

Sessions = sessionmaker[Session]
ARXIV = "arxiv"
SUMMARY = "summary"


@dataclass(frozen=True)
class ArticleFilter:
    subject: str | None = None
    predicted: str | None = None
    model: str | None = None
    q: str | None = None

    def items(self) -> ItemFilter:
        return ItemFilter(label=self.subject, predicted=self.predicted, model=self.model, q=self.q)


def article_page(
    sessions: Sessions, where: ArticleFilter, limit: int, offset: int
) -> dict[str, Any]:
    """How many papers match, how many of them per subject, and the page at ``offset``."""
    with sessions() as session:
        conditions = item_conditions(session, ARXIV, where.items())
        total = session.scalar(select(func.count()).select_from(Item).where(*conditions)) or 0
        subjects = session.execute(
            select(Item.label, func.count()).where(*conditions).group_by(Item.label)
        ).all()
        items = session.scalars(newest_first(conditions, limit, offset)).all()
        ids = [item.id for item in items]
        predictions = latest_predictions(session, ids, where.model)
        summarised = set(
            session.scalars(
                select(Annotation.item_id).where(
                    Annotation.item_id.in_(ids), Annotation.kind == SUMMARY
                )
            )
        )
    return {
        "total": total,
        # Unlabelled articles count in the total, not as a subject named "None".
        "subjects": {
            label: count for label, count in sorted(subjects, key=_by_count) if label is not None
        },
        "articles": [
            _article(item, predictions.get(item.id)) | {"summarised": item.id in summarised}
            for item in items
        ],
    }


def newest_first(
    conditions: list[ColumnElement[bool]], limit: int, offset: int
) -> Select[tuple[Item]]:
    """The page of papers matching ``conditions`` (:func:`~.queries.item_conditions` of
    ``arxiv``), newest published first. On PostgreSQL the index ``ix_items_arxiv_published``
    (``store/tables.py``, migration 0005) holds this order: change one with the other."""
    published = Item.data["published"].as_string()
    return (
        select(Item)
        .where(*conditions)
        .order_by(published.desc().nulls_last(), Item.id.desc())
        .limit(limit)
        .offset(offset)
    )


def article_detail(sessions: Sessions, item_id: int) -> dict[str, Any] | None:
    """One paper with its abstract, latest summary and latest prediction (with its scores)."""
    with sessions() as session:
        item = session.get(Item, item_id)
        if item is None or item.dataset != ARXIV:
            return None
        prediction = latest_predictions(session, [item.id], None).get(item.id)
        summary = session.scalar(
            select(Annotation)
            .where(Annotation.item_id == item.id, Annotation.kind == SUMMARY)
            .order_by(Annotation.id.desc())
            .limit(1)
        )
    article = _article(item, prediction)
    if article["prediction"] is not None:
        article["prediction"]["scores"] = _numbers(prediction["scores"] if prediction else {})
    return article | {
        "abstract": _text(item.data.get("abstract")),
        "summary": None
        if summary is None
        else {
            "content": summary.content,
            "producer": summary.producer,
            "producer_version": summary.producer_version,
            "language": (summary.data or {}).get("language"),
            "created_at": summary.created_at,
        },
    }


def _article(item: Item, prediction: dict[str, Any] | None) -> dict[str, Any]:
    data = item.data
    return {
        "id": item.id,
        "arxiv_id": _text(data.get("id")) or item.key,
        "title": _text(data.get("title")),
        "authors": _strings(data.get("authors")),
        "subject": item.label,
        "primary_category": _text(data.get("primary_category")) or None,
        "categories": _strings(data.get("categories")),
        "published": _moment(data.get("published")),
        "updated": _moment(data.get("updated")),
        "link": _text(data.get("link")) or None,
        "prediction": None if prediction is None else _predicted(prediction),
    }


def _predicted(prediction: dict[str, Any]) -> dict[str, Any]:
    """The predicted subject and the model's confidence in it: its score for that subject, or
    its highest score when it gave none for it."""
    scores = _numbers(prediction["scores"])
    label = prediction["label"]
    return {
        "label": label,
        "confidence": scores.get(label, max(scores.values(), default=None)),
        "model_name": prediction["model_name"],
        "model_version": prediction["model_version"],
        "created_at": prediction["created_at"],
    }


def _numbers(scores: Any) -> dict[str, float]:
    if not isinstance(scores, dict):
        return {}
    return {
        str(label): float(value)
        for label, value in scores.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    """A list of names or categories (a single string is one of them)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(entry) for entry in value if entry is not None]
    return []


def _moment(value: Any) -> datetime | None:
    """An ISO-8601 timestamp, or None for anything else (the data is the source's)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _by_count(row: Any) -> tuple[int, str]:
    label, count = row
    return -count, str(label)
