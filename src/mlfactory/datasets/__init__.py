"""Named data sets: where they come from, snapshots and splits."""

from mlfactory.datasets.registry import (
    CATALOG,
    DataFile,
    DatasetSpec,
    DatasetUnavailable,
    resolve,
)

__all__ = ["CATALOG", "DataFile", "DatasetSpec", "DatasetUnavailable", "resolve"]
