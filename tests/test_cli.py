"""The ``mlfactory`` command as a user meets it: real processes, real output, exit codes."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlfactory.datasets.project import declarations
from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.declared import typed_records
from mlfactory.ingest.loader import Record, content_hash
from mlfactory.orchestration import get_pipeline
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, ItemHistory, PipelineRun

MLFACTORY = [sys.executable, "-m", "mlfactory"]


def mlfactory(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*MLFACTORY, *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        pytest.fail(f"mlfactory {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.mark.slow
def test_run_prints_metrics_and_version_then_runs_and_status_list_it(cli_env, model_name) -> None:
    result = mlfactory(cli_env, "run", "advertising", "-p", f"model_name={model_name}")
    assert "succeeded" in result.stdout
    assert "accuracy" in result.stdout
    assert f"Registered model {model_name} version 1 (alias champion)" in result.stdout

    runs = json.loads(mlfactory(cli_env, "runs", "advertising", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "success"
    assert runs[0]["step_states"] == {"success": 8}
    table = mlfactory(cli_env, "runs", "advertising").stdout
    assert "8 success" in table and "v1" in table

    status = json.loads(mlfactory(cli_env, "status", "--json").stdout)
    assert [(row["pipeline"], row["model_version"]) for row in status] == [("advertising", "1")]
    assert status[0]["metrics"]["accuracy"] > 0.9
    detail = json.loads(mlfactory(cli_env, "runs", "--id", str(runs[0]["id"]), "--json").stdout)
    assert [a["step"] for a in detail["attempts"]][-1] == "summary"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "Error: unknown pipeline 'nope' (registered: advertising"),
        (
            ["run", "advertising", "-p", "test_size=abc"],
            "test_size: Input should be a valid number",
        ),
        (["run", "advertising", "-p", "speed=9"], "unknown parameter(s) speed"),
        (["run", "advertising", "-p", "test_size"], "not of the form key=value"),
        (["run", "advertising", "-p", "features=Age,Height"], "unknown features ['Height']"),
        (["runs", "nope"], "unknown pipeline 'nope'"),
        (["runs", "--id", "999"], "no run with id 999"),
        (["data", "load", "nope"], "unknown data set 'nope' (declared: advertising, arxiv"),
        (["data", "status", "nope"], "unknown data set 'nope'"),
        (["data", "history", "nope"], "unknown data set 'nope'"),
        (["data", "show", "nope"], "unknown data set 'nope'"),
        (["data", "rejections", "nope"], "unknown data set 'nope'"),
        (["data", "add", "advertising", "--file", "x.csv"], "'advertising' is already declared"),
    ],
)
def test_mistakes_get_one_line_not_a_traceback(cli_env, args: list[str], message: str) -> None:
    result = mlfactory(cli_env, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_pipelines_lists_the_builtins_with_their_parameters(cli_env) -> None:
    rows = json.loads(mlfactory(cli_env, "pipelines", "--json").stdout)
    advertising = next(row for row in rows if row["name"] == "advertising")
    assert advertising["schedule"] == "@daily"
    steps = get_pipeline("advertising").ordered_steps()
    assert advertising["steps"] == [step.name for step in steps]
    assert advertising["params"]["test_size"]["default"] == 0.3


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_pipeline_from_another_package_is_found_by_entry_point(cli_env, tmp_path: Path) -> None:
    package = tmp_path / "site"
    (package / "extra_pipelines.py").parent.mkdir()
    (package / "extra_pipelines.py").write_text(
        "from mlfactory.orchestration import Pipeline, Step\n"
        "pipeline = Pipeline(name='hello', schedule='@hourly',\n"
        "                    steps=(Step('greet', lambda ctx: {'hello': ctx.run_id}),))\n"
    )
    dist = package / "extra_pipelines-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-pipelines\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mlfactory.pipelines]\nhello = extra_pipelines:pipeline\n"
    )
    env = {**cli_env, "PYTHONPATH": str(package)}

    names = [row["name"] for row in json.loads(mlfactory(env, "pipelines", "--json").stdout)]
    assert {"advertising", "hello"} <= set(names)
    assert "succeeded" in mlfactory(env, "run", "hello").stdout
    runs = json.loads(mlfactory(env, "runs", "hello", "--json").stdout)
    assert runs[0]["attempts"][0]["output"] == {"hello": runs[0]["id"]}


@pytest.mark.slow
def test_sigkill_during_the_load_then_rerun_converges(
    cli_env, settings: Settings, sessions, advertising_csv: Path, model_name: str
) -> None:
    """Kill the load twice at random points, rerun: the store is what one clean load makes."""
    with advertising_csv.open(newline="") as file:
        header, *rows = list(csv.reader(file))
    source = settings.home / "big.csv"  # the home is a folder runs may read
    source.parent.mkdir(parents=True, exist_ok=True)
    with source.open("w", newline="") as file:  # 60,000 distinct rows
        topic = header.index("Ad Topic Line")
        csv.writer(file).writerows(
            [header]
            + [
                [*row[:topic], f"{row[topic]} #{copy}", *row[topic + 1 :]]
                for copy in range(60)
                for row in rows
            ]
        )
    declared = declarations(Settings()).dataset("advertising")
    expected = {
        record.key: content_hash(record.data, record.label)
        for record in typed_records(declared, read_csv_rows(source))
        if isinstance(record, Record)
    }
    args = ("run", "advertising", "-p", f"source={source}", "-p", f"model_name={model_name}")
    rng = random.Random(20261124)

    for trial in range(2):
        process = subprocess.Popen(
            [*MLFACTORY, *args], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while _batches(sessions) <= trial and time.monotonic() < deadline:  # wait for its batch
            if process.poll() is not None:
                pytest.fail("the run ended before its load started")
            time.sleep(0.01)
        time.sleep(rng.uniform(0.02, 0.3))  # a clean load of these rows takes about 1 s
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert _batches(sessions, "completed") == 0, "the kill came after the load had finished"

    mlfactory(cli_env, *args)

    with sessions() as session:
        stored = dict(session.execute(select(Item.key, Item.content_hash)).all())
        history = session.execute(
            select(ItemHistory.operation, func.count()).group_by(ItemHistory.operation)
        ).all()
        batches = session.execute(
            select(DataLoad.status, DataLoad.error).order_by(DataLoad.id)
        ).all()
        runs = session.execute(select(PipelineRun.status).order_by(PipelineRun.id)).scalars().all()
    assert stored == expected
    assert history == [("insert", 60_000)]
    assert [status for status, _ in batches] == ["failed", "failed", "completed"]
    assert all("interrupted" in (error or "") for _, error in batches[:2])
    assert runs == ["failed", "failed", "success"]


def _batches(sessions, status: str | None = None) -> int:
    query = select(func.count()).select_from(DataLoad)
    if status is not None:
        query = query.where(DataLoad.status == status)
    with sessions() as session:
        return session.scalar(query)


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_data_add_drafts_a_declaration_that_loads_and_runs(
    cli_env, advertising_csv: Path, tmp_path: Path
) -> None:
    (tmp_path / "clicks.csv").write_bytes(advertising_csv.read_bytes())
    env = {**cli_env, "MLF_PROJECT_FILE": str(tmp_path / "mlfactory.yaml")}
    added = mlfactory(env, "data", "add", "clicks", "--file", str(tmp_path / "clicks.csv"),
                      "--label", "Clicked on Ad")  # fmt: skip
    assert "Added data set clicks and pipeline clicks" in added.stdout
    declared = declarations(Settings(project_file=tmp_path / "mlfactory.yaml"))
    columns = {name: column.type for name, column in declared.datasets["clicks"].columns.items()}
    assert columns == {
        "Daily Time Spent on Site": "number",
        "Age": "integer",
        "Area Income": "number",
        "Daily Internet Usage": "number",
        "Ad Topic Line": "text",
        "City": "text",  # 969 cities for 1,000 rows: text, not a category
        "Male": "integer",
        "Country": "text",
        "Timestamp": "date",
        "Clicked on Ad": "integer",
    }
    assert declared.datasets["clicks"].source.path == "clicks.csv"  # beside the project file
    shown = json.loads(mlfactory(env, "data", "show", "clicks", "--json").stdout)
    assert shown["declaration"]["label"] == {"column": "Clicked on Ad"} and shown["items"] == 0

    loaded = json.loads(mlfactory(env, "data", "load", "clicks", "--json").stdout)
    assert (loaded["rows_inserted"], loaded["rows_rejected"]) == (1000, 0)
    run = mlfactory(env, "run", "clicks")
    assert "Registered model clicks version 1 (alias champion)" in run.stdout


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_data_add_writes_nothing_it_cannot_read_back(cli_env, tmp_path: Path) -> None:
    (tmp_path / "ids.csv").write_text("id,label\n1,a\n2,b\n")
    project = tmp_path / "mlfactory.yaml"
    env = {**cli_env, "MLF_PROJECT_FILE": str(project)}
    args = ("data", "add", "ids", "--file", str(tmp_path / "ids.csv"))
    added = mlfactory(env, *args, "--key", "id", "--label", "label")
    assert "No pipeline: data set 'ids' has no usable feature" in added.stdout
    assert "pipelines" not in project.read_text()  # the data set alone, valid
    before = project.read_text()
    again = mlfactory(env, *args, check=False)
    assert again.returncode == 2 and "'ids' is already declared" in again.stderr
    assert project.read_text() == before
