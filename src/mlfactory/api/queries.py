"""Store reads behind the browsing routes: data sets, pages of items (filters and full-text
search), and one item with its history, predictions, annotations, derivations and lineage.

Search matches items whose data values (strings and numbers, not keys) contain every word of
the query, case-insensitively, as whole words. PostgreSQL evaluates
``jsonb_to_tsvector('simple', data, '["string", "numeric"]') @@ plainto_tsquery('simple', q)``
(the expression a GIN index can serve); SQLite narrows with ``LIKE`` and checks the words with
a Python function registered on the connection, tokenising like PostgreSQL's parser does for
plain words (letters and digits), so both answer the same for simple words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy import type_coerce as coerce
from sqlalchemy.orm import Session, aliased, sessionmaker

from mlfactory.api.registry import ModelRegistry, RegistryUnavailable
from mlfactory.ingest.state import dataset_status
from mlfactory.store import (
    Annotation,
    DataLoad,
    Derivation,
    Item,
    ItemHistory,
    PipelineRun,
    Prediction,
    Snapshot,
)

Sessions = sessionmaker[Session]
WORD = re.compile(r"[^\W_]+")
_SIMPLE = literal_column("'simple'::regconfig")
_VALUES = literal_column("""'["string", "numeric"]'::jsonb""")


@dataclass(frozen=True)
class ItemFilter:
    label: str | None = None
    predicted: str | None = None
    """Label of the item's latest prediction (of ``model`` when given, else of any model)."""
    model: str | None = None
    updated_since: datetime | None = None  # inclusive
    updated_before: datetime | None = None  # exclusive
    q: str | None = None


def list_datasets(sessions: Sessions) -> list[dict[str, Any]]:
    """Every data set that has been loaded at least once, with its state."""
    with sessions() as session:
        names = list(
            session.scalars(select(DataLoad.dataset).distinct().order_by(DataLoad.dataset))
        )
    return [dataset_status(sessions, name) for name in names]


def dataset_known(sessions: Sessions, dataset: str) -> bool:
    """Whether ``dataset`` was ever loaded (a batch of it exists, whatever its outcome)."""
    with sessions() as session:
        return bool(session.scalar(select(exists().where(DataLoad.dataset == dataset))))


