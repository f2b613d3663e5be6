"""Real Airflow 3: the DAGs parse, ``dag.test()`` runs a pipeline like the local runner does,
and a failing step shows its retries in Airflow and its failure in mlfactory's run records.

Each Airflow run happens in a subprocess with its own ``AIRFLOW_HOME`` and SQLite metadata
database (Airflow reads its configuration once, at import).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from conftest import REPO, service_missing
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, PipelineRun, TaskRun

pytestmark = pytest.mark.slow
DAGS = REPO / "dags"


@pytest.fixture(scope="module", autouse=True)
def airflow_installed() -> None:
    try:
        import airflow  # noqa: F401
    except ImportError:
        service_missing("Apache Airflow is not installed: pip install -e '.[airflow]'")


def airflow_env(
    tmp_path: Path, cli_env: dict[str, str], extra_path: Path | None = None
) -> dict[str, str]:
    home = tmp_path / "airflow"
    home.mkdir(exist_ok=True)
    env = {
        **cli_env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return env


def python(env: dict[str, str], code: str, timeout: int = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def migrate(env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_pipeline_parses_into_a_dag_without_touching_store_or_network(
    cli_env, tmp_path: Path
) -> None:
    env = airflow_env(tmp_path, cli_env)
    project = tmp_path / "mlfactory.yaml"  # a project's own pipeline becomes a DAG too
    project.write_text(
        "datasets:\n  clicks:\n    source: {kind: csv, path: clicks.csv}\n    label: clicked\n"
        "    columns: {age: integer, clicked: integer}\n"
        "pipelines:\n  clicks:\n    template: tabular_classification\n    dataset: clicks\n"
        "    schedule: '@hourly'\n"
    )
    env["MLF_PROJECT_FILE"] = str(project)
    # Unreachable store and registry: parsing must not need them.
    env["MLF_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    env["MLF_MLFLOW_TRACKING_URI"] = "http://127.0.0.1:1"
    out = python(
        env,
        """
        import json, os
        from mlfactory.orchestration.registry import all_pipelines
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        dags = {}
        for pipeline in all_pipelines():
            dag = bag.dags[pipeline.name]
            dags[pipeline.name] = {
                "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
                "steps": {s.name: sorted(s.needs) for s in pipeline.steps},
                "retries": {t.task_id: t.retries for t in dag.tasks},
                "expected_retries": {s.name: pipeline.retry_policy(s)[0] for s in pipeline.steps},
                "schedule": str(dag.schedule), "expected_schedule": str(pipeline.schedule),
                "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
                "paused": dag.is_paused_upon_creation, "tags": sorted(dag.tags),
                "params": sorted(dag.params.keys()),
                "expected_params": sorted(pipeline.params.model_fields),
                "doc": bool(dag.doc_md),
            }
        print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                          "dags": dags}))
    """,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert {"advertising", "products", "arxiv_train", "clicks"} <= set(report["dags"])
    for name, dag in report["dags"].items():
        assert dag["tasks"] == dag["steps"], name
        assert dag["retries"] == dag["expected_retries"], name
        assert dag["schedule"] == dag["expected_schedule"], name
        assert (dag["max_active_runs"], dag["catchup"], dag["paused"]) == (1, False, True)
        assert "mlfactory" in dag["tags"] and dag["doc"]
        assert dag["params"] == dag["expected_params"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_dag_test_runs_advertising_like_the_local_runner(
    cli_env, settings: Settings, tmp_path: Path
) -> None:
    env = airflow_env(tmp_path, cli_env)
    env["MLF_HOME"] = str(tmp_path / "airflow-home")
    env["MLF_DATABASE_URL"] = f"sqlite:///{tmp_path / 'airflow-store.db'}"
    env["MLF_MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'airflow-mlflow.db'}"
    migrate(env)
    out = python(
        env,
        """
        import os
        from airflow.dag_processing.dagbag import DagBag
        print("STATE", DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["advertising"].test().state)
    """,
    )
    assert "STATE success" in out

    local_env = {
        **cli_env,
        "MLF_HOME": str(tmp_path / "local-home"),
        "MLF_DATABASE_URL": f"sqlite:///{tmp_path / 'local-store.db'}",
        "MLF_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'local-mlflow.db'}",
    }
    subprocess.run(
        [sys.executable, "-m", "mlfactory", "run", "advertising"],
        env=local_env,
        check=True,
        capture_output=True,
        timeout=300,
    )

    airflow_state, local_state = (
        _store_state(env["MLF_DATABASE_URL"]),
        _store_state(local_env["MLF_DATABASE_URL"]),
    )
    assert airflow_state["items"] == local_state["items"]
    assert airflow_state["batches"] == local_state["batches"] == [("initial", "completed", 1000)]
    assert airflow_state["run"][:2] == ("success", "airflow")
    assert local_state["run"][:2] == ("success", "local")
    assert airflow_state["run"][2:] == local_state["run"][2:]  # model version and accuracy
    assert airflow_state["steps"] == local_state["steps"]
    assert airflow_state["engines"] == {"airflow"}
    from mlflow.tracking import MlflowClient

    uri = env["MLF_MLFLOW_TRACKING_URI"]
    assert MlflowClient(uri, uri).get_registered_model("advertising").aliases == {"champion": 1}


def _store_state(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as connection:
        run = connection.execute(
            select(
                PipelineRun.status,
                PipelineRun.engine,
                PipelineRun.model_version,
                PipelineRun.metrics,
            )
        ).one()
        state = {
            "items": dict(connection.execute(select(Item.key, Item.content_hash)).all()),
            "batches": [
                tuple(r)
                for r in connection.execute(
                    select(DataLoad.name, DataLoad.status, DataLoad.rows_inserted)
                )
            ],
            "run": (run.status, run.engine, run.model_version, round(run.metrics["accuracy"], 6)),
            "steps": sorted(
                connection.execute(select(TaskRun.step, TaskRun.status, TaskRun.attempt)).all()
            ),
            "engines": set(connection.execute(select(TaskRun.engine)).scalars()),
        }
    engine.dispose()
    return state


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_failing_step_shows_its_retries_in_airflow_and_the_failure_in_run_records(
    cli_env, tmp_path: Path
) -> None:
    package = tmp_path / "site"
    package.mkdir()
    (package / "flaky_pipelines.py").write_text(
        textwrap.dedent("""
        from mlfactory.orchestration import Pipeline, Step
        failures = []
        def boom(ctx):
            raise RuntimeError(f"boom on attempt {ctx.attempt}")
        pipeline = Pipeline(name="flaky", retries=2, retry_delay=0.5, steps=(
            Step("first", lambda ctx: {"ok": 1}),
            Step("boom", boom, needs=("first",)),
            Step("after", lambda ctx: None, needs=("boom",)),
        ))
    """)
    )
    dist = package / "flaky_pipelines-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flaky-pipelines\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mlfactory.pipelines]\nflaky = flaky_pipelines:pipeline\n"
    )
    env = airflow_env(tmp_path, cli_env, extra_path=package)
    migrate(env)
    out = python(
        env,
        """
        import json, os
        from airflow.dag_processing.dagbag import DagBag
        run = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["flaky"].test()
        tis = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
        print(json.dumps({"state": str(run.state), "tis": tis}))
    """,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report["state"].endswith("failed")
    assert report["tis"]["boom"] == ["failed", 3]  # one try and two retries
    assert report["tis"]["after"][0] == "upstream_failed"

    engine = create_engine(env["MLF_DATABASE_URL"])
    with engine.connect() as connection:
        run = connection.execute(
            select(PipelineRun.status, PipelineRun.error, PipelineRun.engine)
        ).one()
        attempts = connection.execute(
            select(TaskRun.step, TaskRun.attempt, TaskRun.status).order_by(TaskRun.id)
        ).all()
    engine.dispose()
    assert (run.status, run.engine) == ("failed", "airflow")
    assert "boom on attempt 3" in run.error
    assert [tuple(a) for a in attempts] == [
        ("first", 1, "success"),
        ("boom", 1, "failed"),
        ("boom", 2, "failed"),
        ("boom", 3, "failed"),
    ]
