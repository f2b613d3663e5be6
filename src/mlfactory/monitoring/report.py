"""The drift report: per-column tests, per-group PSI, the verdict, and its JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlfactory.monitoring.columns import ColumnDrift
from mlfactory.monitoring.errors import DriftInputError
from mlfactory.monitoring.psi import Severity

FORMAT = "mlfactory.drift/1"


@dataclass(frozen=True)
class GroupPSI:
    group: str
    psi: float
    """The largest PSI of the group's columns."""
    severity: Severity
    columns: dict[str, float]
    """PSI of each column of the group."""


@dataclass(frozen=True)
class DriftReport:
    columns: list[ColumnDrift]
    groups: list[GroupPSI]
    reference_rows: int
    current_rows: int
    drift_share: float
    """The share of drifting columns from which the data set counts as drifting."""
    drifted_share: float
    dataset_drift: bool
    severity: Severity
    """The worst severity of the groups ("none" when there are none)."""
    context: dict[str, str] = field(default_factory=dict)
    """Free labels given by the caller (pipeline, model version, time window, ...)."""

    @property
    def drifted_columns(self) -> list[str]:
        return [result.column for result in self.columns if result.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Data that ``json.dumps`` takes as it is; :meth:`from_dict` reads it back."""
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        if data.get("format") != FORMAT:
            raise DriftInputError(f"not a drift report of format {FORMAT}: {data.get('format')!r}")
        columns = [
            ColumnDrift(
                **{
                    **column,
                    "summary": {key: tuple(pair) for key, pair in column["summary"].items()},
                }
            )
            for column in data["columns"]
        ]
        groups = [
            GroupPSI(**{**group, "severity": Severity(group["severity"])})
            for group in data["groups"]
        ]
        fields = {key: value for key, value in data.items() if key != "format"}
        return cls(
            **{
                **fields,
                "columns": columns,
                "groups": groups,
                "severity": Severity(data["severity"]),
            }
        )


def psi_rows(report: DriftReport) -> list[tuple[str, float, str]]:
    """(group, PSI, severity) per group: what a Prometheus exporter sets its gauges from."""
    return [(group.group, group.psi, group.severity.value) for group in report.groups]
