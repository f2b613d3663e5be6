"""The loader: source records into ``items`` as one audited ``data_loads`` batch.

A batch is written in one transaction, set-based (one read of the data set's keys and hashes,
then bulk inserts and updates), so a crash leaves either the whole batch or none of it; the
batch row itself is committed first and is marked failed by the next load when its process died.
Unchanged rows write nothing; inserts and updates write ``item_history``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.ingest.csv_reader import BadRow, SourceRow
from mlfactory.processes import is_dead, owner
from mlfactory.store import DataLoad, Item, ItemHistory, Rejection, utcnow

Sessions = sessionmaker[Session]
CHUNK = 500  # rows per IN (...) query when reading back data of changed items


@dataclass(frozen=True)
class Record:
    """One source row as the store keeps it."""

    key: str
    data: dict[str, Any]
    label: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class LoadResult:
    batch_id: int
    name: str
    rows_seen: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_hash(data: dict[str, Any], label: str | None) -> str:
    canonical = json.dumps([data, label], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def records_from_csv(
    rows: Iterable[SourceRow | BadRow], label_field: str | None, key_field: str | None = None
) -> Iterator[Record | BadRow]:
    """CSV rows as records keyed by ``key_field``, or by their line number when the source has
    no natural key; bad rows pass through untouched."""
    for row in rows:
        if isinstance(row, BadRow):
            yield row
            continue
        key = row.fields[key_field] if key_field else str(row.line)
        label = row.fields.get(label_field) if label_field else None
        yield Record(key=key, data=row.fields, label=label or None, line=row.line)


def load_batch(
    sessions: Sessions,
    dataset: str,
    rows: Iterable[Record | BadRow],
    *,
    mode: str = "full",
    name: str | None = None,
    source: str | None = None,
    percentage: float | None = None,
    run_id: int | None = None,
) -> LoadResult:
    """Upsert ``rows`` into ``dataset`` as one batch; bad rows go to ``rejections``."""
    batch_id, name = _open_batch(sessions, dataset, mode, name, source, percentage, run_id)
    try:
        with sessions.begin() as session:
            result = _write_batch(session, dataset, batch_id, name, rows, run_id)
    except BaseException as exc:
        with sessions.begin() as session:
            batch = session.get_one(DataLoad, batch_id)
            batch.status, batch.ended_at = "failed", utcnow()
            batch.error = f"{type(exc).__name__}: {exc}"
        raise
    return result


def fail_interrupted_loads(session: Session, dataset: str) -> None:
    """Mark failed the batches left 'running' by a process on this host that has died."""
    running = session.scalars(
        select(DataLoad).where(DataLoad.dataset == dataset, DataLoad.status == "running")
    )
    for batch in running:
        if is_dead(batch.host, batch.pid):
            batch.status, batch.ended_at = "failed", utcnow()
            batch.error = f"interrupted: process {batch.pid} on {batch.host} died during the load"


def _open_batch(
    sessions: Sessions,
    dataset: str,
    mode: str,
    name: str | None,
    source: str | None,
    percentage: float | None,
    run_id: int | None,
) -> tuple[int, str]:
    host, pid = owner()
    with sessions.begin() as session:
        fail_interrupted_loads(session, dataset)
        if name is None:
            done = session.scalar(
                select(func.count())
                .select_from(DataLoad)
                .where(DataLoad.dataset == dataset, DataLoad.status == "completed")
            )
            name = "initial" if not done else f"load_{done + 1}"
        batch = DataLoad(
            dataset=dataset,
            name=name,
            mode=mode,
            percentage=percentage,
            source=source,
            status="running",
            run_id=run_id,
            host=host,
            pid=pid,
        )
        session.add(batch)
        session.flush()
        return batch.id, name


def _write_batch(
    session: Session,
    dataset: str,
    batch_id: int,
    name: str,
    rows: Iterable[Record | BadRow],
    run_id: int | None,
) -> LoadResult:
    existing = {
        key: (item_id, digest)
        for item_id, key, digest in session.execute(
            select(Item.id, Item.key, Item.content_hash).where(Item.dataset == dataset)
        )
    }
    seen: dict[str, int | None] = {}
    inserts: list[dict[str, Any]] = []
    updates: dict[int, dict[str, Any]] = {}
    rejections: list[dict[str, Any]] = []
    unchanged = 0
    now = utcnow()
    for row in rows:
        if isinstance(row, BadRow):
            rejections.append(
                _rejection(
                    dataset, batch_id, run_id, row.line, None, row.reason, row.raw, row.raw_bytes
                )
            )
            continue
        if row.key in seen:
            raw = json.dumps(row.data, ensure_ascii=False)
            reason = f"duplicate key {row.key!r} (first seen at line {seen[row.key]})"
            rejections.append(
                _rejection(
                    dataset, batch_id, run_id, row.line, row.key, reason, raw, len(raw.encode())
                )
            )
            continue
        seen[row.key] = row.line
        digest = content_hash(row.data, row.label)
        known = existing.get(row.key)
        values = {
            "data": row.data,
            "label": row.label,
            "content_hash": digest,
            "last_batch_id": batch_id,
            "updated_at": now,
        }
        if known is None:
            inserts.append(
                {
                    "dataset": dataset,
                    "key": row.key,
                    "first_batch_id": batch_id,
                    "created_at": now,
                    **values,
                }
            )
        elif known[1] != digest:
            updates[known[0]] = values
        else:
            unchanged += 1

    history = _insert_items(session, inserts, batch_id, now)
    history += _update_items(session, updates, batch_id, now)
    if history:
        session.execute(insert(ItemHistory), history)
    if rejections:
        session.execute(insert(Rejection), rejections)
    result = LoadResult(
        batch_id=batch_id,
        name=name,
        rows_seen=len(seen) + len(rejections),
        rows_inserted=len(inserts),
        rows_updated=len(updates),
        rows_unchanged=unchanged,
        rows_rejected=len(rejections),
    )
    session.execute(
        update(DataLoad)
        .where(DataLoad.id == batch_id)
        .values(
            status="completed",
            ended_at=utcnow(),
            **{
                field: getattr(result, field)
                for field in LoadResult.__dataclass_fields__
                if field.startswith("rows_")
            },
        )
    )
    return result


def _insert_items(
    session: Session, inserts: list[dict[str, Any]], batch_id: int, now: Any
) -> list[dict[str, Any]]:
    if not inserts:
        return []
    ids = session.scalars(
        insert(Item).returning(Item.id, sort_by_parameter_order=True), inserts
    ).all()
    return [
        {
            "item_id": item_id,
            "batch_id": batch_id,
            "operation": "insert",
            "before": None,
            "after": _state(row),
            "changed_at": now,
        }
        for item_id, row in zip(ids, inserts, strict=True)
    ]


def _update_items(
    session: Session, updates: dict[int, dict[str, Any]], batch_id: int, now: Any
) -> list[dict[str, Any]]:
    history = []
    ids = list(updates)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for item_id, data, label in session.execute(
            select(Item.id, Item.data, Item.label).where(Item.id.in_(chunk))
        ):
            history.append(
                {
                    "item_id": item_id,
                    "batch_id": batch_id,
                    "operation": "update",
                    "before": {"data": data, "label": label},
                    "after": _state(updates[item_id]),
                    "changed_at": now,
                }
            )
    if updates:
        session.execute(
            update(Item), [{"id": item_id, **values} for item_id, values in updates.items()]
        )
    return history


def _state(values: dict[str, Any]) -> dict[str, Any]:
    return {"data": values["data"], "label": values["label"]}


def _rejection(
    dataset: str,
    batch_id: int,
    run_id: int | None,
    line: int | None,
    key: str | None,
    reason: str,
    raw: str | None,
    raw_bytes: int | None,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "batch_id": batch_id,
        "run_id": run_id,
        "stage": "load",
        "line": line,
        "key": key,
        "reason": reason,
        "raw": raw,
        "raw_bytes": raw_bytes,
        "created_at": utcnow(),
    }
