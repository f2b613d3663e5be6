"""Row validation: the current items of a data set against a pydantic schema.

Valid rows come back typed; each invalid row is kept aside in ``rejections`` with a reason
naming every bad field. Running it twice for the same run replaces that run's rejections.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import describe_validation_error
from mlfactory.ingest.csv_reader import RAW_KEEP_CHARS
from mlfactory.store import Item, Rejection, utcnow

STAGE = "validate"


@dataclass(frozen=True)
class ValidationResult:
    rows: list[dict[str, Any]]  # typed rows, keyed by the schema's field aliases
    keys: list[str]
    rejected: int


def validate_items(
    sessions: sessionmaker[Session],
    dataset: str,
    schema: type[BaseModel],
    *,
    batch_id: int | None,
    run_id: int | None,
) -> ValidationResult:
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    rejections: list[dict[str, Any]] = []
    with sessions.begin() as session:
        items = session.execute(
            select(Item.key, Item.data).where(Item.dataset == dataset).order_by(Item.id)
        )
        for key, data in items:
            try:
                typed = schema.model_validate(data)
            except ValidationError as exc:
                raw = json.dumps(data, ensure_ascii=False)
                rejections.append(
                    {
                        "dataset": dataset,
                        "batch_id": batch_id,
                        "run_id": run_id,
                        "stage": STAGE,
                        "line": None,
                        "key": key,
                        "reason": describe_validation_error(exc),
                        "raw": raw[:RAW_KEEP_CHARS],
                        "raw_bytes": len(raw.encode()),
                        "created_at": utcnow(),
                    }
                )
                continue
            rows.append(typed.model_dump(by_alias=True))
            keys.append(key)
        if run_id is not None:
            session.execute(
                delete(Rejection).where(
                    Rejection.dataset == dataset,
                    Rejection.run_id == run_id,
                    Rejection.stage == STAGE,
                )
            )
        if rejections:
            session.execute(insert(Rejection), rejections)
    return ValidationResult(rows=rows, keys=keys, rejected=len(rejections))
