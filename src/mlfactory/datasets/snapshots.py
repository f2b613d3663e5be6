"""Snapshots: the training and evaluation sets of a data set, materialised from the store.

- :func:`items_as_of` replays ``item_history`` to the state of every item as of a load batch.
- :func:`carve_evaluation_set` sets aside, once per data set, a seeded stratified sample of the
  labelled items. Its keys are recorded on its ``snapshots`` row and never enter training, even
  after later loads; asking again returns the same snapshot unchanged.
- :func:`training_snapshot` is everything else as of a batch, optionally balanced by random
  oversampling (imbalanced-learn ``RandomOverSampler``, seeded), written as parquet and recorded
  as a ``snapshots`` row with the class counts before and after balancing.

The digest of a snapshot is a sha256 over its content: one canonical JSON line
``[key, {"data": ..., "label": ...}]`` per row of the set (balanced rows included, so a row
drawn twice counts twice), sorted, after a header naming the kind and the balancing settings.
It depends on neither the backend, the order rows come back in, nor the batch ids, so the same
data gives the same digest on SQLite and PostgreSQL, and a batch that changed nothing gives the
digest of the batch before it.

A training snapshot asked for twice with the same inputs (same data set, as-of batch and
settings, hence the same digest) reuses the row that exists (its parquet file is written again
if it went missing); the same content as of another batch gets a row of its own with the same
digest, so each row's ``as_of_batch_id`` stays true. Two processes building the same snapshot at
the same instant may both add a row: both are correct and carry the same digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import imblearn
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from imblearn.over_sampling import RandomOverSampler
from matplotlib.figure import Figure
from sqlalchemy import Text, cast, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.store import DataLoad, Item, ItemHistory, Snapshot

Sessions = sessionmaker[Session]

TRAINING = "training"
EVALUATION = "evaluation"
DIGEST_FORMAT = "mlfactory.snapshot/2"  # /2: canonical JSON by orjson (floats as "1e-5")
PARQUET_METADATA_KEY = b"mlfactory.snapshot"
RESERVED_COLUMNS = ("key", "label")
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
Order = Literal["key", "arrival"]


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    dataset: str
    kind: str  # "training" | "evaluation"
    digest: str
    path: Path
    row_count: int
    class_counts: dict[str, int]
    balanced_counts: dict[str, int] | None
    as_of_batch_id: int | None
    seed: int | None


@dataclass(frozen=True)
class _Row:
    key: str
    label: str | None
    data: dict[str, Any]
    item_id: int = 0


# ---------------------------------------------------------------------------------------------
# Replaying the history


def items_as_of(sessions: Sessions, dataset: str, batch_id: int | None = None) -> pd.DataFrame:
    """The state of each item of ``dataset`` as of batch ``batch_id`` (default: the latest
    completed batch): for every item, its latest ``item_history`` row up to that batch.

    Columns: ``key``, ``label``, then one per data field, in name order (a field called ``key``
    or ``label`` becomes ``data.key`` / ``data.label``). Rows are in key order. Items deleted as
    of the batch are absent.
    """
    with sessions() as session:
        as_of = resolve_batch(session, dataset, batch_id)
        rows = _replay(session, dataset, as_of) if as_of is not None else []
    return _frame(rows)


def resolve_batch(session: Session, dataset: str, batch_id: int | None) -> int | None:
    """``batch_id`` checked to be a completed batch of ``dataset``, or the latest such batch
    (None when the data set has none)."""
    if batch_id is None:
        return session.scalar(
            select(func.max(DataLoad.id)).where(
                DataLoad.dataset == dataset, DataLoad.status == "completed"
            )
        )
    batch = session.get(DataLoad, batch_id)
    if batch is None or batch.dataset != dataset:
        raise UserError(f"batch {batch_id} is not a load batch of data set {dataset!r}")
    if batch.status != "completed":
        raise UserError(f"batch {batch_id} of data set {dataset!r} is {batch.status}")
    return batch_id


def _replay(session: Session, dataset: str, as_of: int, order: Order = "key") -> list[_Row]:
    """Every item's state as of batch ``as_of``, in key order or in the order the items arrived
    in the store (``arrival``: the order of their source for a first load)."""
    ranked = (
        select(
            ItemHistory.item_id,
            ItemHistory.after,
            func.row_number()
            .over(
                partition_by=ItemHistory.item_id,
                order_by=(ItemHistory.batch_id.desc(), ItemHistory.id.desc()),
            )
            .label("position"),
        )
        .join(Item, Item.id == ItemHistory.item_id)
        .join(DataLoad, DataLoad.id == ItemHistory.batch_id)
        .where(
            Item.dataset == dataset,
            ItemHistory.batch_id <= as_of,
            DataLoad.status == "completed",
        )
        .subquery()
    )
    # The states as JSON text, parsed here by orjson: four times the speed of the JSON type's
    # own parsing, which was half the cost of a snapshot.
    query = (
        select(Item.id, Item.key, cast(ranked.c.after, Text))
        .join(ranked, ranked.c.item_id == Item.id)
        .where(ranked.c.position == 1)
    )
    rows = []
    for item_id, key, text_state in session.execute(query):
        after = orjson.loads(text_state) if text_state is not None else None
        if after:  # a delete leaves no state (a JSON null, or SQL NULL)
            rows.append(
                _Row(
                    key=key, label=after.get("label"), data=after.get("data") or {}, item_id=item_id
                )
            )
    if order == "arrival":
        rows.sort(key=lambda row: row.item_id)
    else:
        rows.sort(key=lambda row: row.key)  # in Python: database collations differ
    return rows


def _frame(rows: Sequence[_Row]) -> pd.DataFrame:
    fields = {name for row in rows for name in row.data}
    columns: dict[str, str] = {}  # column -> data field
    for name in sorted(fields):
        column = name
        while column in RESERVED_COLUMNS or (column != name and column in fields):
            column = f"data.{column}"
        columns[column] = name
    ordered = sorted(columns)
    return pd.DataFrame(
        {
            "key": [row.key for row in rows],
            "label": [row.label for row in rows],
            **{
                column: _uniform([row.data.get(columns[column]) for row in rows])
                for column in ordered
            },
        },
        columns=["key", "label", *ordered],
    )


def _uniform(values: list[Any]) -> list[Any]:
    """A column whose values are all of one kind (text, number or boolean) stays as it is;
    anything else (mixed kinds, lists, objects) becomes canonical JSON text, so every column
    can be written to parquet and reads back the same on every backend."""
    kinds = {_kind(value) for value in values if value is not None}
    if len(kinds) <= 1 and "other" not in kinds:
        return values
    return [None if value is None else _canonical(value) for value in values]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    return "other"


def _canonical(value: Any) -> str:
    """Compact JSON with sorted keys, text as UTF-8: the same on every backend."""
    return orjson.dumps(value, option=_CANONICAL, default=str).decode()


# ---------------------------------------------------------------------------------------------
# Digest


def _row_line(row: _Row) -> str:
    return _canonical([row.key, {"data": row.data, "label": row.label}])


def _digest(header: dict[str, Any], lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    digest.update(_canonical({"format": DIGEST_FORMAT, **header}).encode())
    digest.update(b"\n")
    for line in sorted(lines):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Evaluation set


def carve_evaluation_set(
    sessions: Sessions,
    dataset: str,
    artifact_dir: Path,
    *,
    fraction: float = 0.2,
    seed: int = 42,
    run_id: int | None = None,
) -> SnapshotInfo:
    """The evaluation set of ``dataset``: carved the first time, the same snapshot ever after.

    The first call draws, seeded, ``fraction`` of the labelled items of each class (at least
    one, and never the whole class; a class with a single item stays in training) from the
    items as of the latest completed batch. Later calls return that snapshot whatever their
    arguments. Concurrent first calls are serialised, so only one set is ever carved.
    """
    if not 0 < fraction < 1:
        raise UserError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
    with sessions.begin() as session:
        _lock_snapshots(session, dataset)
        existing = _evaluation_row(session, dataset)
        if existing is not None:
            return _info(existing)
        as_of = resolve_batch(session, dataset, None)
        replayed = [] if as_of is None else _replay(session, dataset, as_of)
        rows = [row for row in replayed if row.label is not None]
        if as_of is None or not rows:
            raise UserError(f"data set {dataset!r} has no labelled items to carve from")
        chosen, singletons = _stratified_sample(rows, fraction, seed)
        picked = [row for row in rows if row.key in chosen]
        counts = _counts(row.label for row in picked)
        digest = _digest(
            {"kind": EVALUATION, "fraction": fraction, "seed": seed},
            (_row_line(row) for row in picked),
        )
        path = _write_parquet(
            _frame(picked), artifact_dir, dataset, EVALUATION, digest, len(picked)
        )
        snapshot = Snapshot(
            dataset=dataset,
            kind=EVALUATION,
            digest=digest,
            as_of_batch_id=as_of,
            row_count=len(picked),
            class_counts=counts,
            balanced_counts=None,
            seed=seed,
            path=str(path),
            run_id=run_id,
            meta={
                "fraction": fraction,
                "keys": sorted(chosen),
                "single_item_classes": singletons,
            },
        )
        session.add(snapshot)
        session.flush()
        return _info(snapshot)


def evaluation_snapshot(sessions: Sessions, dataset: str) -> SnapshotInfo | None:
    """The evaluation set of ``dataset``, or None when none has been carved yet."""
    with sessions() as session:
        row = _evaluation_row(session, dataset)
        return None if row is None else _info(row)


def latest_training_snapshot(
    sessions: Sessions, dataset: str, *, not_of_run: int | None = None
) -> SnapshotInfo | None:
    """The most recent training snapshot of ``dataset`` (taken by another run than
    ``not_of_run``, when given), or None when none was taken."""
    query = select(Snapshot).where(Snapshot.dataset == dataset, Snapshot.kind == TRAINING)
    if not_of_run is not None:
        query = query.where(or_(Snapshot.run_id.is_(None), Snapshot.run_id != not_of_run))
    with sessions() as session:
        row = session.scalar(query.order_by(Snapshot.id.desc()).limit(1))
        return None if row is None else _info(row)


def _evaluation_row(session: Session, dataset: str) -> Snapshot | None:
    return session.scalar(
        select(Snapshot)
        .where(Snapshot.dataset == dataset, Snapshot.kind == EVALUATION)
        .order_by(Snapshot.id)
        .limit(1)
    )


def _stratified_sample(
    rows: Sequence[_Row], fraction: float, seed: int
) -> tuple[set[str], list[str]]:
    by_class: dict[str, list[str]] = {}
    for row in rows:  # rows are in key order, so each class's keys are too
        by_class.setdefault(str(row.label), []).append(row.key)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    singletons = []
    for label in sorted(by_class):
        keys = by_class[label]
        if len(keys) < 2:
            singletons.append(label)
            continue
        size = min(max(1, round(len(keys) * fraction)), len(keys) - 1)
        chosen.update(keys[int(i)] for i in rng.choice(len(keys), size=size, replace=False))
    return chosen, singletons


def _lock_snapshots(session: Session, dataset: str) -> None:
    """Hold, until the transaction ends, a lock that serialises carving for ``dataset``:
    an advisory lock on PostgreSQL, the database's write lock on SQLite (taken by an update
    that changes nothing, before anything is read)."""
    if session.get_bind().dialect.name == "postgresql":
        name = f"mlfactory.snapshots:{dataset}".encode()
        key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        session.execute(text("UPDATE snapshots SET id = id WHERE 1 = 0"))


# ---------------------------------------------------------------------------------------------
# Training set


def training_snapshot(
    sessions: Sessions,
    dataset: str,
    artifact_dir: Path,
    *,
    as_of_batch_id: int | None = None,
    balance: bool = True,
    seed: int = 42,
    run_id: int | None = None,
    hold_out: bool = True,
    order: Order = "key",
) -> SnapshotInfo:
    """The labelled items of ``dataset`` as of ``as_of_batch_id`` (default: the latest
    completed batch) minus the evaluation set, oversampled to equal class counts when
    ``balance`` (``RandomOverSampler(random_state=seed)``), written as parquet and recorded.

    The evaluation set must have been carved first (:func:`carve_evaluation_set`): otherwise
    a set carved later could take items that earlier models were trained on. With
    ``hold_out=False`` there is none: the snapshot is every labelled item, for a pipeline that
    splits it itself. Rows are in key order, or in ``arrival`` order (see ``_replay``).
    """
    with sessions() as session:
        evaluation = _evaluation_row(session, dataset) if hold_out else None
        if evaluation is None and hold_out:
            raise UserError(
                f"data set {dataset!r} has no evaluation set yet: carve it before the first "
                "training snapshot, so that no evaluation item was ever trained on"
            )
        as_of = resolve_batch(session, dataset, as_of_batch_id)
        if as_of is None:
            raise UserError(f"data set {dataset!r} has no completed load")
        replayed = _replay(session, dataset, as_of, order)
    held_out = set(evaluation.meta.get("keys", [])) if evaluation else set()
    rows = [row for row in replayed if row.key not in held_out and row.label is not None]
    if not rows:
        raise UserError(f"data set {dataset!r} has no labelled items to train on as of {as_of}")
    counts = _counts(row.label for row in rows)

    header: dict[str, Any] = {"kind": TRAINING, "balance": None}
    if not hold_out:
        header["evaluation"] = None
    if order != "key":
        header["order"] = order  # the digest ignores order; the file it names does not
    indices = np.arange(len(rows))
    balanced_counts = None
    if balance:
        header["balance"] = {"sampler": "RandomOverSampler", "seed": seed}
        indices = oversample([str(row.label) for row in rows], seed)
        balanced_counts = _counts(rows[i].label for i in indices)
    lines = [_row_line(row) for row in rows]
    digest = _digest(header, (lines[i] for i in indices))
    frame = _frame(rows).iloc[indices].reset_index(drop=True)

    with sessions.begin() as session:
        existing = session.scalar(
            select(Snapshot)
            .where(
                Snapshot.dataset == dataset,
                Snapshot.kind == TRAINING,
                Snapshot.digest == digest,
                Snapshot.as_of_batch_id == as_of,
            )
            .order_by(Snapshot.id)
            .limit(1)
        )
        if existing is not None and existing.path and _holds(Path(existing.path), digest):
            return _info(existing)
        path = _write_parquet(frame, artifact_dir, dataset, TRAINING, digest, len(frame))
        if existing is not None:  # its file went missing: this one replaces it
            existing.path = str(path)
            return _info(existing)
        snapshot = Snapshot(
            dataset=dataset,
            kind=TRAINING,
            digest=digest,
            as_of_batch_id=as_of,
            row_count=len(frame),
            class_counts=counts,
            balanced_counts=balanced_counts,
            seed=seed if balance else None,
            path=str(path),
            run_id=run_id,
            meta={
                "evaluation_snapshot_id": evaluation.id if evaluation else None,
                "evaluation_keys_excluded": sum(row.key in held_out for row in replayed),
                "unlabelled_items": sum(row.label is None for row in replayed),
                "items": len(rows),
                "balance": header["balance"],
                "imbalanced_learn": imblearn.__version__ if balance else None,
                "columns": list(frame.columns),
            },
        )
        session.add(snapshot)
        session.flush()
        return _info(snapshot)


def oversample(labels: list[str], seed: int) -> np.ndarray:
    """Row indices of the balanced set: every row once, then the rows drawn (seeded) to bring
    each class up to the majority count."""
    if len(set(labels)) < 2:
        return np.arange(len(labels))
    sampler = RandomOverSampler(random_state=seed)
    positions, _ = sampler.fit_resample(np.arange(len(labels)).reshape(-1, 1), np.array(labels))
    return positions[:, 0]


def _counts(labels: Iterable[str | None]) -> dict[str, int]:
    return dict(sorted(Counter(str(label) for label in labels).items()))


# ---------------------------------------------------------------------------------------------
# Files and rows


def load_snapshot(info: SnapshotInfo) -> pd.DataFrame:
    """The rows of a snapshot, read from its parquet file (checked to be that snapshot's)."""
    if not info.path.is_file():
        raise UserError(f"the file of snapshot {info.id} is missing: {info.path}")
    if not _holds(info.path, info.digest):
        raise UserError(f"{info.path} does not hold snapshot {info.id} ({info.digest})")
    frame = pd.read_parquet(info.path)
    if len(frame) != info.row_count:
        raise UserError(f"{info.path} has {len(frame)} rows, snapshot {info.id} {info.row_count}")
    return frame


def _write_parquet(
    frame: pd.DataFrame, artifact_dir: Path, dataset: str, kind: str, digest: str, rows: int
) -> Path:
    """Write ``frame`` atomically (temporary file, then rename) with the snapshot's identity
    in the parquet metadata; the name carries the digest, so equal content shares a file."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)
    path = (artifact_dir / f"{slug}-{kind}-{digest[:16]}.parquet").resolve()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    identity = {"dataset": dataset, "kind": kind, "digest": digest, "row_count": rows}
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), PARQUET_METADATA_KEY: _canonical(identity).encode()}
    )
    fd, tmp = tempfile.mkstemp(dir=artifact_dir, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _holds(path: Path, digest: str) -> bool:
    if not path.is_file():
        return False
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    identity = json.loads(metadata.get(PARQUET_METADATA_KEY, b"{}"))
    return identity.get("digest") == digest


def _info(row: Snapshot) -> SnapshotInfo:
    return SnapshotInfo(
        id=row.id,
        dataset=row.dataset,
        kind=row.kind,
        digest=row.digest,
        path=Path(row.path or ""),
        row_count=row.row_count,
        class_counts={k: int(v) for k, v in sorted(row.class_counts.items())},
        balanced_counts=None
        if row.balanced_counts is None
        else {k: int(v) for k, v in sorted(row.balanced_counts.items())},
        as_of_batch_id=row.as_of_batch_id,
        seed=row.seed,
    )


# ---------------------------------------------------------------------------------------------
# Plot


def class_count_figure(before: dict[str, int], after: dict[str, int] | None, title: str) -> Figure:
    """Bar plots of the class counts before and (when given) after balancing, on one scale."""
    panels = [("before balancing" if after is not None else "class counts", before)]
    if after is not None:
        panels.append(("after balancing", after))
    labels = sorted(set(before) | set(after or {}))
    figure = Figure(figsize=(max(4.5, 0.5 * len(labels) + 2) * len(panels), 4))
    axes_list = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axes, (name, counts) in zip(axes_list, panels, strict=True):
        bars = axes.bar(labels, [counts.get(label, 0) for label in labels], color="tab:blue")
        axes.bar_label(bars)
        axes.set_title(name)
        axes.set_xlabel("class")
        axes.tick_params(axis="x", labelrotation=45 if len(labels) > 6 else 0)
    axes_list[0].set_ylabel("items")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
