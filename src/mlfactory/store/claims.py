"""Work selection instead of a queue: claim pending items in batches, work on them, write results.

"Pending" is a query on ``items`` (for example "items of this data set with no prediction from
this model version", "... with no summary"), read from the store each time, so a crash or a
restart loses nothing (committed batches stay, the rest is still pending) and several workers
can share the work. :func:`work_through` runs one worker: batch after batch, it claims up to
``batch_size`` pending items, ``compute``\\ s their outputs and ``write``\\ s them, each batch
committed on its own.

PostgreSQL (the cluster store, several workers), two ways to hold a claim:

- Quick work (a model's ``predict``): ``SELECT ... FOR NO KEY UPDATE SKIP LOCKED LIMIT n`` on
  ``items``, and the batch keeps its row locks while it is computed and written, in one
  transaction. Workers skip each other's batches instead of waiting for them. ``NO KEY UPDATE``
  rather than ``UPDATE``: it excludes other claimers just the same, but does not block inserts
  that merely reference the item (the foreign key check of another step's annotation or
  another model's prediction). Row locks live in the rows: any batch size is fine.
- Slow work (a chat API call, which can take a minute), named by ``claim``: an advisory lock per
  item in the lock space of that name, held on the worker's connection, and no transaction open
  while the batch is computed; the write is one short transaction, then the claims are released.
  Nothing holds back vacuum, and a load that updates a claimed item does not wait for the API. A
  worker reads the items no one has claimed (listed from ``pg_locks``) and tries to lock them
  without waiting (``pg_try_advisory_lock``). A worker that dies loses its connection, and
  PostgreSQL drops its claims with it (after a host crash, once the server notices: TCP
  keepalive). Advisory locks take room in the server's shared lock table, so a batch claims at
  most ``MAX_CLAIMS_PER_BATCH`` items this way.

Either way, a claim often covers items another worker has just finished (read before it
committed, claimed after): once the claim is held, a second statement, with a fresh snapshot,
drops the claimed items that are no longer pending. Whoever finished them committed before
releasing them, so the check is exact among claimers and no work is wasted. When nothing can be
claimed but items are still pending, others hold them (another worker's batch; for row locks also
another step or a load in progress): the worker looks again every ``retry_delay`` seconds and
stops after ``patience`` seconds without a claim, leaving them for later.

Pending items are taken in id order, and each batch starts past the last item the call claimed
(an index range, not a scan of every item done before it: a data set of a million items costs
the same per batch as one of a thousand); when nothing is left past it, the call looks once more
from the first item, for items others held meanwhile.

SQLite (the embedded store, one writer at a time, nothing to claim with): the pending items are
read without a lock and computed outside any transaction, so the database's single write lock is
not held during slow work; the outputs are then written in a ``BEGIN IMMEDIATE`` transaction,
which takes the write lock first. Two workers on one SQLite file may compute the same item, but
never write it twice.

On both, the outputs of items that stopped being pending while they were computed (someone that
does not claim first wrote theirs) are dropped just before writing, in the writing transaction.

``compute`` may leave items out of its answer (it failed on them): they stay pending, and the
worker does not claim them again during this call, so one bad item cannot stall it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Select, text
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store.tables import Item

Sessions = sessionmaker[Session]
Output = TypeVar("Output")
Compute = Callable[[Sequence[Row[Any]]], Mapping[int, Output]]
Write = Callable[[Session, Mapping[int, Output]], int]

LOCKED_RETRY_DELAY = 0.05  # seconds between looks while every pending item is locked by others
LOCKED_PATIENCE = 30.0  # seconds without a claim after which locked items are left for later
MAX_CLAIMS_PER_BATCH = 100  # advisory claims of one batch (the server's lock table is shared)

# The claims of a lock space in this database: advisory locks with two int keys (space, item).
_CLAIMED = text(
    "SELECT objid::bigint FROM pg_locks"
    " WHERE locktype = 'advisory' AND objsubid = 2 AND classid = CAST(:space AS bigint)::oid"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_TRY_LOCK = text(
    "SELECT id FROM unnest(CAST(:ids AS integer[])) AS id"
    " WHERE pg_try_advisory_lock(CAST(:space AS integer), id)"
)
_UNLOCK_ALL = text("SELECT pg_advisory_unlock_all()")

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
    claim: str | None = None,
    limit: int | None = None,
    stop: Callable[[], bool] = lambda: False,
    patience: float = LOCKED_PATIENCE,
    retry_delay: float = LOCKED_RETRY_DELAY,
) -> Progress:
    """Claim, compute and write pending items batch by batch until none is pending, ``limit``
    outputs were written or ``stop()`` says so (it is asked after each batch).

    ``pending`` selects ``Item.id`` (labelled ``id``) first, then what ``compute`` needs, from
    ``items``, for the pending items only, in ``Item.id`` order. ``compute`` gets the claimed rows
    and returns the outputs by item id; ``write`` inserts them in the batch's transaction and
    returns how many it wrote. ``claim`` names slow work, computed outside any transaction: on
    PostgreSQL workers with the same name then claim its items with advisory locks, at most
    ``MAX_CLAIMS_PER_BATCH`` per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if claim is not None and batch_size > MAX_CLAIMS_PER_BATCH:
        raise ValueError(
            f"batch_size must be at most {MAX_CLAIMS_PER_BATCH} for work claimed by name, "
            f"got {batch_size}"
        )
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    written = offered = batches = 0
    skipped: set[int] = set()  # claimed by this call and left pending by compute
    with sessions() as probe:
        on_postgresql = _dialect(probe) == "postgresql"
    if not on_postgresql:
        work: _Work = _read_and_work
    else:
        work = _claim_and_work if claim is None else _Claims(claim)
    last_claim = time.monotonic()
    after: int | None = None  # the last item claimed: the next batch starts past it
    while (limit is None or written < limit) and not stop():
        size = batch_size if limit is None else min(batch_size, limit - written)
        query = pending.where(Item.id.not_in(skipped)) if skipped else pending
        if after is not None:
            query = query.where(Item.id > after)
        batch = work(sessions, query, size, compute, write)
        if batch is None and after is not None:
            after = None  # nothing past the last claim: look once more from the first item
            continue
        if batch is None:
            if not on_postgresql or not _any_pending(sessions, query):
                break
            if time.monotonic() - last_claim > patience:
                logger.warning(
                    "pending items stayed claimed by other workers for %.0fs; left for a later run",
                    patience,
                )
                break
            time.sleep(retry_delay)
            continue
        last_claim = time.monotonic()
        claimed, outputs, inserted = batch
        if claimed:
            after = max(claimed)
            batches += 1
            written += inserted
            offered += len(outputs)
            skipped |= set(claimed) - set(outputs)
    return Progress(written=written, offered=offered, batches=batches)


