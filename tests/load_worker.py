"""A load run as a process of its own, by ``test_load_kill.py`` and ``test_load_concurrency.py``:

    python tests/load_worker.py STORE_URL DATASET ADVERTISING_CSV COPIES
        [--first-copy N] [--flip-labels]

Loads the advertising rows replicated COPIES times under new keys (``<copy>-<line>``, copies
numbered from N) into DATASET as one batch, labels flipped with ``--flip-labels``, then prints
the seconds the load took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import Record, load_batch, records_from_csv
from mlfactory.store import session_factory

FLIPPED = {"0": "1", "1": "0"}


def replicated_records(
    path: Path, copies: int, first_copy: int = 0, flip_labels: bool = False
) -> list[Record]:
    """The rows of ``path`` copied ``copies`` times, keyed ``<copy>-<line>``."""
    rows = records_from_csv(read_csv_rows(path), label_field="Clicked on Ad")
    base = [row for row in rows if isinstance(row, Record)]
    return [
        Record(
            f"{copy}-{row.key}",
            row.data,
            FLIPPED.get(row.label or "", row.label) if flip_labels else row.label,
            row.line,
        )
        for copy in range(first_copy, first_copy + copies)
        for row in base
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("dataset")
    parser.add_argument("source", type=Path)
    parser.add_argument("copies", type=int)
    parser.add_argument("--first-copy", type=int, default=0)
    parser.add_argument("--flip-labels", action="store_true")
    args = parser.parse_args()
    records = replicated_records(args.source, args.copies, args.first_copy, args.flip_labels)
    sessions = session_factory(args.url)  # migrates before the load starts
    started = time.perf_counter()
    load_batch(sessions, args.dataset, records)
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main()
