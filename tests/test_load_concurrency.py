"""Two loads of one data set at the same time: both complete, and the store ends as if they had
run one after the other (a per-data-set lock serialises them).

Each load is a process of its own (``load_worker.py``) loading the advertising rows replicated
under new keys; the two overlap on half of their keys, and the second changes the label of those
rows, so whichever commits second updates them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

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
