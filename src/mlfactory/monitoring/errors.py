"""The error raised for data or options that drift detection cannot work with."""

from __future__ import annotations

from mlfactory.errors import UserError


class DriftInputError(UserError, ValueError):
    """Empty data, a missing column, a column without values, or an impossible option."""