_Batch = tuple[list[int], Mapping[int, Any], int] | None  # claimed ids, outputs, written
_Work = Callable[[Sessions, Select[Any], int, Compute[Any], Write[Any]], _Batch]


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


class _Claims:
    """PostgreSQL: claim a batch with advisory locks in the lock space of ``name``, compute it
    with no transaction open, write it in a short one, release the claims; None if nothing
    could be claimed."""

    def __init__(self, name: str) -> None:
        self.space = claim_space(name)

    def __call__(
        self,
        sessions: Sessions,
        query: Select[Any],
        size: int,
        compute: Compute[Any],
        write: Write[Any],
    ) -> _Batch:
        with sessions() as probe:
            engine = probe.get_bind()
        with engine.connect() as connection:
            try:
                ids = self._lock(connection, query, size)
                return self._work(connection, query, ids, compute, write) if ids else None
            finally:
                _release_claims(connection)

    def _lock(self, connection: Connection, query: Select[Any], size: int) -> list[int]:
        """Lock up to ``size`` pending items no one has claimed; the ids locked."""
        with connection.begin():
            claimed = connection.scalars(_CLAIMED, {"space": self.space}).all()
            unclaimed = query.where(Item.id.not_in(claimed)) if claimed else query
            candidates = connection.scalars(unclaimed.with_only_columns(Item.id).limit(size)).all()
            if not candidates:
                return []
            return list(connection.scalars(_TRY_LOCK, {"space": self.space, "ids": candidates}))

    def _work(
        self,
        connection: Connection,
        query: Select[Any],
        ids: list[int],
        compute: Compute[Any],
        write: Write[Any],
    ) -> _Batch:
        with connection.begin():  # a fresh snapshot: the claimed items still pending
            claimed = connection.execute(query.where(Item.id.in_(ids))).all()
        logger.debug("%d items claimed, %d still pending", len(ids), len(claimed))
        if not claimed:
            return [], {}, 0
        outputs = compute(claimed)  # no transaction open
        with Session(bind=connection) as session, session.begin():
            inserted = _write_pending(session, query, outputs, write)
        return [row.id for row in claimed], outputs, inserted


def _release_claims(connection: Connection) -> None:
    """Release every claim of ``connection`` (it holds no other session-level lock), those of a
    claim that failed half-way included; a connection that cannot is dropped, which releases
    them too. Either way none goes back to the pool with a claim."""
    try:
        with connection.begin():
            connection.execute(_UNLOCK_ALL)
    except BaseException as exc:
        logger.warning("could not release claims (%s): dropping the connection", exc)
        connection.invalidate()
        if not isinstance(exc, Exception):  # an interrupt goes on; a failed release is done
            raise


def claim_space(name: str) -> int:
    """The advisory lock space (the first key of ``pg_advisory_lock(int, int)``) of the work
    named ``name``: a stable, non-negative 32-bit hash of the name."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


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
