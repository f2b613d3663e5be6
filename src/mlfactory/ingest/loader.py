"""The loader: source records into ``items`` as one audited ``data_loads`` batch.

The mode of a batch decides which source rows it takes:

- ``full``: all of them.
- ``fraction``: the first P % of a seeded permutation of all the source's keys (see
  :mod:`mlfactory.ingest.fractions`), so a larger percentage always contains a smaller one; rows
  outside it are skipped and not counted.
- ``watermark``: the rows whose ordering field is newer than the watermark left in the store by
  the data set's last completed watermark batch; the batch keeps the highest value it saw as
  the next watermark (in its metadata), in the same transaction as its rows.

Unreadable rows have no key to select them by: every mode rejects them.

The write mode of a batch decides what it does with the rows it takes:

- ``upsert`` (the default): new keys are inserted, changed rows updated, others left alone.
- ``append``: new keys are inserted; a row whose key is stored with other content is rejected
  (an append never changes a stored row).
- ``replace`` (mode ``full`` only): as upsert, and the stored items whose key the batch does not
  hold are deleted. A deleted item keeps its row (``deleted_batch_id`` names the batch), so the
  history that leads to it stays whole; a key that comes back is inserted again. A row the batch
  rejects still protects its stored item when its key is known; when the batch has a rejected
  row whose key is unknown (an unreadable line could be any item), or no row at all, it deletes
  nothing and says why in its metadata (``deletions_skipped``).

Loads of one data set wait for each other and are written in the order they were opened (see
``_write_in_turn``). A batch is written in one
transaction and set-based, with no round trip per row: rows are hashed in Python as they stream
to the database. On PostgreSQL they are COPied into a temporary staging table, then one statement
inserts new items, updates changed ones and writes their history; on SQLite one read of the data
set's keys is followed by executemany inserts and updates. A crash leaves the whole batch or none
of it; the batch row itself is committed first and is marked failed by the next load when its
process died. Unchanged rows write nothing; inserts and updates write ``item_history``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple, get_args

import orjson
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.ingest.csv_reader import RAW_KEEP_CHARS, BadRow, SourceRow
from mlfactory.ingest.fractions import check_percentage, select_fraction
from mlfactory.processes import is_dead, owner
from mlfactory.store import DataLoad, Item, ItemHistory, Rejection, utcnow
from mlfactory.store.tables import db_timestamp

Sessions = sessionmaker[Session]
Mode = Literal["full", "fraction", "watermark"]
WriteMode = Literal["upsert", "append", "replace"]
DEFAULT_SEED = 42
CHUNK = 500  # rows per IN (...) query when reading back data of changed items
LOAD_ORDER_PATIENCE = 600.0  # seconds a batch waits for an earlier batch of its data set
LOAD_ORDER_POLL = 0.05  # seconds between looks while it waits
LOADER_META = frozenset(
    {
        "fraction_seed",
        "watermark_field",
        "watermark",
        "older_than_watermark",
        "write",
        "deletions_skipped",
    }
)
KEY_MAX = Item.__table__.c.key.type.length
LABEL_MAX = Item.__table__.c.label.type.length

STAGE_TABLE = """
CREATE TEMPORARY TABLE load_stage (
    ordinal integer, line integer, key text, data jsonb, label text, content_hash text
) ON COMMIT DROP
"""
STAGE_COPY = "COPY load_stage (ordinal, line, key, data, label, content_hash) FROM STDIN"
# An append refuses the staged rows whose key is stored, not deleted, with other content.
APPEND_CONFLICTS = text("""
DELETE FROM load_stage s
 USING items i
 WHERE i.dataset = :dataset AND i.key = s.key AND i.deleted_batch_id IS NULL
   AND i.content_hash <> s.content_hash
