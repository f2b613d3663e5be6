"""Fraction arithmetic of incremental loads: how many rows a percentage of a source is, which
keys they are, and the schedule of percentages (first 40 %, then +3 % a load, up to 100 %).

The counts are those of the system the products pipeline grew from: P % of ``total`` rows is
``floor(total * P / 100)``, so the 84,916-row Rakuten label file gives 33,966 rows at 40 % and
36,513 (2,547 more) at 43 %.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from fractions import Fraction


def fraction_size(total: int, percentage: float) -> int:
    """How many of ``total`` rows make ``percentage`` % of them, rounded down.

    Computed on the exact decimal value of the percentage, so 43.3 % is 433/1000 and never
    loses a row to a float product such as ``0.1 * 30 = 3.0000000000000004``.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    check_percentage(percentage)
    return math.floor(Fraction(str(percentage)) * total / 100)


def select_fraction(keys: Iterable[str], percentage: float, seed: int) -> set[str]:
    """The first ``percentage`` % of a seeded permutation of the distinct ``keys``.

    Keys are ranked by a hash of the seed and the key rather than shuffled, so the permutation
    depends neither on the order the source lists its keys in nor on the other keys: the same
    seed always gives a larger percentage as a superset of a smaller one (43 % contains 40 %).
    """
    distinct = set(keys)
    ranked = sorted(distinct, key=lambda key: _rank(key, seed))
    return set(ranked[: fraction_size(len(distinct), percentage)])


def next_percentage(
    current: float | None, first: float = 40, step: float = 3, last: float = 100
) -> float | None:
    """The percentage of the next incremental load: ``first`` when nothing was loaded yet, then
    ``step`` more each time, capped at ``last``; None once ``last`` is reached."""
    if current is None:
        return float(first)
    if current >= last:
        return None
    return float(min(current + step, last))


def check_percentage(percentage: float) -> None:
    if not 0 <= percentage <= 100:
        raise ValueError(f"percentage must be between 0 and 100, got {percentage}")


def _rank(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()
