"""Pipelines and their runs: what is registered, run history and detail, starting a run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlfactory.api.background import RunNotStarted, start_run
from mlfactory.api.catalog import CatalogDep
from mlfactory.api.deps import Admin, SessionsDep, SettingsDep, Viewer
from mlfactory.api.schemas import MAX_ID, NO_NUL, RunDetail, RunSummary
from mlfactory.api.trail import audit
from mlfactory.orchestration import Pipeline
from mlfactory.orchestration.history import get_run, latest_runs, page_runs
from mlfactory.orchestration.records import fail_interrupted_runs

router = APIRouter(tags=["runs"])

PipelineName = Annotated[str, Path(max_length=200, pattern=NO_NUL)]


class StepInfo(BaseModel):
    name: str
    needs: list[str]
    description: str
    retries: int
    retry_delay: float = Field(description="Seconds between attempts.")


class PipelineInfo(BaseModel):
    name: str
    description: str = Field(description="The first paragraph of the pipeline's description.")
    schedule: str | None = Field(
        description="Cron expression, preset such as '@daily', or 'every N minutes'."
    )
    tags: list[str]
    steps: list[StepInfo] = Field(description="In an order where each follows what it needs.")
    params_schema: dict[str, Any] = Field(description="JSON schema of the run parameters.")
    model_name: str | None = Field(description="The registered model the API serves, if any.")
    last_run: RunSummary | None


class RunPage(BaseModel):
    total: int = Field(description="Runs matching, over all pages.")
    limit: int
    offset: int
    runs: list[RunSummary] = Field(description="Newest first.")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict, description="Run parameters, validated by the pipeline's schema."
    )


class RunStarted(BaseModel):
    run_id: int
    pipeline: str
    url: str = Field(description="Where to follow the run.")


@router.get("/v1/pipelines", response_model=list[PipelineInfo])
def pipelines(_: Viewer, sessions: SessionsDep, catalog: CatalogDep) -> list[PipelineInfo]:
    """Every registered pipeline: schedule, steps, parameters and its last run."""
    fail_interrupted_runs(sessions)
    last = {record["pipeline"]: record for record in latest_runs(sessions)}
    return [_describe(pipeline, last.get(pipeline.name)) for pipeline in catalog.all()]


@router.get("/v1/pipelines/{name}/runs", response_model=RunPage)
def runs(
    _: Viewer,
    sessions: SessionsDep,
    catalog: CatalogDep,
    name: PipelineName,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    status: Annotated[Literal["running", "success", "failed"] | None, Query()] = None,
) -> RunPage:
    """A page of a pipeline's runs, newest first, with each step's outcome."""
    catalog.get(name)
    fail_interrupted_runs(sessions)
    total, records = page_runs(sessions, name, limit=limit, offset=offset, status=status)
    return RunPage(
        total=total,
        limit=limit,
        offset=offset,
        runs=[RunSummary.from_record(record) for record in records],
    )


@router.get("/v1/runs/{run_id}", response_model=RunDetail)
def run(
    account: Viewer, sessions: SessionsDep, run_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> RunDetail:
    """One run: every attempt of every step with durations, errors, outputs and (for admins)
    tracebacks."""
    fail_interrupted_runs(sessions)
    record = get_run(sessions, run_id)
    if record is None:
        raise HTTPException(404, f"no run {run_id}")
    return RunDetail.from_record(record).seen_by(account.role)


@router.post(
    "/v1/pipelines/{name}/runs",
    status_code=202,
    response_model=RunStarted,
    responses={422: {"description": "A parameter is unknown or has a bad value."}},
)
def start(
    account: Admin,
    settings: SettingsDep,
    sessions: SessionsDep,
    catalog: CatalogDep,
    name: PipelineName,
    body: RunRequest,
    response: Response,
) -> RunStarted:
    """Start a run in the background; answers once the run is recorded (follow it at `url`)."""
    pipeline = catalog.get(name)
    try:
        params = pipeline.params.model_validate(body.params)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**error, "loc": ("body", "params", *error["loc"])}
                for error in exc.errors(include_url=False, include_context=False)
            ]
        ) from None
    try:
        run_id = start_run(pipeline, params, settings)
    except RunNotStarted:  # why is in the server log: a database error names tables and hosts
        raise HTTPException(503, "the run could not be recorded; see the server log") from None
    audit(
        sessions,
        account.username,
        "run.trigger",
        f"pipeline:{name}",
        after={"run_id": run_id, "params": params.model_dump(mode="json")},
    )
    url = f"/v1/runs/{run_id}"
    response.headers["Location"] = url
    return RunStarted(run_id=run_id, pipeline=name, url=url)


def _describe(pipeline: Pipeline, last: dict[str, Any] | None) -> PipelineInfo:
    steps = []
    for step in pipeline.ordered_steps():
        retries, delay = pipeline.retry_policy(step)
        steps.append(
            StepInfo(
                name=step.name,
                needs=list(step.needs),
                description=step.description or (step.fn.__doc__ or "").strip(),
                retries=retries,
                retry_delay=delay,
            )
        )
    return PipelineInfo(
        name=pipeline.name,
        description=pipeline.description.strip().split("\n\n")[0],
        schedule=pipeline.schedule_text,
        tags=list(pipeline.tags),
        steps=steps,
        params_schema=pipeline.params.model_json_schema(),
        model_name=pipeline.serving.model_name if pipeline.serving else None,
        last_run=RunSummary.from_record(last) if last else None,
    )
