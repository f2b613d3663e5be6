"""A small pipeline for the Airflow-on-Celery test, registered through an entry point the test
writes: real advertising rows into the store, counted back from it, and a report that needs both.

Every step also returns the id of the process it ran in, so the test can tell that each ran in
its own Airflow task process.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import load_batch, records_from_csv
from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.store import Item

NAME = "celery_check"
DATASET = "celery-check"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = Field(50, ge=1, description="How many advertising rows to load.")


def load(ctx: Context) -> dict[str, Any]:
    assert isinstance(ctx.params, Params)
    assert ctx.settings.datasets_dir is not None
    source = read_csv_rows(ctx.settings.datasets_dir / "advertising" / "advertising.csv")
    rows = itertools.islice(records_from_csv(source, "Clicked on Ad"), ctx.params.rows)
    result = load_batch(ctx.sessions, DATASET, rows, source="advertising", run_id=ctx.run_id)
    return {**result.as_dict(), "pid": os.getpid()}


def count(ctx: Context) -> dict[str, Any]:
    """Items of the data set per label, read back from the store."""
    with ctx.sessions() as session:
        labels = session.execute(
            select(Item.label, func.count()).where(Item.dataset == DATASET).group_by(Item.label)
        ).all()
    return {"by_label": {label: n for label, n in labels}, "pid": os.getpid()}


def report(ctx: Context) -> dict[str, Any]:
    loaded, counted = ctx.output_of("load"), ctx.output_of("count")
    items = sum(counted["by_label"].values())
    return {
        "batch_id": loaded["batch_id"],
        "items": items,
        "click_rate": counted["by_label"].get("1", 0) / items,
        "pid": os.getpid(),
    }


pipeline = Pipeline(
    name=NAME,
    description="Test pipeline: load advertising rows, count them back, report.",
    params=Params,
    tags=("test",),
    steps=(
        Step("load", load),
        Step("count", count, needs=("load",)),
        Step("report", report, needs=("load", "count")),
    ),
)
