"""Errors the user can act on: interfaces print their message on one line, without a traceback."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """A mistake in what was asked (unknown name, bad parameter, missing data), not a bug."""


def describe_validation_error(exc: ValidationError, max_input_chars: int = 80) -> str:
    """One line naming each bad field, the problem and the value that was given."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "value"
        if error["type"] == "missing":
            problems.append(f"{name}: missing")
            continue
        given = repr(error["input"])
        if len(given) > max_input_chars:
            given = given[:max_input_chars] + "..."
        problems.append(f"{name}: {error['msg']} (got {given})")
    return "; ".join(problems)
