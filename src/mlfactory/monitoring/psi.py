"""Population stability index (PSI) of a column or a group of columns, and its severity.

``PSI = sum over bins of (current share - reference share) * ln(current share / reference share)``

Numeric columns are cut at the reference's quantiles (``psi_bins`` bins of about equal reference
mass; repeated quantiles merge, and the outer bins are open so that current values outside the
reference range still count). Categorical columns use one bin per value seen on either side. A
share of zero becomes ``psi_epsilon`` so that the logarithm stays finite. A value never seen in
the reference weighs ``share * ln(share / epsilon)``: PSI is not meant for columns with many
rare values (identifiers, free text, countries of a small sample).

A group's PSI is the largest PSI of its columns, so a shift in one embedding component or one
text-length feature is not averaged away by the stable ones.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from mlfactory.monitoring.columns import Kind, value_counts
from mlfactory.monitoring.options import DriftOptions


class Severity(StrEnum):
    NONE = "none"
    WARNING = "warning"
    ALERT = "alert"
    CRITICAL = "critical"

    @property
    def level(self) -> int:
        """0 (none) to 3 (critical): the figure a gauge or an alert rule compares."""
        return list(Severity).index(self)


def severity(psi_value: float, options: DriftOptions) -> Severity:
    if psi_value >= options.psi_critical:
        return Severity.CRITICAL
    if psi_value >= options.psi_alert:
        return Severity.ALERT
    if psi_value >= options.psi_warning:
        return Severity.WARNING
    return Severity.NONE


def psi(reference: pd.Series, current: pd.Series, kind: Kind, options: DriftOptions) -> float:
    """PSI of one column (missing values left out; both sides must keep at least one value)."""
    reference, current = reference.dropna(), current.dropna()
    if kind == "numeric":
        ref_counts, cur_counts = quantile_bin_counts(
            reference.to_numpy(dtype=float), current.to_numpy(dtype=float), options.psi_bins
        )
    else:
        counts = value_counts(reference, current)
        ref_counts, cur_counts = counts["reference"].to_numpy(), counts["current"].to_numpy()
    return psi_from_counts(ref_counts, cur_counts, options.psi_epsilon)


def quantile_bin_counts(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples in the bins cut at the reference's inner quantiles.

    A bin holds the values from its lower edge (included) to its upper edge (excluded).
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    size = len(edges) + 1
    return (
        np.bincount(np.searchsorted(edges, reference, side="right"), minlength=size),
        np.bincount(np.searchsorted(edges, current, side="right"), minlength=size),
    )


def psi_from_counts(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    ref_share = reference / reference.sum()
    cur_share = current / current.sum()
    ref_share = np.where(ref_share == 0, epsilon, ref_share)
    cur_share = np.where(cur_share == 0, epsilon, cur_share)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
