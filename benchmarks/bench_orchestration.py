"""The same five trivial steps through the local runner and through ``airflow dags test``.

Pipeline ``bench_chain``: five steps in a chain, each returning ``{"value": n}`` where n is one
more than its upstream step's value. Subject ``local``: ``run_pipeline(pipeline, settings=...)``
in this process. Baseline ``airflow``: ``airflow dags test bench_chain``, the real CLI as a whole
process (start-up, parsing the DAG folder, SQLite metadata database), the pipeline registered
through an entry point the script writes in a temporary folder. Also shown, without a verdict:
``mlfactory run bench_chain`` as a whole process, the local runner end to end. Each side has one
home whose store (and Airflow's metadata database) is created before the clock starts, gets one
unmeasured warm-up, then the sides alternate. Every measured run is checked: the last step's
output must be ``{"value": 5}``.

    .venv/bin/python benchmarks/bench_orchestration.py --repeat 5
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from harness import Timings, datasets_dir, parse_args, report
from mlfactory.orchestration import Context, Pipeline, Step, run_pipeline
from mlfactory.settings import Settings
from mlfactory.store import PipelineRun, TaskRun, session_factory

GOAL = 0.1  # local/airflow: the local runner at least 10x faster
NAME = "bench_chain"
STEPS = 5
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent


def add_one(ctx: Context) -> dict[str, Any]:
    """One more than the upstream step's value (1 for the first step)."""
    return {"value": sum(output["value"] for output in ctx.upstream.values()) + 1}


pipeline = Pipeline(
    name=NAME,
    description="Benchmark: five trivial steps in a chain, each passing a number downstream.",
    steps=tuple(
        Step(f"step{i}", add_one, needs=(f"step{i - 1}",) if i > 1 else ())
        for i in range(1, STEPS + 1)
    ),
)


def register(site: Path) -> None:
    """Make ``bench_chain`` a registered pipeline for processes with ``site`` on PYTHONPATH."""
    dist = site / "mlfactory_bench_pipelines-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mlfactory-bench-pipelines\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[mlfactory.pipelines]\n{NAME} = bench_orchestration:pipeline\n"
    )


def environment(root: Path, home: Path) -> dict[str, str]:
    """A process environment with its own mlfactory home and Airflow home (SQLite both)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    airflow_home = home / "airflow"
    return env | {
        "MLF_HOME": str(home),
        "MLF_DATASETS_DIR": str(datasets_dir()),
        "PYTHONPATH": os.pathsep.join([str(root / "site"), str(HERE)]),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Side:
    """One way of running the pipeline, in its own home prepared before any measurement."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(
            home=Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=root)),
            datasets_dir=datasets_dir(),
        )
        if not self.settings.database_url.startswith(f"sqlite:///{self.settings.home}"):
            raise SystemExit(f"MLF_DATABASE_URL is set ({self.settings.database_url}); unset it")
        self.env = environment(root, self.settings.home)
        self.settings.ensure_dirs()
        self.sessions = session_factory(self.settings.database_url)  # migrates the store

    def run(self) -> None:
        raise NotImplementedError

    def measure(self) -> tuple[float, float]:
        """Wall-clock and CPU seconds (this process and its children) of one checked run."""
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time() + children_cpu()
        self.run()
        elapsed = time.perf_counter() - wall, time.process_time() + children_cpu() - cpu
        self.check()
        return elapsed

    def check(self) -> None:
        """The last run in this home succeeded and its last step computed 5."""
        with self.sessions() as session:
            run = session.scalars(select(PipelineRun).order_by(PipelineRun.id.desc())).first()
            last = session.scalar(
                select(TaskRun.output).where(
                    TaskRun.run_id == run.id, TaskRun.step == f"step{STEPS}"
                )
            )
        if (run.status, last) != ("success", {"value": STEPS}):
            raise SystemExit(f"{self.name}: run {run.id} is {run.status}, last output {last}")

    def command(self, *args: str) -> None:
        done = subprocess.run(
            args, env=self.env, cwd=self.settings.home, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: {args} exited {done.returncode}:\n{done.stderr}")


class Local(Side):
    name = "local"

    def run(self) -> None:
        run_pipeline(pipeline, settings=self.settings)


class LocalProcess(Side):
    name = "local-cli"

    def run(self) -> None:
        self.command(str(BIN / "mlfactory"), "run", NAME)


class Airflow(Side):
    name = "airflow"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        Path(self.env["AIRFLOW_HOME"]).mkdir()
        self.command(str(BIN / "airflow"), "db", "migrate")

    def run(self) -> None:
        self.command(str(BIN / "airflow"), "dags", "test", NAME)


def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        root = Path(tmp)
        register(root / "site")
        sides = [Local(root), Airflow(root), LocalProcess(root)]
        timings = {side.name: Timings(side.name) for side in sides}
        for side in sides:
            side.measure()  # warm-up: imports, first DAG serialisation, first run records
        for i in range(repeat):
            for side in sides if i % 2 == 0 else reversed(sides):
                timings[side.name].add(*side.measure())
            print(f"repetition {i + 1}/{repeat} done", flush=True)
    print(f"{NAME}: {STEPS} trivial steps in a chain, {repeat} repetitions per side")
    report(timings["local"], timings["airflow"], GOAL)
    cli, airflow = timings["local-cli"], timings["airflow"]
    print(cli.line())
    print(f"ratio local-cli/airflow: {cli.median / airflow.median:.3f}x wall median (no goal)")
    print(f"airflow over local, wall medians: {airflow.median / timings['local'].median:,.0f}x")


if __name__ == "__main__":
    main(parse_args(__doc__.splitlines()[0]).repeat)
