"""SIGKILL at random points of a load: each rerun converges to what one clean load makes.

A process (``load_worker.py``) loads 20,000 rows, the advertising rows replicated under new keys,
and is killed at a random moment between the appearance of its batch row and the end of its
load. The rerun (in the test's own process) must then leave exactly the state an uninterrupted load
leaves: the same (key, content hash) pairs, one ``insert`` history row per item, and the killed
batch marked failed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, sessionmaker

from load_worker import replicated_records
from mlfactory.ingest.loader import load_batch
from mlfactory.store import DataLoad, Item, ItemHistory, session_factory

pytestmark = pytest.mark.slow

TRIALS = 10
COPIES = 20  # 20,000 rows
ROWS = COPIES * 1_000
# Kills land in the first 70 % of the fastest load seen so far, so none comes after the end.
KILL_WINDOW = 0.7
WORKER = Path(__file__).with_name("load_worker.py")


def start_worker(url: str, dataset: str, source: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, dataset, str(source), str(COPIES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def clean_load(url: str, source: Path) -> float:
    """Load the rows uninterrupted into data set ``clean``; return the seconds it took."""
    worker = start_worker(url, "clean", source)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    return float(out)


def wait_for_batch(sessions: sessionmaker[Session], dataset: str, worker: subprocess.Popen) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sessions() as session:
            batch_id = session.scalar(select(DataLoad.id).where(DataLoad.dataset == dataset))
        if batch_id is not None:
            return batch_id
        if worker.poll() is not None:
            pytest.fail(f"the worker ended before its batch appeared: {worker.stderr.read()}")
        time.sleep(0.002)
    pytest.fail("no batch row within 30 s")


def state(sessions: sessionmaker[Session], dataset: str) -> set[tuple[str, str]]:
    with sessions() as session:
        return set(
            session.execute(select(Item.key, Item.content_hash).where(Item.dataset == dataset))
        )


def history(sessions: sessionmaker[Session], dataset: str) -> list[tuple[str, int, int]]:
    """(operation, rows, distinct items) of the data set's history."""
    with sessions() as session:
        return session.execute(
            select(ItemHistory.operation, func.count(), func.count(distinct(ItemHistory.item_id)))
            .join(Item, Item.id == ItemHistory.item_id)
            .where(Item.dataset == dataset)
            .group_by(ItemHistory.operation)
        ).all()


def batches(sessions: sessionmaker[Session], dataset: str) -> list[tuple[str, str | None]]:
    with sessions() as session:
        return session.execute(
            select(DataLoad.status, DataLoad.error)
            .where(DataLoad.dataset == dataset)
            .order_by(DataLoad.id)
        ).all()


def test_a_load_killed_at_random_points_is_completed_by_its_rerun(
    store_url: str, advertising_csv: Path
) -> None:
    sessions = session_factory(store_url)
    records = replicated_records(advertising_csv, COPIES)
    fastest = clean_load(store_url, advertising_csv)
    expected = state(sessions, "clean")
    assert len(expected) == ROWS
    rng = random.Random(20261124)

    for trial in range(TRIALS):
        dataset = f"trial_{trial}"
        worker = start_worker(store_url, dataset, advertising_csv)
        batch_id = wait_for_batch(sessions, dataset, worker)
        window = KILL_WINDOW * fastest
        time.sleep(window * (trial + rng.random()) / TRIALS)  # one kill in each tenth
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        with sessions() as session:
            killed = session.get_one(DataLoad, batch_id).status
        assert killed == "running", f"trial {trial}: the kill came after the load had ended"

        started = time.perf_counter()
        rerun = load_batch(sessions, dataset, records)
        fastest = min(fastest, time.perf_counter() - started)

        assert (rerun.rows_inserted, rerun.rows_rejected) == (ROWS, 0)
        assert state(sessions, dataset) == expected
        assert history(sessions, dataset) == [("insert", ROWS, ROWS)]
        (failed, error), completed = batches(sessions, dataset)
        assert (failed, completed) == ("failed", ("completed", None))
        assert error.startswith(f"interrupted: process {worker.pid}")
