"""Pipelines, steps and contexts; the local runner and the run records every engine writes."""

from mlfactory.orchestration.context import Context
from mlfactory.orchestration.params import InvalidParams, parse_pairs, validate_params
from mlfactory.orchestration.pipeline import NoParams, Pipeline, Serving, Step
from mlfactory.orchestration.registry import UnknownPipeline, all_pipelines, get_pipeline
from mlfactory.orchestration.runner import RunOutcome, StepEvent, run_pipeline

__all__ = [
    "Context",
    "InvalidParams",
    "NoParams",
    "Pipeline",
    "RunOutcome",
    "Serving",
    "Step",
    "StepEvent",
    "UnknownPipeline",
    "all_pipelines",
    "get_pipeline",
    "parse_pairs",
    "run_pipeline",
    "validate_params",
]
