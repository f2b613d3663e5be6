"""A load to interrupt, run as a process by ``test_load_kill.py``:

    python tests/load_worker.py STORE_URL DATASET ADVERTISING_CSV COPIES

Loads the advertising rows replicated COPIES times under new keys into DATASET as one batch,
then prints the seconds the load took.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import Record, load_batch, records_from_csv
from mlfactory.store import session_factory


def replicated_records(path: Path, copies: int) -> list[Record]:
    """The rows of ``path`` copied ``copies`` times, keyed ``<copy>-<line>``."""
    rows = records_from_csv(read_csv_rows(path), label_field="Clicked on Ad")
    base = [row for row in rows if isinstance(row, Record)]
    return [
        Record(f"{copy}-{row.key}", row.data, row.label, row.line)
        for copy in range(copies)
        for row in base
    ]


def main(url: str, dataset: str, path: str, copies: str) -> None:
    records = replicated_records(Path(path), int(copies))
    sessions = session_factory(url)  # migrates before the load starts
    started = time.perf_counter()
    load_batch(sessions, dataset, records)
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main(*sys.argv[1:])
