"""Browsing the store: data sets, their items (paged, filtered, searched), one item in full."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from mlfactory.api.deps import SessionsDep, Viewer
from mlfactory.api.queries import ItemFilter, dataset_known, item_detail, item_page, list_datasets
from mlfactory.api.registry import RegistryDep
from mlfactory.api.schemas import MAX_ID, NO_NUL, Moment

router = APIRouter(tags=["datasets"])


def _text(description: str) -> Any:
    return Query(max_length=200, pattern=NO_NUL, description=description)


class BatchInfo(BaseModel):
    """A load batch with its counts."""

    id: int
    name: str
    mode: str = Field(description="full | fraction | watermark")
    percentage: float | None
    status: str = Field(description="running | completed | failed")
    rows_seen: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    metadata: dict[str, Any]


class BatchRef(BaseModel):
    id: int
    dataset: str
    name: str
    mode: str
    percentage: float | None
    status: str
    started_at: datetime
    ended_at: datetime | None


class DatasetInfo(BaseModel):
    name: str
    items: int
    labelled: int
    classes: dict[str, int] = Field(description="Items per label (no label: 'None').")
    last_batch: BatchInfo | None = Field(description="The last completed load batch.")


class PredictionInfo(BaseModel):
    id: int
    item_id: int | None
    dataset: str | None
    model_name: str
    model_version: str
    label: str
    scores: dict[str, Any]
    run_id: int | None = Field(description="The pipeline run that predicted, if any.")
    created_at: datetime


class ItemFields(BaseModel):
    id: int
    dataset: str
    key: str
    label: str | None
    data: dict[str, Any]
    first_batch_id: int
    last_batch_id: int
    deleted_batch_id: int | None = Field(
        description="The load that deleted the item (a replace without its key); null if live."
    )
    created_at: datetime
    updated_at: datetime


class ItemSummary(ItemFields):
    prediction: PredictionInfo | None = Field(
        description="The latest prediction (of the model asked for, if any)."
    )


class ItemPage(BaseModel):
    total: int = Field(description="Items matching the filters, over all pages.")
    limit: int
    offset: int
    items: list[ItemSummary]


class HistoryEntry(BaseModel):
    operation: str = Field(description="insert | update | delete")
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    batch: BatchRef


class AnnotationInfo(BaseModel):
    id: int
    item_id: int
    kind: str
    producer: str
    producer_version: str
    content: str | None
    data: dict[str, Any]
    created_at: datetime


class DerivationInfo(BaseModel):
    id: int
    item_id: int
    parent_id: int | None
    kind: str
    processor: str
    processor_version: str
    path: str | None
    content_hash: str | None
    data: dict[str, Any]
    created_at: datetime


class SnapshotRef(BaseModel):
    id: int
    dataset: str
    kind: str = Field(description="training | evaluation")
    digest: str
    as_of_batch_id: int | None
    row_count: int
    class_counts: dict[str, Any]
    created_at: datetime


class Lineage(BaseModel):
    """Where a model version's knowledge comes from: model version -> MLflow run -> pipeline
    run -> training snapshots (by digest) -> the load batches behind them."""

    model_name: str
    model_version: str
    mlflow_run_id: str | None
    pipeline: str | None
    pipeline_run_id: int | None = Field(description="The pipeline run that trained the version.")
    snapshots: list[SnapshotRef]
    load_batches: list[BatchRef] = Field(
        description="Batches up to each snapshot's batch; without snapshots, the batches the "
        "training run loaded."
    )
    registry_error: str | None = Field(
        description="Set when the model registry was needed and did not answer."
    )


class ItemDetail(ItemFields):
    history: list[HistoryEntry] = Field(description="Every change, oldest first, with its batch.")
    predictions: list[PredictionInfo] = Field(description="Newest first.")
    annotations: list[AnnotationInfo]
    derivations: list[DerivationInfo]
    lineage: list[Lineage] = Field(description="One entry per model version that predicted.")


@router.get("/v1/datasets", response_model=list[DatasetInfo])
def datasets(_: Viewer, sessions: SessionsDep) -> list[DatasetInfo]:
    """Every data set loaded into the store, with item counts and its last completed batch."""
    return [
        DatasetInfo.model_validate({**state, "name": state["dataset"]})
        for state in list_datasets(sessions)
    ]


@router.get("/v1/datasets/{name}/items", response_model=ItemPage)
def items(
    _: Viewer,
    sessions: SessionsDep,
    name: Annotated[str, Path(max_length=200, pattern=NO_NUL)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    label: Annotated[str | None, _text("Only items with this label.")] = None,
    predicted: Annotated[
        str | None,
        _text(
            "Only items whose latest prediction has this label: the latest of `model` when "
            "given, else the latest of any model."
        ),
    ] = None,
    model: Annotated[
        str | None, _text("Registered model name the prediction filter and column use.")
    ] = None,
    updated_since: Annotated[
        Moment, Query(description="Items changed at or after this time (UTC if naive).")
    ] = None,
    updated_before: Annotated[
        Moment, Query(description="Items changed before this time (UTC if naive).")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=500,
            pattern=NO_NUL,
            description="Full-text search: items whose data values contain every word, as "
            "whole words, case-insensitively.",
        ),
    ] = None,
) -> ItemPage:
    """A page of a data set's items in id order, with the total count of matching items."""
    if not dataset_known(sessions, name):
        raise HTTPException(404, f"no data set {name!r} in the store")
    where = ItemFilter(
        label=label,
        predicted=predicted,
        model=model,
        updated_since=updated_since,
        updated_before=updated_before,
        q=q,
    )
    total, rows = item_page(sessions, name, where, limit, offset)
    return ItemPage(
        total=total,
        limit=limit,
        offset=offset,
        items=[ItemSummary.model_validate(row) for row in rows],
    )


@router.get("/v1/items/{item_id}", response_model=ItemDetail)
def item(
    _: Viewer,
    sessions: SessionsDep,
    registry: RegistryDep,
    item_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> ItemDetail:
    """One item: data, history with batches, predictions, annotations, derivations, lineage."""
    detail = item_detail(sessions, item_id, registry)
    if detail is None:
        raise HTTPException(404, f"no item {item_id}")
    return ItemDetail.model_validate(detail)
