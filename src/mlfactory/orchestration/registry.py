"""Where pipelines come from: the ``mlfactory.pipelines`` entry-point group.

The built-in pipelines register there too (see pyproject.toml), so this layer never imports
``mlfactory.pipelines`` and a user's package adds pipelines by declaring an entry point.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from mlfactory.errors import UserError
from mlfactory.orchestration.pipeline import Pipeline

GROUP = "mlfactory.pipelines"


class UnknownPipeline(UserError):
    pass


def pipeline_names() -> list[str]:
    """Names of every registered pipeline, without importing any of them."""
    return sorted({entry.name for entry in entry_points(group=GROUP)})


def get_pipeline(name: str) -> Pipeline:
    matches = [entry for entry in entry_points(group=GROUP) if entry.name == name]
    if not matches:
        known = ", ".join(pipeline_names()) or "none"
        raise UnknownPipeline(f"unknown pipeline {name!r} (registered: {known})")
    return _load(matches[0])


def all_pipelines() -> list[Pipeline]:
    return [get_pipeline(name) for name in pipeline_names()]


def _load(entry: EntryPoint) -> Pipeline:
    pipeline = entry.load()
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            f"entry point {entry.value!r} of {GROUP} is {type(pipeline).__name__}, not a Pipeline"
        )
    if pipeline.name != entry.name:
        raise ValueError(
            f"entry point {entry.name!r} names pipeline {pipeline.name!r}; they must agree"
        )
    return pipeline
