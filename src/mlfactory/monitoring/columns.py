"""Drift of one column: Evidently's default choice of test, computed with scipy.

Which test runs depends on the column's kind and on the size of the reference (see
:mod:`mlfactory.monitoring.options` for the sources):

============  ===========================  ==================================
kind          reference <= 1,000 rows      reference > 1,000 rows
============  ===========================  ==================================
numeric       K-S test, drift if p < 0.05  Wasserstein / std(ref), drift if >= 0.1
categorical   chi-squared, p < 0.05        Jensen-Shannon distance, drift if >= 0.1
============  ===========================  ==================================

One deliberate difference: Evidently's chi-squared is a goodness-of-fit test of the current
counts against the reference shares, which treats the reference as exact and reports certain
drift (p = 0) for any value the reference never saw. Here it is the chi-squared test of
homogeneity of the 2 x k table of counts (no continuity correction), the two-sample form of the
same test: it allows for sampling noise on both sides, copes with values seen on one side only,
and for two values it gives exactly the p-value of Evidently's two-proportion z-test.

Missing values are left out of every test and figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from mlfactory.monitoring.options import DriftOptions

Kind = Literal["numeric", "categorical"]
Test = Literal["ks", "chi2", "wasserstein_normed", "jensen_shannon"]


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: Kind
    test: Test
    score: float
    """The p-value of a test (drift when below the threshold) or a distance (drift at or above)."""
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    summary: dict[str, tuple[float, float]]
    """(reference, current) figures: mean, std and median of a numeric column; the share of
    each value of a categorical one (values as text)."""


def column_kind(reference: pd.Series, current: pd.Series, options: DriftOptions) -> Kind:
    """Numeric when the dtype is a number (not bool, not category) with enough distinct values."""
    series = pd.concat([reference, current], ignore_index=True)
    numeric = (
        pd.api.types.is_numeric_dtype(series.dtype)
        and not pd.api.types.is_bool_dtype(series.dtype)
        and not isinstance(series.dtype, pd.CategoricalDtype)
    )
    if numeric and series.nunique() > options.few_values:
        return "numeric"
    return "categorical"


def value_counts(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Counts of every value seen on either side (columns ``reference``, ``current``), indexed
    by the value as text. Values are matched before they become text, so 1 and 1.0 (an integer
    column that gained missing values) count as one; unused categories are left out."""
    counts = pd.concat(
        {"reference": reference.value_counts(), "current": current.value_counts()}, axis=1
    ).fillna(0)
    counts = counts[(counts > 0).any(axis=1)]
    return counts.groupby(counts.index.map(str)).sum().sort_index()


def column_drift(
    column: str, reference: pd.Series, current: pd.Series, kind: Kind, options: DriftOptions
) -> ColumnDrift:
    """Test one column; both series must hold at least one value that is not missing."""
    reference, current = reference.dropna(), current.dropna()
    small = len(reference) <= options.small_sample_rows
    if kind == "numeric":
        ref = reference.to_numpy(dtype=float)
        cur = current.to_numpy(dtype=float)
        summary = {
            "mean": (float(ref.mean()), float(cur.mean())),
            "std": (float(ref.std()), float(cur.std())),
            "median": (float(np.median(ref)), float(np.median(cur))),
        }
        if small:
            test: Test = "ks"
            score = float(ks_2samp(ref, cur).pvalue)
        else:
            test = "wasserstein_normed"
            score = float(wasserstein_distance(ref, cur) / max(ref.std(), options.min_std))
    else:
        counts = value_counts(reference, current)
        shares = counts / counts.sum()
        summary = {
            str(value): (float(row.reference), float(row.current))
            for value, row in shares.iterrows()
        }
        if small:
            test = "chi2"
            score = homogeneity_p_value(counts.to_numpy().T)
        else:
            test = "jensen_shannon"
            score = float(jensenshannon(shares["reference"], shares["current"]))
    threshold = {
        "ks": options.p_value,
        "chi2": options.p_value,
        "wasserstein_normed": options.wasserstein_threshold,
        "jensen_shannon": options.jensen_shannon_threshold,
    }[test]
    # p-values say drift when small, distances when large
    drifted = score < threshold if small else score >= threshold
    return ColumnDrift(
        column=column,
        kind=kind,
        test=test,
        score=score,
        threshold=threshold,
        drifted=drifted,
        reference_rows=len(reference),
        current_rows=len(current),
        summary=summary,
    )


def homogeneity_p_value(table: np.ndarray) -> float:
    """p-value of the chi-squared test that both rows of a 2 x k count table share one law."""
    if table.shape[1] < 2:  # a single value on both sides: nothing can differ
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)
