"""The pipelines the API knows, as a dependency: the registered ones unless a test overrides
:func:`get_catalog` with its own (``app.dependency_overrides[get_catalog] = ...``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException

from mlfactory.orchestration import Pipeline, UnknownPipeline, all_pipelines, get_pipeline


class Catalog:
    """Pipelines by name: the given ones, or those of the ``mlfactory.pipelines`` entry points."""

    def __init__(self, pipelines: Iterable[Pipeline] | None = None) -> None:
        self._fixed = None if pipelines is None else {p.name: p for p in pipelines}

    def all(self) -> list[Pipeline]:
        if self._fixed is None:
            return all_pipelines()
        return [self._fixed[name] for name in sorted(self._fixed)]

    def get(self, name: str) -> Pipeline:
        """The pipeline called ``name``; 404 naming the known ones otherwise."""
        if self._fixed is None:
            try:
                return get_pipeline(name)
            except UnknownPipeline as exc:
                raise HTTPException(404, str(exc)) from None
        try:
            return self._fixed[name]
        except KeyError:
            known = ", ".join(sorted(self._fixed)) or "none"
            raise HTTPException(404, f"unknown pipeline {name!r} (registered: {known})") from None


def get_catalog() -> Catalog:
    return Catalog()


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
