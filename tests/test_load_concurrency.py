"""Two loads of one data set at the same time: both complete, and the store ends as if they had
run one after the other, in the order their batches were opened.

Each load is a process of its own (``load_worker.py``) loading the advertising rows replicated
under new keys; the two overlap on half of their keys, and the second changes the label of those
rows, so whichever commits second updates them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mlfactory.ingest import loader
from mlfactory.ingest.loader import LoadResult, Record, load_batch
from mlfactory.store import DataLoad, Item, ItemHistory

WORKER = Path(__file__).with_name("load_worker.py")
COPIES = 6  # 6,000 rows per load


def start_load(url: str, source: Path, first_copy: int, flip: bool) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), url, "ads", str(source), str(COPIES)]
    args += ["--first-copy", str(first_copy)] + (["--flip-labels"] if flip else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_loads_of_one_data_set_both_complete_as_if_serial(
    sessions, store_url: str, advertising_csv: Path
) -> None:
    with sessions() as session:  # the store exists before the two processes race
        assert session.scalar(select(func.count()).select_from(DataLoad)) == 0
    loads = [
        start_load(store_url, advertising_csv, first_copy=0, flip=False),
        start_load(store_url, advertising_csv, first_copy=COPIES // 2, flip=True),
    ]
    for load in loads:
        _, err = load.communicate(timeout=120)
        assert load.returncode == 0, err

    overlap = COPIES // 2 * 1_000
    with sessions() as session:
        batches = session.execute(
            select(DataLoad.status, DataLoad.rows_inserted, DataLoad.rows_updated).order_by(
                DataLoad.ended_at
            )
        ).all()
        assert [status for status, *_ in batches] == ["completed", "completed"]
        # The first to commit inserted all its rows; the second inserted its new half and
        # updated the overlap, whose labels it flips.
        assert batches[0][1:] == (COPIES * 1_000, 0)
        assert batches[1][1:] == (COPIES * 1_000 - overlap, overlap)
        items = session.scalar(select(func.count()).select_from(Item))
        assert items == (COPIES + COPIES // 2) * 1_000
        operations = dict(
            session.execute(
                select(ItemHistory.operation, func.count()).group_by(ItemHistory.operation)
            ).all()
        )
        assert operations == {"insert": items, "update": overlap}
        keys = session.scalar(select(func.count(func.distinct(Item.key))))
        assert keys == items


def test_a_batch_opened_later_waits_for_the_earlier_one_to_be_written(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load A opens its batch, then stalls before writing; load B opens, and must not write
    before A (history is replayed in batch order, so B's values must be the last written)."""
    stalled, real_write_in_turn = threading.Event(), loader._write_in_turn

    def write_in_turn(*args: Any) -> LoadResult:
        if threading.current_thread().name == "A":
            assert stalled.wait(timeout=30)
        return real_write_in_turn(*args)

    monkeypatch.setattr(loader, "_write_in_turn", write_in_turn)
    results: dict[str, LoadResult] = {}

    def load(value: str) -> None:
        results[value] = load_batch(sessions, "ads", [Record("k", {"v": value})])

    first = threading.Thread(target=load, args=("A",), name="A")
    second = threading.Thread(target=load, args=("B",), name="B")
    first.start()
    try:
        with sessions() as session:  # A's batch is open
            assert wait_for(lambda: session.scalar(select(func.count(DataLoad.id))) == 1)
        second.start()
        time.sleep(1.0)
        assert "B" not in results  # B waits for A, the earlier batch
    finally:
        stalled.set()
        first.join(timeout=30)
        if second.ident is not None:  # started
            second.join(timeout=30)

    assert (results["A"].name, results["B"].name) == ("initial", "load_2")
    assert results["A"].batch_id < results["B"].batch_id
    assert (results["A"].rows_inserted, results["B"].rows_updated) == (1, 1)
    with sessions() as session:
        item = session.scalars(select(Item)).one()
        assert (item.data, item.first_batch_id, item.last_batch_id) == (
            {"v": "B"},
            results["A"].batch_id,
            results["B"].batch_id,
        )
        history = session.scalars(select(ItemHistory).order_by(ItemHistory.batch_id)).all()
    assert [(h.operation, h.after["data"]["v"]) for h in history] == [
        ("insert", "A"),
        ("update", "B"),
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
