"""Store reads behind the load routes: a data set's batches with its size after each."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mlfactory.ingest.state import load_history

Sessions = sessionmaker[Session]


def load_batches(sessions: Sessions, dataset: str) -> list[dict[str, Any]]:
    """Every batch of ``dataset``, oldest first, with ``items_after``: how many items the data
    set held once the batch completed (None for a batch that did not): the sum of the rows
    completed batches inserted, less those they deleted."""
    size = 0
    batches = load_history(sessions, dataset)
    for batch in batches:
        completed = batch["status"] == "completed"
        size += batch["rows_inserted"] - batch["rows_deleted"] if completed else 0
        batch["items_after"] = size if completed else None
    return batches