def item_page(
    sessions: Sessions, dataset: str, where: ItemFilter, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """How many items of ``dataset`` match, and the page of them at ``offset`` in id order,
    each with its latest prediction."""
    with sessions() as session:
        conditions = item_conditions(session, dataset, where)
        total = session.scalar(select(func.count()).select_from(Item).where(*conditions)) or 0
        items = session.scalars(
            select(Item).where(*conditions).order_by(Item.id).limit(limit).offset(offset)
        ).all()
        latest = latest_predictions(session, [item.id for item in items], where.model)
    return total, [_item_dict(item) | {"prediction": latest.get(item.id)} for item in items]


def item_detail(sessions: Sessions, item_id: int, registry: ModelRegistry) -> dict[str, Any] | None:
    with sessions() as session:
        item = session.get(Item, item_id)
        if item is None:
            return None
        history = session.execute(
            select(ItemHistory, DataLoad)
            .join(DataLoad, ItemHistory.batch_id == DataLoad.id)
            .where(ItemHistory.item_id == item_id)
            .order_by(ItemHistory.id)
        ).all()
        predictions = session.scalars(
            select(Prediction).where(Prediction.item_id == item_id).order_by(Prediction.id.desc())
        ).all()
        annotations = session.scalars(
            select(Annotation).where(Annotation.item_id == item_id).order_by(Annotation.id)
        ).all()
        derivations = session.scalars(
            select(Derivation).where(Derivation.item_id == item_id).order_by(Derivation.id)
        ).all()
        versions = dict.fromkeys((p.model_name, p.model_version) for p in predictions)
        lineage = [_lineage(session, name, version, registry) for name, version in versions]
        return _item_dict(item) | {
            "history": [
                {
                    "operation": change.operation,
                    "changed_at": change.changed_at,
                    "before": change.before,
                    "after": change.after,
                    "batch": _batch_ref(batch),
                }
                for change, batch in history
            ],
            "predictions": [_columns(p, Prediction) for p in predictions],
            "annotations": [_columns(a, Annotation) for a in annotations],
            "derivations": [_columns(d, Derivation) for d in derivations],
            "lineage": lineage,
        }


def training_run(sessions: Sessions, model_name: str, version: str) -> dict[str, Any] | None:
    """The id and metrics of the pipeline run that registered this model version, if the store
    knows it."""
    with sessions() as session:
        run = _run_of_version(session, model_name, version)
        return None if run is None else {"id": run.id, "metrics": run.metrics}


def model_name_of(sessions: Sessions, pipeline: str) -> str | None:
    """The model name the pipeline's latest run registered a version of, if any."""
    with sessions() as session:
        return session.scalar(
            select(PipelineRun.model_name)
            .where(PipelineRun.pipeline == pipeline, PipelineRun.model_name.is_not(None))
            .order_by(PipelineRun.id.desc())
            .limit(1)
        )


def run_outcomes(sessions: Sessions) -> list[tuple[str, str, int, datetime | None]]:
    """(pipeline, status, runs, when the last of them ended) for every pipeline and status."""
    with sessions() as session:
        rows = session.execute(
            select(
                PipelineRun.pipeline,
                PipelineRun.status,
                func.count(),
                func.max(PipelineRun.ended_at),
            )
            .group_by(PipelineRun.pipeline, PipelineRun.status)
            .order_by(PipelineRun.pipeline, PipelineRun.status)
        ).all()
    return [(pipeline, status, count, ended) for pipeline, status, count, ended in rows]


def _words(text: str) -> list[str]:
    """The words of ``text`` as the search compares them: runs of letters and digits, lower
    case."""
    return WORD.findall(text.lower())


def item_conditions(session: Session, dataset: str, where: ItemFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        Item.dataset == dataset,
        Item.deleted_batch_id.is_(None),
    ]
    if where.label is not None:
        conditions.append(Item.label == where.label)
    if where.predicted is not None:
        conditions.append(_latest_prediction_is(where.predicted, where.model))
    if where.updated_since is not None:
        conditions.append(Item.updated_at >= where.updated_since)
    if where.updated_before is not None:
        conditions.append(Item.updated_at < where.updated_before)
    if where.q is not None:
        conditions.append(_search(session, where.q))
    return conditions


def _latest_prediction_is(label: str, model: str | None) -> ColumnElement[bool]:
    newer = aliased(Prediction)
    latest = select(func.max(newer.id)).where(newer.item_id == Prediction.item_id)
    own = [Prediction.item_id == Item.id, Prediction.label == label]
    if model is not None:
        latest = latest.where(newer.model_name == model)
        own.append(Prediction.model_name == model)
    return exists().where(*own, Prediction.id == latest.scalar_subquery())


def _search(session: Session, q: str) -> ColumnElement[bool]:
    wanted = _words(q)
    if not wanted:
        return false()
    if session.get_bind().dialect.name == "postgresql":
        vector = func.jsonb_to_tsvector(_SIMPLE, Item.data, _VALUES)
        return vector.op("@@")(func.plainto_tsquery(_SIMPLE, q))
    connection = session.connection().connection.driver_connection
    connection.create_function("mlf_has_words", 2, _has_words, deterministic=True)
    text = coerce(Item.data, String)
    narrow = [text.like(f"%{word}%") for word in wanted if word.isascii()]
    return and_(*narrow, func.mlf_has_words(text, " ".join(wanted)) == 1)


def _has_words(data_json: str | None, wanted: str) -> bool:
    """Whether the values of the JSON object ``data_json`` contain every word of ``wanted``."""
    if data_json is None:
        return False
    try:
        data = json.loads(data_json)
    except ValueError:
        return False
    present = set(_words(" ".join(_values(data))))
    return all(word in present for word in wanted.split())


def _values(value: Any) -> Iterator[str]:
    """The string and number leaves of a JSON value (what ``jsonb_to_tsvector`` indexes with
    ``["string", "numeric"]``)."""
    if isinstance(value, dict):
        for child in value.values():
            yield from _values(child)
    elif isinstance(value, list):
        for child in value:
            yield from _values(child)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def latest_predictions(
    session: Session, item_ids: list[int], model: str | None
) -> dict[int, dict[str, Any]]:
    if not item_ids:
        return {}
    latest = select(func.max(Prediction.id)).where(Prediction.item_id.in_(item_ids))
    if model is not None:
        latest = latest.where(Prediction.model_name == model)
    rows = session.scalars(
        select(Prediction).where(Prediction.id.in_(latest.group_by(Prediction.item_id)))
    )
    return {p.item_id: _columns(p, Prediction) for p in rows if p.item_id is not None}


def _lineage(
    session: Session, model_name: str, version: str, registry: ModelRegistry
) -> dict[str, Any]:
    """Model version -> MLflow run -> pipeline run -> snapshots -> load batches.

    The store answers when the training run recorded its model version (``pipeline_runs``) and
    its snapshots or loads; the registry is asked only for what the store cannot tell: the
    version's MLflow run, the pipeline run it tagged, the digests of its dataset inputs.
    """
    run = _run_of_version(session, model_name, version)
    snapshots = _snapshots_of_run(session, run.id) if run else []
    loads = _loads_of_run(session, run.id) if run else []
    mlflow_run_id = run.mlflow_run_id if run else None
    registry_error = None
    if run is None or not (snapshots or loads):
        try:
            made = registry.version_run(model_name, version)
        except RegistryUnavailable as exc:
            made, registry_error = None, str(exc)
        if made is not None:
            mlflow_run_id = mlflow_run_id or made.mlflow_run_id
            if run is None and made.pipeline_run_id is not None:
                run = session.get(PipelineRun, made.pipeline_run_id)
                loads = _loads_of_run(session, run.id) if run else []
            snapshots = snapshots or _snapshots_by_digest(session, made.dataset_digests)
    return {
        "model_name": model_name,
        "model_version": version,
        "mlflow_run_id": mlflow_run_id,
        "pipeline": run.pipeline if run else None,
        "pipeline_run_id": run.id if run else None,
        "snapshots": [_snapshot_dict(s) for s in snapshots],
        "load_batches": [_batch_ref(b) for b in _batches_behind(session, snapshots) or loads],
        "registry_error": registry_error,
    }


def _run_of_version(session: Session, model_name: str, version: str) -> PipelineRun | None:
    return session.scalar(
        select(PipelineRun)
        .where(PipelineRun.model_name == model_name, PipelineRun.model_version == version)
        .order_by(PipelineRun.id.desc())
        .limit(1)
    )


def _snapshots_of_run(session: Session, run_id: int) -> list[Snapshot]:
    return list(session.scalars(select(Snapshot).where(Snapshot.run_id == run_id)))


def _snapshots_by_digest(session: Session, digests: tuple[str, ...]) -> list[Snapshot]:
    if not digests:
        return []
    prefixes = [Snapshot.digest.startswith(digest, autoescape=True) for digest in digests]
    return list(session.scalars(select(Snapshot).where(or_(*prefixes)).order_by(Snapshot.id)))


def _loads_of_run(session: Session, run_id: int) -> list[DataLoad]:
    return list(session.scalars(select(DataLoad).where(DataLoad.run_id == run_id)))


def _batches_behind(session: Session, snapshots: list[Snapshot]) -> list[DataLoad]:
    """The completed batches of each snapshot's data set up to the batch it was taken as of."""
    bounds = [s for s in snapshots if s.as_of_batch_id is not None]
    if not bounds:
        return []
    batches = session.scalars(
        select(DataLoad)
        .where(
            DataLoad.status == "completed",
            or_(
                *[
                    and_(DataLoad.dataset == s.dataset, DataLoad.id <= s.as_of_batch_id)
                    for s in bounds
                ]
            ),
        )
        .order_by(DataLoad.id)
    )
    return list(batches)


def _item_dict(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "dataset": item.dataset,
        "key": item.key,
        "label": item.label,
        "data": item.data,
        "first_batch_id": item.first_batch_id,
        "last_batch_id": item.last_batch_id,
        "deleted_batch_id": item.deleted_batch_id,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


def _snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    fields = ("id", "dataset", "kind", "digest", "as_of_batch_id", "row_count", "class_counts")
    return {name: getattr(snapshot, name) for name in fields} | {"created_at": snapshot.created_at}


def _batch_ref(batch: DataLoad) -> dict[str, Any]:
    fields = ("id", "dataset", "name", "mode", "percentage", "status", "started_at", "ended_at")
    return {name: getattr(batch, name) for name in fields}


def _columns(row: Any, table: Any) -> dict[str, Any]:
    """Every mapped column of ``row`` by attribute name."""
    return {attr.key: getattr(row, attr.key) for attr in table.__mapper__.column_attrs}
