"""Shared helpers of the benchmarks: where the data sets are, and how results are reported."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATASETS_DIR = "/work/shared/datasets"


def datasets_dir() -> Path:
    """``MLF_DATASETS_DIR``, or the shared folder of this machine when it is unset."""
    return Path(os.environ.get("MLF_DATASETS_DIR") or DEFAULT_DATASETS_DIR)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=5, help="Measured repetitions per side.")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


@dataclass
class Timings:
    """Seconds of one side of a comparison: wall clock (what the goal is about) and CPU time
    (user + system, much less disturbed by other processes on a shared machine)."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def min(self) -> float:
        return min(self.wall)

    def line(self) -> str:
        runs = " ".join(f"{s:.3f}" for s in self.wall)
        return (
            f"{self.name:<10} wall median {self.median:7.3f} s  min {self.min:7.3f} s  "
            f"cpu median {statistics.median(self.cpu):7.3f} s  [wall: {runs}]"
        )


def report(subject: Timings, baseline: Timings, goal: float) -> None:
    """Print both sides, the ratios subject/baseline and the verdict on the wall-clock medians."""
    ratio = subject.median / baseline.median
    cpu_ratio = statistics.median(subject.cpu) / statistics.median(baseline.cpu)
    print(subject.line())
    print(baseline.line())
    print(
        f"ratio {subject.name}/{baseline.name}: {ratio:.3f}x wall median, "
        f"{subject.min / baseline.min:.3f}x wall min, {cpu_ratio:.3f}x cpu median"
    )
    verdict = "PASS" if ratio <= goal else "MISS"
    print(f"{verdict}: {subject.name}/{baseline.name} = {ratio:.3f}x, goal <= {goal:.2f}x")