RETURNING s.line, s.key, s.data::text
""")
# One statement for the whole batch. Every CTE reads the items as they were before it, so
# `changed` holds the old data of the items to update, for their history. A deleted item whose
# key comes back is `revived`: inserted again, in its history too.
MERGE = text("""
WITH changed AS (
    SELECT i.id, i.data AS old_data, i.label AS old_label, s.data, s.label, s.content_hash,
           i.deleted_batch_id IS NOT NULL AS revived
      FROM load_stage s
      JOIN items i ON i.dataset = :dataset AND i.key = s.key
     WHERE i.content_hash <> s.content_hash OR i.deleted_batch_id IS NOT NULL
),
updated AS (
    UPDATE items i
       SET data = c.data, label = c.label, content_hash = c.content_hash,
           last_batch_id = :batch_id, updated_at = :now, deleted_batch_id = NULL
      FROM changed c
     WHERE i.id = c.id
    RETURNING i.id, c.old_data, c.old_label, c.data, c.label, c.revived
),
inserted AS (
    INSERT INTO items (dataset, key, data, label, content_hash,
                       first_batch_id, last_batch_id, created_at, updated_at)
    SELECT :dataset, s.key, s.data, s.label, s.content_hash, :batch_id, :batch_id, :now, :now
      FROM load_stage s
     WHERE NOT EXISTS (SELECT FROM items i WHERE i.dataset = :dataset AND i.key = s.key)
     ORDER BY s.ordinal
    RETURNING id, data, label
),
history AS (
    INSERT INTO item_history (item_id, batch_id, operation, before, after, changed_at)
    SELECT id, :batch_id, 'insert', NULL,
           jsonb_build_object('data', data, 'label', label), :now
      FROM inserted
    UNION ALL
    SELECT id, :batch_id, CASE WHEN revived THEN 'insert' ELSE 'update' END,
           CASE WHEN revived THEN NULL
                ELSE jsonb_build_object('data', old_data, 'label', old_label) END,
           jsonb_build_object('data', data, 'label', label), :now
      FROM updated
)
SELECT (SELECT count(*) FROM inserted) + (SELECT count(*) FROM updated WHERE revived),
       (SELECT count(*) FROM updated WHERE NOT revived)
