"""Work claimed by name (slow work, computed outside any transaction): claims never outlive the
batch, whatever happens to it, and batches stay within the lock table's room."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.orm import Session

from mlfactory.ingest.loader import Record, load_batch
from mlfactory.store import Annotation, Item
from mlfactory.store.claims import MAX_CLAIMS_PER_BATCH, work_through

on_postgresql = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
PENDING = (
    select(Item.id, Item.data)
    .where(~select(Annotation.id).where(Annotation.item_id == Item.id).exists())
    .order_by(Item.id)
)
ADVISORY_LOCKS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def note(rows: Sequence[Row[Any]]) -> dict[int, str]:
    return {row.id: f"note {row.data['n']}" for row in rows}


def write(session: Session, outputs: Mapping[int, str]) -> int:
    session.execute(
        insert(Annotation),
        [
            {
                "item_id": item_id,
                "kind": "note",
                "producer": "test",
                "producer_version": "1",
                "content": content,
            }
            for item_id, content in outputs.items()
        ],
    )
    return len(outputs)


@on_postgresql
def test_a_batch_that_fails_leaves_no_claim_behind(sessions) -> None:
    load_batch(sessions, "notes", [Record(str(n), {"n": n}) for n in range(10)])
    computed: list[int] = []

    def failing(rows: Sequence[Row[Any]]) -> dict[int, str]:
        computed.extend(row.id for row in rows)
        raise RuntimeError("the service broke")

    with pytest.raises(RuntimeError, match="the service broke"):
        work_through(sessions, PENDING, failing, write, batch_size=4, claim="notes")
    with sessions() as session:  # pooled connections, the failed batch's one included
        assert session.scalar(ADVISORY_LOCKS) == 0
    assert len(computed) == 4

    progress = work_through(sessions, PENDING, note, write, batch_size=4, claim="notes")

    assert (progress.written, progress.batches) == (10, 3)
    with sessions() as session:
        assert session.scalar(ADVISORY_LOCKS) == 0
        contents = session.scalars(select(Annotation.content).order_by(Annotation.item_id)).all()
    assert contents == [f"note {n}" for n in range(10)]


def test_batches_claimed_by_name_are_bounded(sessions) -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_CLAIMS_PER_BATCH}"):
        work_through(
            sessions, PENDING, note, write, batch_size=MAX_CLAIMS_PER_BATCH + 1, claim="notes"
        )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Annotation)) == 0
