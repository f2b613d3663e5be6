"""Compare recent inputs with the training snapshot: the one entry point of drift detection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from mlfactory.monitoring.columns import Kind, column_drift, column_kind
from mlfactory.monitoring.errors import DriftInputError
from mlfactory.monitoring.options import DriftOptions
from mlfactory.monitoring.psi import Severity, psi, severity
from mlfactory.monitoring.report import DriftReport, GroupPSI


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    groups: Mapping[str, Sequence[str]] | None = None,
    options: DriftOptions | None = None,
    context: Mapping[str, str] | None = None,
) -> DriftReport:
    """Test each column for drift and compute the PSI of each feature group.

    ``columns`` are the columns tested one by one (default: every column of ``reference``);
    ``groups`` names groups of columns for PSI (default: one group per tested column); a
    group's columns need not be among ``columns``. Columns are numeric or categorical by dtype;
    ``categorical`` forces columns of numbers (class ids, codes) to be categorical.
    """
    options = options or DriftOptions()
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise DriftInputError(f"the {name} data has no rows: drift needs rows on both sides")
    tested = list(reference.columns) if columns is None else names(columns, "columns")
    if not tested:
        raise DriftInputError("no columns to compare")
    group_columns = (
        {column: [column] for column in tested}
        if groups is None
        else {name: names(cols, f"feature group {name!r}") for name, cols in groups.items()}
    )
    empty_groups = [name for name, cols in group_columns.items() if not cols]
    if empty_groups:
        raise DriftInputError(f"feature groups with no columns: {empty_groups}")
    used = list(dict.fromkeys([*tested, *(c for cols in group_columns.values() for c in cols)]))
    check_columns(reference, current, used)
    unknown = sorted(set(names(categorical, "categorical")) - set(used))
    if unknown:
        raise DriftInputError(f"columns declared categorical but not compared: {unknown}")
    kinds: dict[str, Kind] = {
        column: "categorical"
        if column in categorical
        else column_kind(reference[column], current[column], options)
        for column in used
    }
    results = [
        column_drift(column, reference[column], current[column], kinds[column], options)
        for column in tested
    ]
    group_results = [
        group_psi(name, cols, reference, current, kinds, options)
        for name, cols in group_columns.items()
    ]
    drifted_share = sum(result.drifted for result in results) / len(results)
    return DriftReport(
        columns=results,
        groups=group_results,
        reference_rows=len(reference),
        current_rows=len(current),
        drift_share=options.drift_share,
        drifted_share=drifted_share,
        dataset_drift=drifted_share >= options.drift_share,
        severity=max(
            (group.severity for group in group_results),
            key=lambda level: level.level,
            default=Severity.NONE,
        ),
        context={str(key): str(value) for key, value in (context or {}).items()},
    )


def names(value: Sequence[str], what: str) -> list[str]:
    """A list of column names; a bare string (a common slip for a one-name list) is refused."""
    if isinstance(value, str):
        raise DriftInputError(f"{what} must be a list of column names, got the string {value!r}")
    return list(value)


def check_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> None:
    """Every column must be in both frames and hold at least one value on each side."""
    for name, frame in (("reference", reference), ("current", current)):
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise DriftInputError(f"columns missing from the {name} data: {missing}")
        empty = [column for column in columns if frame[column].notna().sum() == 0]
        if empty:
            raise DriftInputError(f"columns with no values in the {name} data: {empty}")


def group_psi(
    name: str,
    columns: list[str],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, Kind],
    options: DriftOptions,
) -> GroupPSI:
    by_column = {
        column: psi(reference[column], current[column], kinds[column], options)
        for column in columns
    }
    worst = max(by_column.values())
    return GroupPSI(group=name, psi=worst, severity=severity(worst, options), columns=by_column)
