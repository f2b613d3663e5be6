"""Thresholds of drift detection, with Evidently's defaults where Evidently has one.

Sources (checked 2026-11):
- Evidently, "Data drift algorithm" (https://docs.evidentlyai.com/reference/data-drift-algorithm):
  the test of a column depends on the size of the *reference* set. Up to 1,000 rows: two-sample
  Kolmogorov-Smirnov for numerical columns, chi-squared for categorical ones (z-test of two
  proportions when there are two values), all at a 0.95 confidence level (drift when p < 0.05).
  Above 1,000 rows: normed Wasserstein distance for numerical columns, Jensen-Shannon distance for
  categorical ones, drift when the distance is >= 0.1. Numerical columns with <= 5 distinct
  values (counted over both sets) are tested as categorical.
- Evidently source, ``stattests/wasserstein_distance_norm.py``: the distance is divided by
  ``max(std(reference), 0.001)`` (population std); ``stattests/jensenshannon.py``: scipy's
  ``jensenshannon`` with the natural logarithm over the value shares of both sets.
- Evidently ``DataDriftPreset(drift_share=0.5)``: the data set drifts when the share of drifting
  columns is >= 0.5.

PSI is not an Evidently default; its levels are the usual credit-scoring ones (< 0.1 stable,
0.1-0.2 some shift, >= 0.2 significant), with a further "critical" step at 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlfactory.monitoring.errors import DriftInputError


@dataclass(frozen=True)
class DriftOptions:
    small_sample_rows: int = 1000
    """Reference sets up to this many rows get statistical tests, larger ones distances."""
    p_value: float = 0.05
    """Small samples: a column drifts when the test's p-value is below this."""
    wasserstein_threshold: float = 0.1
    """Large samples: a numeric column drifts when its normed Wasserstein distance is >= this."""
    jensen_shannon_threshold: float = 0.1
    """Large samples: a categorical column drifts when its Jensen-Shannon distance is >= this."""
    min_std: float = 0.001
    """Floor of the reference std that divides the Wasserstein distance (constant columns)."""
    few_values: int = 5
    """Numeric columns with at most this many distinct values are tested as categorical."""
    drift_share: float = 0.5
    """The data set drifts when at least this share of the compared columns drifts."""
    psi_bins: int = 10
    """Numeric PSI: number of quantile bins of the reference."""
    psi_epsilon: float = 1e-4
    """PSI: share given to an empty bin, so that its logarithm stays finite."""
    psi_warning: float = 0.1
    psi_alert: float = 0.2
    psi_critical: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.drift_share <= 1:
            raise DriftInputError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if not 0 < self.p_value < 1:
            raise DriftInputError(f"p_value must be in (0, 1), got {self.p_value}")
        if self.psi_bins < 2:
            raise DriftInputError(f"psi_bins must be at least 2, got {self.psi_bins}")
        if not 0 < self.psi_epsilon < 1:
            raise DriftInputError(f"psi_epsilon must be in (0, 1), got {self.psi_epsilon}")
        if not 0 < self.psi_warning <= self.psi_alert <= self.psi_critical:
            raise DriftInputError(
                "PSI levels must satisfy 0 < warning <= alert <= critical, got "
                f"{self.psi_warning}, {self.psi_alert}, {self.psi_critical}"
            )