""")
# A replace deletes the live items whose key is neither staged nor protected by a rejected row.
DELETE_ABSENT = text("""
WITH gone AS (
    UPDATE items i
       SET deleted_batch_id = :batch_id, last_batch_id = :batch_id, updated_at = :now
     WHERE i.dataset = :dataset AND i.deleted_batch_id IS NULL
       AND i.key NOT IN (SELECT key FROM load_stage)
       AND i.key <> ALL(CAST(:kept AS text[]))
    RETURNING i.id, i.data, i.label
),
history AS (
    INSERT INTO item_history (item_id, batch_id, operation, before, after, changed_at)
    SELECT id, :batch_id, 'delete', jsonb_build_object('data', data, 'label', label), NULL, :now
      FROM gone
)
SELECT count(*) FROM gone
""")
SQLITE_INSERT = """
INSERT INTO items (dataset, key, data, label, content_hash,
                   first_batch_id, last_batch_id, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The after state as json_object('data', json(data), 'label', label) would write it, without
# parsing the data again: ``data`` is already the compact JSON the loader wrote.
SQLITE_INSERT_HISTORY = """
INSERT INTO item_history (item_id, batch_id, operation, before, after, changed_at)
SELECT id, ?, 'insert', NULL, '{"data":' || data || ',"label":' || json_quote(label) || '}', ?
  FROM items
 WHERE id > ?
 ORDER BY id
"""
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class LoadOrderError(UserError):
    """An earlier batch of the data set is still running, long after this one was opened."""


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
    rows_deleted: int = 0
    percentage: float | None = None
    watermark: Any = None
    older_than_watermark: int = 0  # rows a watermark batch skipped as already loaded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Options:
    """What a batch takes from its source, checked before the batch is opened."""

    mode: Mode
    percentage: float | None
    seed: int
    watermark_field: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    write: WriteMode = "upsert"

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise ValueError(f"unknown load mode {self.mode!r}; choose among {get_args(Mode)}")
        if self.write not in get_args(WriteMode):
            raise ValueError(f"unknown write {self.write!r}; choose among {get_args(WriteMode)}")
        if self.write == "replace" and self.mode != "full":
            raise ValueError("a replace takes the whole source: mode 'full' only")
        if (self.mode == "fraction") != (self.percentage is not None):
            raise ValueError("a percentage is required by mode 'fraction' and by no other")
        if self.percentage is not None:
            check_percentage(self.percentage)
        if (self.mode == "watermark") != bool(self.watermark_field):
            raise ValueError("a watermark_field is required by mode 'watermark' and by no other")
        reserved = sorted(LOADER_META & self.meta.keys())
        if reserved:
            raise ValueError(f"metadata keys {reserved} are written by the loader itself")

    def batch_meta(self) -> dict[str, Any]:
        """The caller's metadata plus what the loader records about the modes."""
        meta = {**self.meta, "write": self.write}
        if self.mode == "fraction":
            return {**meta, "fraction_seed": self.seed}
        if self.mode == "watermark":
            return {**meta, "watermark_field": self.watermark_field}
        return meta


class _Staged(NamedTuple):
    """A record the batch will merge, with its canonical JSON and content hash (a named tuple:
    one is made per row, and a frozen dataclass costs 2.4 times as much to build)."""

    key: str
    data: dict[str, Any]
    label: str | None
    data_json: str
    digest: str
    line: int | None


class _Refused(NamedTuple):
    line: int | None
    key: str | None
    reason: str
    raw: str | None
    raw_bytes: int | None


class _Selection:
    """Which records a batch takes: in mode ``full``, all of them."""

    def admits(self, record: Record) -> bool:
        """Whether the batch takes ``record``; a ValueError rejects it with its message."""
        return True

    def outcome(self) -> dict[str, Any]:
        """What the completed batch adds to its metadata."""
        return {}


class _FractionSelection(_Selection):
    def __init__(self, keys: Iterable[str], percentage: float, seed: int) -> None:
        self._chosen = select_fraction(keys, percentage, seed)

    def admits(self, record: Record) -> bool:
        return record.key in self._chosen


class _WatermarkSelection(_Selection):
    """Takes the records newer than the stored watermark and remembers the highest value."""

    def __init__(self, field: str, watermark: Any) -> None:
        self._field = field
        self._floor = None if watermark is None else ordering_value(watermark)
        self._highest, self._highest_raw = self._floor, watermark
        self._older = 0

    def admits(self, record: Record) -> bool:
        raw = record.data.get(self._field)
        if raw is None or raw == "":
            raise ValueError(f"no value in watermark field {self._field!r}")
        try:
            value = ordering_value(raw)
            if self._floor is not None and not _later(value, self._floor):
                self._older += 1
                return False
            if self._highest is None or _later(value, self._highest):
                self._highest, self._highest_raw = value, raw
        except ValueError as exc:
            raise ValueError(f"watermark field {self._field!r}: {exc}") from None
        return True

    def outcome(self) -> dict[str, Any]:
        return {"watermark": self._highest_raw, "older_than_watermark": self._older}


def content_hash(data: dict[str, Any], label: str | None) -> str:
    return _canonical(data, label)[1]


def ordering_value(value: Any) -> Decimal | datetime:
    """A watermark value as something that compares correctly: a number as an exact decimal,
    an ISO-8601 timestamp as an aware datetime (a naive one is taken as UTC). Comparing the
    raw strings would put "9" after "10" and misorder timestamps with different offsets."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is neither a number nor an ISO-8601 timestamp")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        pass
    else:
        if number.is_finite():
            return number
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is neither a number nor an ISO-8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    mode: Mode = "full",
    name: str | None = None,
    source: str | None = None,
    percentage: float | None = None,
    seed: int = DEFAULT_SEED,
    watermark_field: str | None = None,
    meta: dict[str, Any] | None = None,
    run_id: int | None = None,
    write: WriteMode = "upsert",
) -> LoadResult:
    """Write ``rows`` into ``dataset`` as one batch; bad rows go to ``rejections``.

    ``mode="fraction"`` takes the first ``percentage`` % of the source's keys permuted with
    ``seed``; ``mode="watermark"`` takes the rows whose ``watermark_field`` is newer than the
    stored watermark. ``write`` is ``upsert``, ``append`` or ``replace`` (see the module).
    ``name`` defaults to ``initial`` then ``load_N``; ``meta`` is kept in the batch's metadata.
    """
    options = _Options(mode, percentage, seed, watermark_field, dict(meta or {}), write)
    batch_id, name = _open_batch(sessions, dataset, options, name, source, run_id)
    try:
        result = _write_in_turn(
            sessions,
            dataset,
            batch_id,
            lambda session: _write_batch(session, dataset, batch_id, name, options, rows, run_id),
        )
    except BaseException as exc:
        with sessions.begin() as session:
            batch = session.get_one(DataLoad, batch_id)
            batch.status, batch.ended_at = "failed", utcnow()
            batch.error = f"{type(exc).__name__}: {exc}"
        raise
    return result


def current_watermark(session: Session, dataset: str) -> Any:
    """The watermark of the data set's last completed watermark batch, or None: the value an
    API source asks for rows newer than."""
    meta = _last_completed(session, dataset, "watermark", DataLoad.meta)
    return None if meta is None else meta.get("watermark")


def completed_percentage(session: Session, dataset: str) -> float | None:
    """The percentage of the data set's last completed fraction batch, or None."""
    return _last_completed(session, dataset, "fraction", DataLoad.percentage)


def fail_interrupted_loads(session: Session, dataset: str) -> None:
    """Mark failed the batches left 'running' by a process on this host that has died."""
    running = session.scalars(
        select(DataLoad).where(DataLoad.dataset == dataset, DataLoad.status == "running")
    )
    for batch in running:
        if is_dead(batch.host, batch.pid):
            batch.status, batch.ended_at = "failed", utcnow()
            batch.error = f"interrupted: process {batch.pid} on {batch.host} died during the load"


def _last_completed(session: Session, dataset: str, mode: Mode, column: Any) -> Any:
    return session.scalar(
        select(column)
        .where(DataLoad.dataset == dataset, DataLoad.mode == mode, DataLoad.status == "completed")
        .order_by(DataLoad.id.desc())
        .limit(1)
    )


def _open_batch(
    sessions: Sessions,
    dataset: str,
    options: _Options,
    name: str | None,
    source: str | None,
    run_id: int | None,
) -> tuple[int, str]:
    host, pid = owner()
    with sessions.begin() as session:
        _lock_dataset(session, dataset)  # two loads opened at once must see each other
        fail_interrupted_loads(session, dataset)
        if name is None:
            done = session.scalar(
                select(func.count())
                .select_from(DataLoad)
                .where(DataLoad.dataset == dataset, DataLoad.status.in_(["completed", "running"]))
            )
            name = "initial" if not done else f"load_{done + 1}"
        batch = DataLoad(
            dataset=dataset,
            name=name,
            mode=options.mode,
            percentage=options.percentage,
            source=source,
            status="running",
            run_id=run_id,
            host=host,
            pid=pid,
            meta=options.batch_meta(),
        )
        session.add(batch)
        session.flush()
        return batch.id, name


def _write_batch(
    session: Session,
    dataset: str,
    batch_id: int,
    name: str,
    options: _Options,
    rows: Iterable[Record | BadRow],
    run_id: int | None,
) -> LoadResult:
    rows, selection = _selection(session, dataset, options, rows)
    triage = _Triage(selection)
    now = utcnow()
    merge = _merge_copy if session.get_bind().dialect.name == "postgresql" else _merge_sqlite
    merged = merge(session, _Target(dataset, batch_id, now, options.write), triage, rows)
    refused = [*triage.refused, *merged.refused]
    if refused:
        session.execute(
            insert(Rejection),
            [_rejection(dataset, batch_id, run_id, row, now) for row in refused],
        )
    outcome = selection.outcome()
    if options.write == "replace" and (unsafe := triage.deletions_unsafe()) is not None:
        outcome["deletions_skipped"] = unsafe
    result = LoadResult(
        batch_id=batch_id,
        name=name,
        rows_seen=triage.staged + len(triage.refused),
        rows_inserted=merged.inserted,
        rows_updated=merged.updated,
        rows_unchanged=triage.staged - merged.inserted - merged.updated - len(merged.refused),
        rows_rejected=len(refused),
        rows_deleted=merged.deleted,
        percentage=options.percentage,
        watermark=outcome.get("watermark"),
        older_than_watermark=outcome.get("older_than_watermark", 0),
    )
    session.execute(
        update(DataLoad)
        .where(DataLoad.id == batch_id)
        .values(
            status="completed",
            ended_at=utcnow(),
            meta={**options.batch_meta(), **outcome},
            **{
                column: value
                for column, value in asdict(result).items()
                if column.startswith("rows_")
            },
        )
    )
    return result


def _write_in_turn(
    sessions: Sessions, dataset: str, batch_id: int, write: Callable[[Session], LoadResult]
) -> LoadResult:
    """``write`` the batch in a transaction that holds the data set's lock, once no earlier
    batch of the data set is still running: batches are written in the order of their ids, the
    order in which history is replayed. Dead processes' batches on this host are marked failed
    on the way; a batch still running elsewhere is waited for, ``LOAD_ORDER_PATIENCE`` at most."""
    deadline = time.monotonic() + LOAD_ORDER_PATIENCE
    while True:
        with sessions.begin() as session:
            _lock_dataset(session, dataset)
            fail_interrupted_loads(session, dataset)
            earlier = session.scalars(
                select(DataLoad)
                .where(
                    DataLoad.dataset == dataset,
                    DataLoad.status == "running",
                    DataLoad.id < batch_id,
                )
                .order_by(DataLoad.id)
                .limit(1)
            ).first()
            if earlier is None:
                return write(session)
            waiting_for = (
                f"batch {earlier.id} ({earlier.name!r}, process {earlier.pid} on "
                f"{earlier.host}, started {earlier.started_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        if time.monotonic() > deadline:
            raise LoadOrderError(
                f"data set {dataset!r}: {waiting_for} is still running after "
                f"{LOAD_ORDER_PATIENCE:.0f} s, and the batches of a data set are written in "
                "order; if its process is gone, mark that batch failed and load again"
            )
        time.sleep(LOAD_ORDER_POLL)


def _lock_dataset(session: Session, dataset: str) -> None:
    """Wait for the transactions that hold the data set's lock, then hold it until this one
    ends: a load reads the rows of the loads before it, never races them to insert the same
    keys. On PostgreSQL a transaction-level advisory lock per data set; on SQLite the
    database's write lock, taken before anything is read."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"mlfactory.load:{dataset}"},
        )
    else:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _selection(
    session: Session, dataset: str, options: _Options, rows: Iterable[Record | BadRow]
) -> tuple[Iterable[Record | BadRow], _Selection]:
    """The selection of the batch's mode, and the rows to pass through it (a fraction needs
    every key of the source first, so its rows are read before any is selected)."""
    if options.mode == "fraction":
        assert options.percentage is not None
        rows = list(rows)
        keys = (row.key for row in rows if isinstance(row, Record))
        return rows, _FractionSelection(keys, options.percentage, options.seed)
    if options.mode == "watermark":
        assert options.watermark_field is not None
        watermark = current_watermark(session, dataset)
        return rows, _WatermarkSelection(options.watermark_field, watermark)
    return rows, _Selection()


class _Triage:
    """Splits the rows a batch takes into records to merge, streamed so that hashing overlaps
    the database's work, and rows to reject, collected with the count of staged records."""

    def __init__(self, selection: _Selection) -> None:
        self._selection = selection
        self.refused: list[_Refused] = []
        self.staged = 0

    def kept_keys(self) -> list[str]:
        """Keys of the rows refused so far: a replace must not delete their stored items."""
        return [row.key for row in self.refused if row.key is not None]

    def deletions_unsafe(self) -> str | None:
        """Why a replace must delete nothing, once every row has been seen; None when safe."""
        unknown = sum(row.key is None for row in self.refused)
        if unknown:
            return f"{unknown} rejected rows have no key: they could be any stored item"
        if not self.staged:
            return "the source had no row to keep"
        return None

    def __call__(self, rows: Iterable[Record | BadRow]) -> Iterator[_Staged]:
        first_line: dict[str, int | None] = {}
        for row in rows:
            if isinstance(row, BadRow):
                self.refused.append(_Refused(row.line, row.key, row.reason, row.raw, row.raw_bytes))
                continue
            try:
                if not self._selection.admits(row):
                    continue
            except ValueError as exc:
                self.refused.append(_refused(row, str(exc)))
                continue
            if row.key in first_line:
                reason = f"duplicate key {row.key!r} (first seen at line {first_line[row.key]})"
                self.refused.append(_refused(row, reason))
                continue
            first_line[row.key] = row.line
            data_json, digest = _canonical(row.data, row.label)
            problem = _unstorable(row, data_json)
            if problem:
                self.refused.append(_refused(row, problem))
                continue
            self.staged += 1
            yield _Staged(row.key, row.data, row.label, data_json, digest, row.line)


def _canonical(data: dict[str, Any], label: str | None) -> tuple[str, str]:
    """The JSON text of ``data`` with sorted keys, and the content hash of data and label.

    The hash is the sha256 of the compact sorted-key JSON of ``[data, label]`` (orjson: ten
    times faster than the standard library, which was half the cost of a load), built from the
    data's text so each row is serialised once: the text is also what the store keeps.
    """
    data_json = orjson.dumps(data, option=_JSON_OPTIONS, default=str)
    label_json = orjson.dumps(label)
    digest = hashlib.sha256(b"[" + data_json + b"," + label_json + b"]").hexdigest()
    return data_json.decode(), digest


def _unstorable(record: Record, data_json: str) -> str | None:
    """Why the store cannot keep ``record`` as it is, or None.

    PostgreSQL refuses these where SQLite would not, so they are rejected on every backend
    rather than failing the whole batch on one of them.
    """
    if len(record.key) > KEY_MAX:
        return f"key is {len(record.key):,} characters, over the store's limit of {KEY_MAX}"
    if record.label is not None and len(record.label) > LABEL_MAX:
        return f"label is {len(record.label):,} characters, over the store's limit of {LABEL_MAX}"
    if "\x00" in record.key or (record.label and "\x00" in record.label):
        return "NUL character in the key or label"
    # A NUL is escaped as \u0000 in JSON; a literal backslash before "u0000" is no NUL.
    if "\\u0000" in data_json and _holds_nul(record.data):
        return "NUL character in the data"
    return None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _later(value: Decimal | datetime, than: Decimal | datetime) -> bool:
    if type(value) is not type(than):
        raise ValueError(f"cannot order {value} against {than}: mixed numbers and timestamps")
    return value > than  # type: ignore[operator]


class _Target(NamedTuple):
    dataset: str
    batch_id: int
    now: datetime
    write: WriteMode


class _Merged(NamedTuple):
    inserted: int
    updated: int
    deleted: int
    refused: list[_Refused]
    """Rows the write refused after staging (an append's changed rows)."""


APPEND_REASON = "key {key!r} is stored with other content; an append never changes a stored row"


def _merge_copy(
    session: Session, target: _Target, triage: _Triage, rows: Iterable[Record | BadRow]
) -> _Merged:
    """PostgreSQL: COPY the batch into a staging table, then merge it in one statement (and,
    for a replace, delete the absent keys in another)."""
    session.execute(text(STAGE_TABLE))
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(STAGE_COPY) as copy:
        for ordinal, row in enumerate(triage(rows)):
            copy.write_row((ordinal, row.line, row.key, row.data_json, row.label, row.digest))
    params = {"dataset": target.dataset, "batch_id": target.batch_id, "now": target.now}
    refused = []
    if target.write == "append":
        conflicts = session.execute(APPEND_CONFLICTS, params).all()
        refused = [_conflict(line, key, raw) for line, key, raw in conflicts]
    inserted, updated = session.execute(MERGE, params).one()
    deleted = 0
    if target.write == "replace" and triage.deletions_unsafe() is None:
        # With statistics of the staging table, the planner hashes its keys once (NOT IN, a
        # hashed subplan), whatever it believes of items the batch has just inserted; a NOT
        # EXISTS was planned as a scan of the stage per item: minutes at 60,000 rows.
        session.execute(text("ANALYZE load_stage"))
        deleted = session.execute(DELETE_ABSENT, {**params, "kept": triage.kept_keys()}).scalar()
    return _Merged(inserted, updated, deleted or 0, refused)


def _merge_sqlite(
    session: Session, target: _Target, triage: _Triage, rows: Iterable[Record | BadRow]
) -> _Merged:
    """SQLite: one read of the data set's keys, executemany inserts of new items with their
    history in one INSERT ... SELECT, and executemany updates of changed (or revived) ones.

    New items are written through the driver, with the JSON text the hash was computed on, so
    each row is serialised once.
    """
    dataset, batch_id, now = target.dataset, target.batch_id, target.now
    existing = {
        key: (item_id, digest, deleted is not None)
        for item_id, key, digest, deleted in session.execute(
            select(Item.id, Item.key, Item.content_hash, Item.deleted_batch_id).where(
                Item.dataset == dataset
            )
        )
    }
    connection = session.connection()
    stamp = db_timestamp(session, now)
    written = (batch_id, batch_id, stamp, stamp)  # first and last batch, created and updated
    inserts: list[tuple[Any, ...]] = []
    updates: dict[int, dict[str, Any]] = {}
    revived: set[int] = set()
    refused: list[_Refused] = []
    seen: set[str] = set()
    for row in triage(rows):
        seen.add(row.key)
        known = existing.get(row.key)
        if known is None:
            inserts.append((dataset, row.key, row.data_json, row.label, row.digest, *written))
            continue
        item_id, digest, deleted = known
        if not deleted and digest == row.digest:
            continue
        if not deleted and target.write == "append":
            refused.append(_conflict(row.line, row.key, row.data_json))
            continue
        if deleted:
            revived.add(item_id)
        updates[item_id] = {
            "data": row.data,
            "label": row.label,
            "content_hash": row.digest,
            "last_batch_id": batch_id,
            "updated_at": now,
            "deleted_batch_id": None,
        }
    if inserts:
        # The batch holds the database's write lock: the items above the highest id are its own.
        highest = session.scalar(select(func.coalesce(func.max(Item.id), 0)))
        connection.exec_driver_sql(SQLITE_INSERT, inserts)
        connection.exec_driver_sql(SQLITE_INSERT_HISTORY, (batch_id, stamp, highest))
    _update_items(session, updates, revived, batch_id, now)
    deleted = 0
    if target.write == "replace" and triage.deletions_unsafe() is None:
        kept = seen | set(triage.kept_keys())
        absent = [known[0] for key, known in existing.items() if key not in kept and not known[2]]
        deleted = _delete_items(session, absent, batch_id, now)
    return _Merged(len(inserts) + len(revived), len(updates) - len(revived), deleted, refused)


def _conflict(line: int | None, key: str, raw: str) -> _Refused:
    return _Refused(
        line, key, APPEND_REASON.format(key=key), raw[:RAW_KEEP_CHARS], len(raw.encode())
    )


def _states(session: Session, ids: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, {data, label}) of the given items, read in chunks."""
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for item_id, data, label in session.execute(
            select(Item.id, Item.data, Item.label).where(Item.id.in_(chunk))
        ):
            yield item_id, {"data": data, "label": label}


def _update_items(
    session: Session,
    updates: dict[int, dict[str, Any]],
    revived: set[int],
    batch_id: int,
    now: datetime,
) -> None:
    """Update changed items, with their old state read back first for their history; a revived
    item's history says it was inserted again."""
    if not updates:
        return
    history = [
        {
            "item_id": item_id,
            "batch_id": batch_id,
            "operation": "insert" if item_id in revived else "update",
            "before": None if item_id in revived else before,
            "after": {"data": updates[item_id]["data"], "label": updates[item_id]["label"]},
            "changed_at": now,
        }
        for item_id, before in _states(session, list(updates))
    ]
    session.execute(
        update(Item), [{"id": item_id, **values} for item_id, values in updates.items()]
    )
    session.execute(insert(ItemHistory), history)


def _delete_items(session: Session, ids: list[int], batch_id: int, now: datetime) -> int:
    """Mark the items deleted by ``batch_id``, their last state kept in their history."""
    if not ids:
        return 0
    history = [
        {
            "item_id": item_id,
            "batch_id": batch_id,
            "operation": "delete",
            "before": before,
            "after": None,
            "changed_at": now,
        }
        for item_id, before in _states(session, ids)
    ]
    session.execute(
        update(Item),
        [
            {
                "id": item_id,
                "deleted_batch_id": batch_id,
                "last_batch_id": batch_id,
                "updated_at": now,
            }
            for item_id in ids
        ],
    )
    session.execute(insert(ItemHistory), history)
    return len(ids)


def _refused(record: Record, reason: str) -> _Refused:
    raw = json.dumps(record.data, ensure_ascii=False, default=str)
    return _Refused(record.line, record.key, reason, raw[:RAW_KEEP_CHARS], len(raw.encode()))


def _rejection(
    dataset: str, batch_id: int, run_id: int | None, refused: _Refused, now: datetime
) -> dict[str, Any]:
    """The rejections row of ``refused``, cut to what the store can keep: a rejected row must
    not fail its batch."""
    return {
        "dataset": dataset,
        "batch_id": batch_id,
        "run_id": run_id,
        "stage": "load",
        "line": refused.line,
        "key": None if refused.key is None else _without_nul(refused.key)[:KEY_MAX],
        "reason": refused.reason,
        "raw": None if refused.raw is None else _without_nul(refused.raw),
        "raw_bytes": refused.raw_bytes,
        "created_at": now,
    }


def _without_nul(value: str) -> str:
    return value.replace("\x00", "\ufffd")
