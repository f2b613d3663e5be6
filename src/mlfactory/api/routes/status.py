"""The monitoring API of the original services: a pipeline's latest run, its champion's metrics,
and the same as an HTML page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.api import status_page
from mlfactory.api.catalog import CatalogDep
from mlfactory.api.deps import SessionsDep, Viewer
from mlfactory.api.queries import model_name_of, training_run
from mlfactory.api.registry import ModelRegistry, RegistryDep, RegistryUnavailable
from mlfactory.api.schemas import NO_NUL, RunDetail, RunSummary
from mlfactory.orchestration import Pipeline
from mlfactory.orchestration.history import page_runs
from mlfactory.orchestration.records import fail_interrupted_runs

router = APIRouter(tags=["status"])

PipelineQuery = Annotated[
    str, Query(max_length=200, pattern=NO_NUL, description="The pipeline's name.")
]


class PipelineStatus(BaseModel):
    pipeline: str
    state: Literal["success", "failed", "running", "never_run"]
    run: RunSummary | None = Field(description="The latest run, with each step's outcome.")
    last_success: RunSummary | None = Field(description="The latest successful run.")


class ChampionMetrics(BaseModel):
    model_name: str
    version: str
    mlflow_run_id: str
    pipeline_run_id: int | None = Field(description="The run that trained it, if recorded.")
    metrics: dict[str, Any] = Field(
        description="From the training run's record, else from its MLflow run."
    )


class LatestRun(BaseModel):
    id: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    model_name: str | None
    model_version: str | None
    metrics: dict[str, Any]
    summary: dict[str, Any]


class PipelineMetrics(BaseModel):
    pipeline: str
    model_name: str | None = Field(description="The registered model the pipeline trains.")
    champion: ChampionMetrics | None = Field(description="None while no version is champion.")
    latest_run: LatestRun | None


@router.get("/api/status", response_model=PipelineStatus)
def status(
    _: Viewer, sessions: SessionsDep, catalog: CatalogDep, pipeline: PipelineQuery
) -> PipelineStatus:
    """Whether the pipeline's latest run succeeded, with its steps, error and timings."""
    catalog.get(pipeline)
    latest, last_success = _latest(sessions, pipeline)
    return PipelineStatus.model_validate(
        {
            "pipeline": pipeline,
            "state": latest.status if latest else "never_run",
            "run": latest,
            "last_success": last_success,
        }
    )


@router.get(
    "/api/metrics",
    response_model=PipelineMetrics,
    responses={503: {"description": "The model registry does not answer."}},
)
def metrics(
    _: Viewer,
    sessions: SessionsDep,
    catalog: CatalogDep,
    registry: RegistryDep,
    pipeline: PipelineQuery,
) -> PipelineMetrics:
    """The champion model's metrics and the latest run's metrics and summary."""
    found = catalog.get(pipeline)
    model_name = found.serving.model_name if found.serving else model_name_of(sessions, pipeline)
    champion = None
    if model_name is not None:
        try:
            champion = _champion_metrics(sessions, registry, model_name)
        except RegistryUnavailable as exc:
            raise HTTPException(503, f"the model registry does not answer: {exc}") from None
    _, runs = page_runs(sessions, pipeline, limit=1)
    return PipelineMetrics(
        pipeline=pipeline,
        model_name=model_name,
        champion=champion,
        latest_run=LatestRun.model_validate(runs[0]) if runs else None,
    )


@router.get("/status/{pipeline}", response_class=HTMLResponse)
def page(
    account: Viewer,
    sessions: SessionsDep,
    catalog: CatalogDep,
    pipeline: Annotated[str, Path(max_length=200, pattern=NO_NUL)],
) -> HTMLResponse:
    """The pipeline's latest run as a page: success or failure, steps, error, what to check
    (the traceback for admins)."""
    found: Pipeline = catalog.get(pipeline)
    latest, last_success = _latest(sessions, pipeline)
    latest = latest.seen_by(account.role) if latest else None
    return HTMLResponse(status_page.render(found, latest, last_success))


def _latest(
    sessions: sessionmaker[Session], pipeline: str
) -> tuple[RunDetail | None, RunSummary | None]:
    """The latest run in full and the latest successful one."""
    fail_interrupted_runs(sessions)
    _, runs = page_runs(sessions, pipeline, limit=1)
    latest = RunDetail.from_record(runs[0]) if runs else None
    if latest is not None and latest.status == "success":
        return latest, latest
    _, successes = page_runs(sessions, pipeline, limit=1, status="success")
    return latest, RunSummary.from_record(successes[0]) if successes else None


def _champion_metrics(
    sessions: sessionmaker[Session], registry: ModelRegistry, model_name: str
) -> ChampionMetrics | None:
    champion = registry.champion(model_name)
    if champion is None:
        return None
    trained = training_run(sessions, model_name, champion.version)
    metrics = trained["metrics"] if trained else {}
    if not metrics:
        made = registry.version_run(model_name, champion.version)
        metrics = made.metrics if made else {}
    return ChampionMetrics(
        model_name=model_name,
        version=champion.version,
        mlflow_run_id=champion.mlflow_run_id,
        pipeline_run_id=trained["id"] if trained else None,
        metrics=metrics,
    )
