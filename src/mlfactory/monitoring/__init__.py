"""Watching models in production: input and prediction drift against the training snapshot.

Pure functions: :func:`compare` takes two data frames (training snapshot and recent inputs) and
returns a :class:`DriftReport`; nothing here reads the store or talks to MLflow.
:func:`write_report` is the one function that touches the disk.
"""

from mlfactory.monitoring.columns import ColumnDrift
from mlfactory.monitoring.drift import compare
from mlfactory.monitoring.errors import DriftInputError
from mlfactory.monitoring.features import embedding_projection, label_column, text_length_features
from mlfactory.monitoring.options import DriftOptions
from mlfactory.monitoring.psi import Severity, psi, severity
from mlfactory.monitoring.render import render_html, write_report
from mlfactory.monitoring.report import DriftReport, GroupPSI, psi_rows

__all__ = [
    "ColumnDrift",
    "DriftInputError",
    "DriftOptions",
    "DriftReport",
    "GroupPSI",
    "Severity",
    "compare",
    "embedding_projection",
    "label_column",
    "psi",
    "psi_rows",
    "render_html",
    "severity",
    "text_length_features",
    "write_report",
]
