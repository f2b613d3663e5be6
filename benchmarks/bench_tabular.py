"""The ``tabular_classification`` template end to end on 100,000 rows, against a plain script.

Rows: the 1,000 real advertising rows, replicated 100 times with a new ``id`` each. Subject
``template``: ``mlfactory run visits`` with a 20-line project file declaring the rows (the
advertising declaration, keyed by ``id``) and a ``tabular_classification`` pipeline on the same
five features. Baseline ``plain``: ``benchmarks/plain_tabular.py``, the same work hand-written
with pandas, scikit-learn and MLflow (see its docstring). Both are whole processes. Each
repetition gives each side a fresh home and times two runs there: the ``first`` (every row new,
the stores created) and the one ``again`` (the same rows: nothing new to load, a new model
version); the side that goes first alternates. The goal is on the first run.

    .venv/bin/python benchmarks/bench_tabular.py --repeat 3
"""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Timings, datasets_dir, parse_args, report

GOAL = 1.2
ROWS = 100_000
BIN = Path(sys.executable).parent
PLAIN = Path(__file__).resolve().parent / "plain_tabular.py"
PROJECT = """\
datasets:
  visits:
    source: {kind: csv, path: CSV}
    key: [id]
    label: Clicked on Ad
    columns:
      id: integer
      Daily Time Spent on Site: {type: number, min: 0, max: 1440}
      Age: {type: integer, min: 10, max: 120}
      Area Income: {type: number, min: 0}
      Daily Internet Usage: {type: number, min: 0, max: 1440}
      Ad Topic Line: text
      City: category
      Male: {type: integer, choices: [0, 1]}
      Country: category
      Timestamp: date
      Clicked on Ad: {type: integer, choices: [0, 1]}
pipelines:
  visits:
    template: tabular_classification
    dataset: visits
    features: [Daily Time Spent on Site, Age, Area Income, Daily Internet Usage, Male]
"""


def replicate(target: Path) -> None:
    """The advertising rows, ``ROWS // 1000`` times over, each with a new ``id``."""
    with (datasets_dir() / "advertising" / "advertising.csv").open(newline="") as file:
        header, *rows = list(csv.reader(file))
    with target.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", *header])
        for number in range(ROWS):
            writer.writerow([number, *rows[number % len(rows)]])


def command(side: str, csv_path: Path) -> list[str]:
    if side == "template":
        return [str(BIN / "mlfactory"), "run", "visits"]
    return [sys.executable, str(PLAIN), "--home", ".", "--csv", str(csv_path)]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(side: str, home: Path, csv_path: Path) -> tuple[float, float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    env["MLF_HOME"] = str(home)  # the project file is found in the working directory
    wall, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        command(side, csv_path), cwd=home, env=env, capture_output=True, text=True
    )
    elapsed = (time.perf_counter() - wall, children_cpu() - cpu)
    if done.returncode != 0:
        raise SystemExit(f"{side} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main(repeat: int) -> None:
    first = {"template": Timings("template"), "plain": Timings("plain")}
    again = {"template": Timings("template"), "plain": Timings("plain")}
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as tmp:
        csv_path = Path(tmp) / "visits.csv"
        replicate(csv_path)
        for i in range(repeat):
            sides = ["template", "plain"] if i % 2 == 0 else ["plain", "template"]
            for side in sides:
                home = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=tmp))
                (home / "mlfactory.yaml").write_text(PROJECT.replace("CSV", str(csv_path)))
                first[side].add(*run(side, home, csv_path))
                again[side].add(*run(side, home, csv_path))
            print(f"repetition {i + 1}/{repeat} done", flush=True)
    print(f"tabular template vs plain script, {ROWS:,} rows, {repeat} repetitions per side")
    print("-- the first run (every row new, the stores created): the goal")
    report(first["template"], first["plain"], GOAL)
    print("-- the run again (the same rows: nothing to load, a new model version)")
    report(again["template"], again["plain"], GOAL)


if __name__ == "__main__":
    main(parse_args(__doc__.splitlines()[0]).repeat)
