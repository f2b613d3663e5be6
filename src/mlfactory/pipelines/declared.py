"""The declared pipelines (those shipped with mlfactory and the project file's), each made by
its template: one entry point of the ``mlfactory.pipelines`` group stands for all of them."""

from __future__ import annotations

from functools import lru_cache

from mlfactory.datasets.project import Declarations, declarations
from mlfactory.orchestration import Pipeline, UnknownPipeline
from mlfactory.settings import get_settings


class DeclaredPipelines:
    """A collection of pipelines for the orchestration registry: names read from the
    declarations, pipelines built on demand."""

    def names(self) -> list[str]:
        return sorted(declarations(get_settings()).pipelines)

    def get(self, name: str) -> Pipeline:
        declared = declarations(get_settings())
        if name not in declared.pipelines:
            raise UnknownPipeline(f"no declared pipeline {name!r}")
        return _built(declared, name)


@lru_cache(maxsize=64)
def _built(declared: Declarations, name: str) -> Pipeline:
    from mlfactory.pipelines.templates import build_declared

    return build_declared(declared.pipelines[name], declared)


declared_pipelines = DeclaredPipelines()
