"""Ingestion speed: ``load_batch`` with its audit trail against the limit and the naive way.

Rows: the 1,000 real rows of ``advertising/advertising.csv`` replicated with new keys up to
``--rows``. Every side starts from the same list of records and ends with a commit:

- ``loader``: ``load_batch`` into an empty data set: items, one ``insert`` history row per item,
  the batch row, with the store's indexes and foreign keys.
- ``limit``: the same rows (key, JSON data, label) into a table with no index; on PostgreSQL by
  COPY, on SQLite by one executemany.
- ``naive``: the same audited load done the naive way: the batch row, ``pandas.DataFrame.to_sql``
  of the rows into ``items``, their ids read back, then one INSERT per row into ``item_history``.

Goals: loader >= 0.5x the limit and >= 5x naive. Each repetition starts from empty tables; the
median of the repetitions is reported. PostgreSQL runs in a throwaway database, dropped after.

    .venv/bin/python benchmarks/bench_ingest.py --rows 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, create_engine, insert, make_url, select, text

from harness import datasets_dir
from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import Record, content_hash, load_batch, records_from_csv
from mlfactory.store import (
    DataLoad,
    Item,
    ItemHistory,
    dispose_engines,
    get_engine,
    session_factory,
    utcnow,
)
from mlfactory.store.tables import JsonType, UTCDateTime

DATASET = "bench"
NAIVE_TYPES = {"data": JsonType, "created_at": UTCDateTime(), "updated_at": UTCDateTime()}
LIMIT_GOAL = 0.5
NAIVE_GOAL = 5.0
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LIMIT_TABLE = {
    "postgresql": "CREATE TABLE bench_limit (key text, data jsonb, label text)",
    "sqlite": "CREATE TABLE bench_limit (key text, data text, label text)",
}
STORE_TABLES = ["item_history", "rejections", "items", "data_loads"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Rows per load (>= 1,000).")
    parser.add_argument("--repeat", type=int, default=3, help="Measured repetitions per side.")
    parser.add_argument(
        "--backend",
        choices=["postgresql", "sqlite"],
        action="append",
        help="Backend to measure (repeatable); both by default.",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MLF_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="A PostgreSQL server where a throwaway database may be created.",
    )
    args = parser.parse_args()
    if args.rows < 1_000 or args.repeat < 1:
        parser.error("--rows must be at least 1,000 and --repeat at least 1")
    return args


def replicated_records(rows: int) -> list[Record]:
    """The advertising rows copied under new keys (``<copy>-<line>``) until there are ``rows``."""
    path = datasets_dir() / "advertising" / "advertising.csv"
    base = [
        record
        for record in records_from_csv(read_csv_rows(path), label_field="Clicked on Ad")
        if isinstance(record, Record)
    ]
    copies = -(-rows // len(base))
    replicas = [
        Record(f"{copy}-{record.key}", record.data, record.label, record.line)
        for copy in range(copies)
        for record in base
    ]
    return replicas[:rows]


@contextmanager
def store(backend: str, postgres_url: str) -> Iterator[str]:
    """The URL of an empty store: a throwaway PostgreSQL database or a temporary SQLite file."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
            dispose_engines()
        return
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"mlf_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_tables(engine: Engine) -> None:
    tables = [*STORE_TABLES, "bench_limit"]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
            return
        for table in tables:
            connection.execute(text(f"DELETE FROM {table}"))


def run_loader(url: str, records: list[Record]) -> None:
    result = load_batch(session_factory(url), DATASET, records)
    if result.rows_inserted != len(records):
        raise RuntimeError(f"the loader inserted {result.rows_inserted} of {len(records)} rows")


def run_limit(engine: Engine, records: list[Record]) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            driver = connection.connection.driver_connection
            with (
                driver.cursor() as cursor,
                cursor.copy("COPY bench_limit (key, data, label) FROM STDIN") as copy,
            ):
                for record in records:
                    copy.write_row((record.key, json.dumps(record.data), record.label))
        else:
            connection.exec_driver_sql(
                "INSERT INTO bench_limit (key, data, label) VALUES (?, ?, ?)",
                [(record.key, json.dumps(record.data), record.label) for record in records],
            )


def run_naive(engine: Engine, records: list[Record]) -> None:
    now = utcnow()
    with engine.begin() as connection:
        batch_id = connection.execute(
            insert(DataLoad).returning(DataLoad.id),
            {"dataset": DATASET, "name": "naive", "mode": "full", "status": "completed"},
        ).scalar_one()
        frame = pd.DataFrame(
            {
                "key": [record.key for record in records],
                "data": [record.data for record in records],
                "label": [record.label for record in records],
                "content_hash": [content_hash(record.data, record.label) for record in records],
            }
        ).assign(
            dataset=DATASET,
            first_batch_id=batch_id,
            last_batch_id=batch_id,
            created_at=now,
            updated_at=now,
        )
        frame.to_sql("items", connection, if_exists="append", index=False, dtype=NAIVE_TYPES)
        query = select(Item.key, Item.id).where(Item.dataset == DATASET)
        ids = {key: item_id for key, item_id in connection.execute(query)}
        for record in records:
            connection.execute(
                insert(ItemHistory),
                {
                    "item_id": ids[record.key],
                    "batch_id": batch_id,
                    "operation": "insert",
                    "after": {"data": record.data, "label": record.label},
                    "changed_at": now,
                },
            )


def measure(backend: str, url: str, records: list[Record], repeat: int) -> dict[str, list[float]]:
    """Seconds of each side, per repetition."""
    engine = get_engine(url)  # migrates the store once, outside the measurements
    with engine.begin() as connection:
        connection.execute(text(LIMIT_TABLE[backend]))
    sides: dict[str, Callable[[], None]] = {
        "loader": lambda: run_loader(url, records),
        "limit": lambda: run_limit(engine, records),
        "naive": lambda: run_naive(engine, records),
    }
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, side in sides.items():
            empty_tables(engine)
            started = time.perf_counter()
            side()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def report(backend: str, rows: int, seconds: dict[str, list[float]]) -> None:
    rate = {name: rows / statistics.median(runs) for name, runs in seconds.items()}
    print(f"\n{backend}, {rows:,} rows, median of {len(seconds['loader'])} runs")
    for name, runs in seconds.items():
        listed = " ".join(f"{run:.2f}" for run in runs)
        print(f"  {name:<7} {rate[name]:>10,.0f} rows/s   [{listed}] s")
    for baseline, goal in (("limit", LIMIT_GOAL), ("naive", NAIVE_GOAL)):
        ratio = rate["loader"] / rate[baseline]
        verdict = "PASS" if ratio >= goal else "MISS"
        print(f"  loader/{baseline}: {ratio:.2f}x (goal >= {goal:g}x) {verdict}")


def main() -> None:
    args = parse_args()
    records = replicated_records(args.rows)
    for backend in args.backend or ["postgresql", "sqlite"]:
        with store(backend, args.postgres_url) as url:
            report(backend, args.rows, measure(backend, url, records, args.repeat))


if __name__ == "__main__":
    main()
