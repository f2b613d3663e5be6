"""The advertising run end to end as a process: ``mlfactory run advertising`` against a plain script.

Baseline ``plain``: ``benchmarks/plain_advertising.py --home DIR``, the same pandas, sklearn and
MLflow work without mlfactory (see its docstring). Subject ``mlfactory``: ``mlfactory run
advertising``. Each repetition gives each side a fresh home, runs it there once unmeasured (that
run creates the databases) and measures the wall clock of its second run in that home; the side
that goes first alternates.

    .venv/bin/python benchmarks/bench_advertising_e2e.py --repeat 5
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Timings, datasets_dir, parse_args, report

GOAL = 1.2
BIN = Path(sys.executable).parent
PLAIN = Path(__file__).resolve().parent / "plain_advertising.py"
COMMANDS = {
    "mlfactory": [str(BIN / "mlfactory"), "run", "advertising"],
    "plain": [sys.executable, str(PLAIN), "--home", "."],
}


def environment(home: Path) -> dict[str, str]:
    """This environment without any ``MLF_`` setting but the home and the data sets."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    return env | {"MLF_HOME": str(home), "MLF_DATASETS_DIR": str(datasets_dir())}


def children_cpu() -> float:
    """User + system seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(side: str, home: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``side`` in ``home`` (also its working
    directory)."""
    wall, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        COMMANDS[side], cwd=home, env=environment(home), capture_output=True, text=True
    )
    elapsed = (time.perf_counter() - wall, children_cpu() - cpu)
    if done.returncode != 0:
        raise SystemExit(f"{side} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed


def measure(side: str, root: Path) -> tuple[float, float]:
    """The second run of ``side`` in a fresh home; the first one creates its databases."""
    home = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=root))
    run(side, home)
    return run(side, home)


def main(repeat: int) -> None:
    subject, baseline = Timings("mlfactory"), Timings("plain")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        for i in range(repeat):
            pairs = [(subject, "mlfactory"), (baseline, "plain")]
            for timings, side in pairs if i % 2 == 0 else reversed(pairs):
                timings.add(*measure(side, Path(tmp)))
            print(f"repetition {i + 1}/{repeat} done", flush=True)
    print(f"advertising end to end, whole processes, {repeat} repetitions per side")
    report(subject, baseline, GOAL)


if __name__ == "__main__":
    main(parse_args(__doc__.splitlines()[0]).repeat)
