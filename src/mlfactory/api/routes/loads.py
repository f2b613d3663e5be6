"""A data set's history: its load batches (with its size after each) and its rejected rows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from mlfactory.api.deps import SessionsDep, Viewer
from mlfactory.api.load_queries import load_batches
from mlfactory.api.queries import dataset_known
from mlfactory.api.routes.datasets import BatchInfo
from mlfactory.api.schemas import MAX_ID, NO_NUL
from mlfactory.ingest.state import rejection_page

router = APIRouter(tags=["datasets"])

DatasetName = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
UNKNOWN = {404: {"description": "The data set was never loaded."}}


class LoadBatch(BatchInfo):
    items_after: int | None = Field(
        description="Items in the data set once this batch completed; None if it did not."
    )


class RejectionInfo(BaseModel):
    id: int
    batch_id: int | None
    run_id: int | None
    stage: str = Field(description="load | validate | …: where the row was refused.")
    line: int | None = Field(description="Line of the source file, when it came from one.")
    key: str | None
    reason: str
    raw: str | None = Field(description="The row as read (cut at 4,000 characters).")
    raw_bytes: int | None
    created_at: datetime


class RejectionPage(BaseModel):
    total: int = Field(description="Rejections matching, over all pages.")
    limit: int
    offset: int
    by_stage: dict[str, int] = Field(description="Rejections per stage (batch filter only).")
    rejections: list[RejectionInfo] = Field(description="Newest first.")


@router.get("/v1/datasets/{name}/loads", response_model=list[LoadBatch], responses=UNKNOWN)
def loads(_: Viewer, sessions: SessionsDep, name: DatasetName) -> list[LoadBatch]:
    """Every load batch of the data set, oldest first, with its counts and the size it left."""
    batches = load_batches(sessions, name)
    if not batches:
        raise HTTPException(404, f"no data set {name!r} in the store")
    return [LoadBatch.model_validate(batch) for batch in batches]


@router.get("/v1/datasets/{name}/rejections", response_model=RejectionPage, responses=UNKNOWN)
def rejections(
    _: Viewer,
    sessions: SessionsDep,
    name: DatasetName,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    batch_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this batch's.")
    ] = None,
    stage: Annotated[
        str | None, Query(max_length=50, pattern=NO_NUL, description="Only this stage's.")
    ] = None,
) -> RejectionPage:
    """Rows refused while loading or validating the data set, with the reason of each."""
    if not dataset_known(sessions, name):
        raise HTTPException(404, f"no data set {name!r} in the store")
    page = rejection_page(
        sessions, name, batch_id=batch_id, stage=stage, limit=limit, offset=offset
    )
    return RejectionPage.model_validate(page | {"limit": limit, "offset": offset})
