"""Where pipelines come from: two entry-point groups.

- ``mlfactory.pipelines``: each entry point names a :class:`Pipeline`, called as the entry
  point is (listing names imports nothing);
- ``mlfactory.pipeline_collections``: each names a :class:`PipelineCollection` that stands for
  several pipelines: the declared ones (built-in and the project file's) are one.

The built-in pipelines register there too (see pyproject.toml), so this layer never imports
``mlfactory.pipelines`` and a user's package adds pipelines by declaring an entry point.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Protocol, runtime_checkable

from mlfactory.errors import UserError
from mlfactory.orchestration.pipeline import Pipeline

GROUP = "mlfactory.pipelines"
COLLECTIONS = "mlfactory.pipeline_collections"


class UnknownPipeline(UserError):
    pass


class PipelineConflict(UserError):
    """Two registrations give the same name."""


@runtime_checkable
class PipelineCollection(Protocol):
    """Several pipelines behind one entry point."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Pipeline: ...


def pipeline_names() -> list[str]:
    """Names of every registered pipeline."""
    names: dict[str, str] = {entry.name: entry.value for entry in entry_points(group=GROUP)}
    for entry, collection in _collections():
        for name in collection.names():
            if name in names:
                raise PipelineConflict(
                    f"pipeline {name!r} is registered twice: by {names[name]} and {entry.value}"
                )
            names[name] = entry.value
    return sorted(names)


def get_pipeline(name: str) -> Pipeline:
    for entry in entry_points(group=GROUP):
        if entry.name == name:
            return _load(entry)
    for _, collection in _collections():
        if name in collection.names():
            return collection.get(name)
    known = ", ".join(pipeline_names()) or "none"
    raise UnknownPipeline(f"unknown pipeline {name!r} (registered: {known})")


def all_pipelines() -> list[Pipeline]:
    return [get_pipeline(name) for name in pipeline_names()]


def _collections() -> list[tuple[EntryPoint, PipelineCollection]]:
    found = []
    for entry in entry_points(group=COLLECTIONS):
        collection = entry.load()
        if not isinstance(collection, PipelineCollection):
            raise TypeError(f"entry point {entry.value!r} of {COLLECTIONS} is no collection")
        found.append((entry, collection))
    return found


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
