"""Pipeline templates: a declared data set and a few declared choices make a whole pipeline
(load, drift, held-out data, train, evaluate, champion rule, batch prediction, summary), which
runs locally and on Airflow and is served with a request schema taken from the declaration.

- ``tabular_classification``: number, integer, category, boolean and date features.
- ``text_classification``: text columns (TF-IDF n-grams or sentence embeddings), plus optional
  tabular ones, and a linear model.

Both templates are assembled by :func:`build`; they differ in the inputs a declaration gives
them (``features``, ``text``). A pipeline with steps of its own is the template plus those
steps: ``build(...)`` takes the steps that load data (``ingest``) and a last touch on the
model's input frame (``prepare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlfactory.datasets.declarations import PipelineDeclaration
from mlfactory.datasets.project import DeclarationError, Declarations
from mlfactory.orchestration import Pipeline, Serving, Step
from mlfactory.pipelines.templates.plan import Plan, Prepare, TemplateParams
from mlfactory.pipelines.templates.serving import request_features
from mlfactory.pipelines.templates.steps import LOAD, ClassificationSteps

__all__ = ["LOAD", "Plan", "TemplateParams", "build", "build_declared"]


def build(
    declaration: PipelineDeclaration,
    declarations: Declarations,
    *,
    ingest: Sequence[Step] | None = None,
    prepare: Prepare | None = None,
    params: type[TemplateParams] = TemplateParams,
) -> Pipeline:
    """The pipeline of ``declaration`` made by its template.

    ``ingest`` replaces the template's ``load`` step with steps of the pipeline's own, in
    order, one of them named ``load`` and returning a load's result with the data set it
    loaded into (``dataset``); the template's steps come after the last of them. ``params``
    adds run parameters those steps take (a subclass of :class:`TemplateParams`).
    """
    plan = Plan.of(declaration, declarations, prepare=prepare)
    steps = ClassificationSteps(plan)
    loading = tuple(ingest) if ingest is not None else (Step(LOAD, steps.load),)
    if LOAD not in {step.name for step in loading}:
        raise ValueError(f"pipeline {plan.name!r}: no ingest step is named {LOAD!r}")
    after = tuple(dict.fromkeys((LOAD, loading[-1].name)))  # the load, and ingest is done
    data = Step(steps.data, getattr(steps, steps.data), needs=after)
    return Pipeline(
        name=plan.name,
        description=declaration.description or f"{declaration.template} of {plan.dataset.name}",
        schedule=declaration.schedule,
        params=plan.params_model(params),
        retries=declaration.retries,
        retry_delay=declaration.retry_delay,
        tags=(declaration.template, *declaration.tags),
        notify_to=tuple(declaration.notify_to),
        serving=Serving(model_name=plan.model_name, to_features=request_features(plan)),
        steps=(
            *loading,
            Step("drift", steps.drift, needs=after),
            data,
            Step("train", steps.train, needs=(LOAD, data.name)),
            Step("evaluate", steps.evaluate, needs=("train", data.name)),
            Step("promote", steps.promote, needs=("train", data.name, "evaluate")),
            Step("predict", steps.predict, needs=(LOAD, "promote")),
            Step(
                "summary",
                steps.summary,
                needs=(LOAD, "drift", data.name, "train", "evaluate", "promote", "predict"),
            ),
        ),
    )


def build_declared(declaration: PipelineDeclaration, declarations: Declarations) -> Pipeline:
    """The pipeline of a declaration: made by its ``build`` function when it names one (a
    template plus steps of its own), else by its template."""
    if declaration.build is None:
        return build(declaration, declarations)
    module, _, function = declaration.build.partition(":")
    from importlib import import_module

    try:
        builder: Any = getattr(import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise DeclarationError(
            f"pipeline {declaration.name!r}: cannot use build {declaration.build!r}: {exc}"
        ) from None
    pipeline = builder(declaration, declarations)
    if not isinstance(pipeline, Pipeline) or pipeline.name != declaration.name:
        raise TypeError(f"{declaration.build} did not build pipeline {declaration.name!r}")
    return pipeline
