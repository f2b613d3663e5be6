"""Fraction arithmetic: the counts of the original system on the full Rakuten label file."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mlfactory.ingest.csv_reader import SourceRow, read_csv_rows
from mlfactory.ingest.fractions import fraction_size, next_percentage, select_fraction


@pytest.fixture(scope="module")
def label_keys(datasets_dir: Path) -> list[str]:
    """The row index of every product of Y_train_CVw08PX.csv (its unnamed first column)."""
    path = datasets_dir / "rakuten" / "Y_train_CVw08PX.csv"
    return [row.fields[""] for row in read_csv_rows(path) if isinstance(row, SourceRow)]


def schedule() -> list[float]:
    """Every percentage of the increment schedule, from the first load to the last."""
    percentages: list[float] = []
    current = next_percentage(None)
    while current is not None:
        percentages.append(current)
        current = next_percentage(current)
    return percentages


def test_the_schedule_is_40_then_3_more_each_load_up_to_100() -> None:
    percentages = schedule()
    assert percentages == [40 + 3 * n for n in range(21)]  # the first load and 20 increments
    assert next_percentage(100) is None


def test_the_original_counts_on_the_full_label_file(label_keys: list[str]) -> None:
    total = len(label_keys)
    assert total == len(set(label_keys)) == 84_916
    assert fraction_size(total, 40) == 33_966
    assert fraction_size(total, 43) - fraction_size(total, 40) == 2_547
    assert fraction_size(total, schedule()[-1]) == total  # 100 % after 20 increments


def test_each_load_of_the_schedule_contains_the_one_before(label_keys: list[str]) -> None:
    loaded: set[str] = set()
    for percentage in schedule():
        chosen = select_fraction(label_keys, percentage, seed=42)
        assert len(chosen) == fraction_size(len(label_keys), percentage)
        assert loaded <= chosen
        loaded = chosen
    assert loaded == set(label_keys)


def test_the_selection_depends_on_the_seed_not_on_the_key_order(label_keys: list[str]) -> None:
    shuffled = label_keys.copy()
    random.Random(3).shuffle(shuffled)
    chosen = select_fraction(label_keys, 40, seed=1)
    assert select_fraction(shuffled, 40, seed=1) == chosen
    assert select_fraction(label_keys, 40, seed=2) != chosen


def test_repeated_keys_count_once() -> None:
    assert len(select_fraction(["a", "b", "a", "c", "b", "d"], 50, seed=0)) == 2


def test_fraction_size_rounds_down_on_the_exact_percentage() -> None:
    assert fraction_size(100, 29) == 29  # 100 * 0.29 is 28.999999999999996 in floats
    assert fraction_size(1_000, 57.1) == 571
    assert fraction_size(9, 50) == 4
    assert (fraction_size(0, 40), fraction_size(10, 0), fraction_size(10, 100)) == (0, 0, 10)


@pytest.mark.parametrize(("total", "percentage"), [(10, -1), (10, 100.5), (-1, 40)])
def test_fraction_size_refuses_impossible_arguments(total: int, percentage: float) -> None:
    with pytest.raises(ValueError):
        fraction_size(total, percentage)


def test_next_percentage_caps_at_the_last() -> None:
    assert next_percentage(98.5) == 100
    assert next_percentage(None, first=10, step=5, last=20) == 10
    assert next_percentage(15, first=10, step=5, last=20) == 20
    assert next_percentage(20, first=10, step=5, last=20) is None


@given(
    tenths=st.integers(min_value=1, max_value=1000),
    total=st.integers(min_value=0, max_value=1_000_000),
)
@example(tenths=184, total=375)  # 18.4 % of 375: 69 exactly, 68 in floats
def test_the_size_of_a_fraction_is_exact_decimal_arithmetic(tenths: int, total: int) -> None:
    """Against exact rational arithmetic: a float product loses a row now and then."""
    percentage = tenths / 10
    assert fraction_size(total, percentage) == (Fraction(tenths, 10) * total) // 100
