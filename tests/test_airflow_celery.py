"""Airflow 3 for real, as on a cluster: api-server, scheduler, dag-processor and a Celery worker
as processes, a PostgreSQL metadata database, Redis as the broker, mlfactory's store on
PostgreSQL. A pipeline's DAG is unpaused and triggered through the REST API v2 with a
parameter; its steps run in Celery, and mlfactory's run records and store show what they did.

It takes 1-2 minutes, most of it ``airflow db migrate`` on PostgreSQL and the components'
start-up. The test pipeline is ``tests/celery_pipeline.py``, registered through an entry point.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.states import READY_STATES
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from airflow_cluster import (
    REDIS_DB,
    airflow_cluster,
    cluster_env,
    entry_point_site,
    redis_error,
    redis_keys,
    redis_namespace,
    throwaway_database,
)
from celery_pipeline import DATASET, NAME
from conftest import POSTGRES_URL, REPO, service_missing
from mlfactory.store import DataLoad, Item, PipelineRun, TaskRun

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)]

BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
ROWS = 40
STEPS = ["load", "count", "report"]


@pytest.fixture(scope="module", autouse=True)
def celery_installed() -> None:
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError:
        service_missing("Airflow's Celery provider is not installed: pip install -e '.[airflow]'")


@pytest.fixture
def metadata_url(store_url: str) -> Iterator[str]:
    """Airflow's metadata database: a throwaway database on the server of the store (whose
    fixture has already found the server reachable, or skipped)."""
    with throwaway_database(POSTGRES_URL, "mlf_airflow") as url:
        yield url


@pytest.fixture
def broker_prefix() -> Iterator[str]:
    if error := redis_error(BROKER):
        service_missing(error)
    with redis_namespace(BROKER) as prefix:
        yield prefix


def test_celery_workers_run_a_pipeline_triggered_through_the_rest_api(
    cli_env: dict[str, str],
    sessions: sessionmaker[Session],
    metadata_url: str,
    broker_prefix: str,
    advertising_csv: Path,
    tmp_path: Path,
) -> None:
    site = entry_point_site(tmp_path / "site", {NAME: "celery_pipeline:pipeline"})
    base = {**cli_env, "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "tests")])}
    env = cluster_env(
        base, tmp_path / "airflow", REPO / "dags", metadata_url, BROKER, broker_prefix
    )
    with airflow_cluster(env, tmp_path / "logs") as cluster:
        run = cluster.run_dag(NAME, {"rows": ROWS}, timeout=180)
        assert run["state"] == "success", f"DAG run {run}\n{cluster.tails()}"
        tis = cluster.api("GET", f"/dags/{NAME}/dagRuns/{run['dag_run_id']}/taskInstances")
        # The DAG's success callback (run by the dag-processor) closes mlfactory's run record.
        cluster.wait_for("the run record to be closed", lambda: _closed_run(sessions), 60)
        # The worker stores each Celery task's result after the task instance ended.
        celery = cluster.wait_for(
            "a Celery result for every task", lambda: _celery_states(metadata_url), 60
        )
        assert redis_keys(BROKER, broker_prefix), "nothing of Celery's in our Redis namespace"
    assert cluster.leftovers == set(), "processes left behind"

    # Airflow's view: every task ran once, through Celery.
    by_task = {ti["task_id"]: ti for ti in tis["task_instances"]}
    assert {t: (ti["state"], ti["try_number"]) for t, ti in by_task.items()} == {
        step: ("success", 1) for step in STEPS
    }
    assert celery == {step: "SUCCESS" for step in STEPS}

    # mlfactory's run records, written from the task processes and the DAG callback.
    with sessions() as session:
        pipeline_run = session.scalars(select(PipelineRun)).one()
        attempts = session.scalars(select(TaskRun).order_by(TaskRun.id)).all()
        batch = session.scalars(select(DataLoad)).one()
        items = dict(
            session.execute(select(Item.key, Item.label).where(Item.dataset == DATASET)).all()
        )
    assert (pipeline_run.pipeline, pipeline_run.status, pipeline_run.engine) == (
        NAME,
        "success",
        "airflow",
    )
    assert pipeline_run.external_id == f"airflow:{NAME}:{run['dag_run_id']}"
    assert pipeline_run.params == {"rows": ROWS}  # the trigger's conf reached the steps
    assert [(a.step, a.attempt, a.status, a.engine) for a in attempts] == [
        (step, 1, "success", "airflow") for step in STEPS
    ]
    outputs = {a.step: a.output for a in attempts}
    pids = {step: output["pid"] for step, output in outputs.items()}
    assert pids == {step: by_task[step]["pid"] for step in STEPS}  # Airflow's task processes
    assert len(set(pids.values())) == len(STEPS) and os.getpid() not in pids.values()

    # The store state and outputs the pipeline should leave: the first ROWS source rows.
    expected = _first_rows(advertising_csv, ROWS)
    assert items == expected
    assert (batch.dataset, batch.status, batch.rows_inserted, batch.run_id) == (
        DATASET,
        "completed",
        ROWS,
        pipeline_run.id,
    )
    assert outputs["load"]["batch_id"] == batch.id and outputs["load"]["rows_inserted"] == ROWS
    assert outputs["count"]["by_label"] == dict(Counter(expected.values()))
    assert outputs["report"] == {
        "batch_id": batch.id,
        "items": ROWS,
        "click_rate": Counter(expected.values())["1"] / ROWS,
        "pid": pids["report"],
    }


def _closed_run(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as session:
        status = session.scalar(select(PipelineRun.status))
    return status if status not in (None, "running") else None


def _celery_states(metadata_url: str) -> dict[str, str] | None:
    """Task id -> state of the Celery task that ran it, joined through the external executor
    id the scheduler recorded; once every step's Celery task has finished."""
    engine = create_engine(metadata_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT ti.task_id, c.status FROM task_instance ti"
                    " JOIN celery_taskmeta c ON c.task_id = ti.external_executor_id"
                )
            ).all()
    finally:
        engine.dispose()
    states = {task: status for task, status in rows}
    done = len(states) == len(STEPS) and all(s in READY_STATES for s in states.values())
    return states if done else None


def _first_rows(path: Path, count: int) -> dict[str, str]:
    """Key (line number, as the advertising source numbers rows) -> label of the first rows."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))[:count]
    return {str(line): row["Clicked on Ad"] for line, row in enumerate(rows, start=2)}
