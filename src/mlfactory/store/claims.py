"""Work selection instead of a queue: claim pending items in batches, work on them, write results.

"Pending" is a query on ``items`` (for example "items of this data set with no prediction from
this model version", "... with no summary"), read from the store each time, so a crash or a
restart loses nothing (committed batches stay, the rest is still pending) and several workers
can share the work. :func:`work_through` runs one worker: batch after batch, it claims up to
``batch_size`` pending items, ``compute``\\ s their outputs and ``write``\\ s them, each batch
committed on its own.

PostgreSQL (the cluster store, several workers):

- The claim is ``SELECT ... FOR NO KEY UPDATE SKIP LOCKED LIMIT n`` on ``items``, and the batch
  keeps its locks while it is computed and written, in one transaction. Workers skip each
  other's batches instead of waiting for them. ``NO KEY UPDATE`` rather than ``UPDATE``: it
  excludes other claimers just the same, but does not block inserts that merely reference the
  item (the foreign key check of another step's annotation or another model's prediction).
- A claim often returns items another worker has just finished: the claim's snapshot is taken
  when the statement starts, before that worker commits, and the row lock is free again by the
  time the scan reaches the row (the item row itself is not changed, so PostgreSQL does not
  re-check it). So once the locks are held, a second statement, with a fresh snapshot, drops
  the claimed items that are no longer pending; whoever finished them had to commit before this
  transaction could lock them, so the check is exact among claimers and no work is wasted.
- When nothing can be claimed but items are still pending, they are locked by another
  transaction (another worker's batch, another step, a load in progress): the worker looks
  again every ``retry_delay`` seconds and stops after ``patience`` seconds without a claim,
  leaving them for later.

SQLite (the embedded store, one writer at a time, no row locks): the pending items are read
without a lock and computed outside any transaction, so the database's single write lock is not
held during slow work (a call to a chat API can take seconds); the outputs are then written in a
``BEGIN IMMEDIATE`` transaction, which takes the write lock first. Two workers on one SQLite file
may compute the same item, but never write it twice.

On both, the outputs of items that stopped being pending while they were computed (someone that
does not claim first wrote theirs) are dropped just before writing, under the locks.

``compute`` may leave items out of its answer (it failed on them): they stay pending, and the
worker does not claim them again during this call, so one bad item cannot stall it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Row, Select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store.tables import Item

Sessions = sessionmaker[Session]
Output = TypeVar("Output")
Compute = Callable[[Sequence[Row[Any]]], Mapping[int, Output]]
Write = Callable[[Session, Mapping[int, Output]], int]

LOCKED_RETRY_DELAY = 0.05  # seconds between looks while every pending item is locked by others
LOCKED_PATIENCE = 30.0  # seconds without a claim after which locked items are left for later

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What one :func:`work_through` call did."""

    written: int  # outputs ``write`` reported as written
    offered: int  # outputs ``compute`` gave (those dropped before writing included)
    batches: int  # batches with at least one claimed item still pending, each committed alone


def work_through(
    sessions: Sessions,
    pending: Select[Any],
    compute: Compute[Output],
    write: Write[Output],
    *,
    batch_size: int,
    limit: int | None = None,
    stop: Callable[[], bool] = lambda: False,
    patience: float = LOCKED_PATIENCE,
    retry_delay: float = LOCKED_RETRY_DELAY,
) -> Progress:
    """Claim, compute and write pending items batch by batch until none is pending, ``limit``
    outputs were written or ``stop()`` says so (it is asked after each batch).

    ``pending`` selects ``Item.id`` (labelled ``id``) first, then what ``compute`` needs, from
    ``items``, for the pending items only, in a stable order. ``compute`` gets the claimed rows
    and returns the outputs by item id; ``write`` inserts them in the batch's transaction and
    returns how many it wrote.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    written = offered = batches = 0
    skipped: set[int] = set()  # claimed by this call and left pending by compute
    with sessions() as probe:
        on_postgresql = _dialect(probe) == "postgresql"
    work = _claim_and_work if on_postgresql else _read_and_work
    last_claim = time.monotonic()
    while (limit is None or written < limit) and not stop():
        size = batch_size if limit is None else min(batch_size, limit - written)
        query = pending.where(Item.id.not_in(skipped)) if skipped else pending
        batch = work(sessions, query, size, compute, write)
        if batch is None:
            if not on_postgresql or not _any_pending(sessions, query):
                break
            if time.monotonic() - last_claim > patience:
                logger.warning(
                    "pending items stayed locked by other transactions for %.0fs; "
                    "left for a later run",
                    patience,
                )
                break
            time.sleep(retry_delay)
            continue
        last_claim = time.monotonic()
        claimed, outputs, inserted = batch
        if claimed:
            batches += 1
            written += inserted
            offered += len(outputs)
            skipped |= set(claimed) - set(outputs)
    return Progress(written=written, offered=offered, batches=batches)


_Batch = tuple[list[int], Mapping[int, Any], int] | None  # claimed ids, outputs, written


def _claim_and_work(
    sessions: Sessions, query: Select[Any], size: int, compute: Compute[Any], write: Write[Any]
) -> _Batch:
    """PostgreSQL: one transaction claims (locks), computes and writes; None if nothing could
    be locked."""
    with sessions.begin() as session:
        locked = session.execute(
            query.limit(size).with_for_update(skip_locked=True, key_share=True, of=Item)
        ).all()
        if not locked:
            return None
        current = _still_pending(session, query, [row.id for row in locked])
        claimed = [row for row in locked if row.id in current]
        logger.debug("%d items locked, %d still pending", len(locked), len(claimed))
        if not claimed:
            return [], {}, 0
        outputs = compute(claimed)
        return [row.id for row in claimed], outputs, _write_pending(session, query, outputs, write)


def _read_and_work(
    sessions: Sessions, query: Select[Any], size: int, compute: Compute[Any], write: Write[Any]
) -> _Batch:
    """SQLite: read without a lock, compute outside any transaction, write under the database's
    write lock; None if nothing is pending."""
    with sessions() as session:
        rows = session.execute(query.limit(size)).all()
    if not rows:
        return None
    outputs = compute(rows)
    with sessions.begin() as session:
        # The write lock as the transaction's first statement: what it reads next is current.
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        inserted = _write_pending(session, query, outputs, write)
    return [row.id for row in rows], outputs, inserted


def _write_pending(
    session: Session, query: Select[Any], outputs: Mapping[int, Any], write: Write[Any]
) -> int:
    """Write the outputs of the items that are still pending; how many were written."""
    if not outputs:
        return 0
    current = _still_pending(session, query, list(outputs))
    if len(current) < len(outputs):
        logger.debug("%d outputs dropped: done meanwhile", len(outputs) - len(current))
        outputs = {item_id: out for item_id, out in outputs.items() if item_id in current}
    return write(session, outputs) if outputs else 0


def _still_pending(session: Session, query: Select[Any], ids: Collection[int]) -> set[int]:
    """Those of ``ids`` that are pending, seen by a new statement (a fresh snapshot)."""
    return set(session.scalars(query.with_only_columns(Item.id).where(Item.id.in_(ids))))


def _any_pending(sessions: Sessions, query: Select[Any]) -> bool:
    with sessions() as session:
        return session.execute(query.with_only_columns(Item.id).limit(1)).first() is not None


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in {"postgresql", "sqlite"}:
        raise ValueError(f"claiming work supports PostgreSQL and SQLite stores, not {name}")
    return name
