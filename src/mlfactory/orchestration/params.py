"""Run parameters: ``-p key=value`` pairs typed and validated against a pipeline's model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from mlfactory.errors import UserError, describe_validation_error


class InvalidParams(UserError):
    pass


def parse_pairs(model: type[BaseModel], pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into raw values for pydantic to type.

    A JSON list or object is decoded, a comma-separated value of a list parameter becomes a
    list, anything else stays text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidParams(f"parameter {pair!r} is not of the form key=value")
        field = model.model_fields.get(key)
        if text.startswith(("[", "{")):
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidParams(
                    f"parameter {key!r}: {text!r} is not valid JSON ({exc})"
                ) from None
        elif field is not None and get_origin(field.annotation) is list:
            values[key] = [part.strip() for part in text.split(",") if part.strip()]
        else:
            values[key] = text
    return values


def validate_params(model: type[BaseModel], values: Mapping[str, Any]) -> BaseModel:
    """Validate against the model; any error becomes one line naming the parameter and the value."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            known = ", ".join(model.model_fields) or "none"
            raise InvalidParams(
                f"unknown parameter(s) {', '.join(unknown)} (declared: {known})"
            ) from None
        raise InvalidParams(f"bad parameter value: {describe_validation_error(exc)}") from None
