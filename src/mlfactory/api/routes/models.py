"""The model registry: registered models, one model's versions with metrics, aliases and
promotion history, and the input schema a prediction form is built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from mlfactory.api.catalog import Catalog, CatalogDep
from mlfactory.api.deps import SessionsDep, SettingsDep, Viewer
from mlfactory.api.model_catalog import (
    list_models,
    mlflow_ui,
    model_detail,
    model_link,
    version_inputs,
)
from mlfactory.api.model_queries import Sessions, recorded_promotions, trained_by
from mlfactory.api.registry import RegistryDep, RegistryUnavailable
from mlfactory.api.schemas import NO_NUL
from mlfactory.inference.schema import UnservableModel

router = APIRouter(tags=["models"])

ModelName = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
UNAVAILABLE = {503: {"description": "The model registry does not answer."}}


class ModelSummary(BaseModel):
    name: str
    description: str | None
    created_at: datetime | None
    updated_at: datetime | None
    latest_version: str | None
    aliases: dict[str, str] = Field(description="Alias -> version, e.g. champion -> 3.")
    champion_version: str | None = Field(description="None while no version is champion.")
    champion_metrics: dict[str, float] = Field(
        description="Metrics of the MLflow run that produced the champion."
    )
    pipelines: list[str] = Field(description="Pipelines that serve or trained the model.")
    mlflow_url: str | None = Field(
        description="The model in the MLflow UI; None when tracking is a local store."
    )


class VersionInfo(BaseModel):
    version: str
    created_at: datetime | None
    status: str
    aliases: list[str]
    champion: bool
    mlflow_run_id: str | None
    pipeline_run_id: int | None = Field(description="The pipeline run that trained it, if tagged.")
    metrics: dict[str, float] = Field(description="Metrics of the MLflow run that produced it.")
    promotion: str | None = Field(description="The champion rule's verdict on this version.")
    mlflow_url: str | None


class PromotionEvent(BaseModel):
    """One decision of the champion rule."""

    version: str
    decided_at: datetime | None
    alias: str | None = Field(
        description="champion | challenger; None when only the version's tag is known."
    )
    metric: str | None
    score: float | None
    previous_champion: str | None = Field(description="The champion it was compared with.")
    previous_score: float | None
    reason: str
    pipeline_run_id: int | None


class ModelDetail(ModelSummary):
    versions: list[VersionInfo] = Field(description="Newest first.")
    promotions: list[PromotionEvent] = Field(description="Oldest first.")


class InputColumn(BaseModel):
    name: str
    type: str = Field(description="MLflow type: double, float, long, integer, boolean, string, …")
    required: bool


class ModelInputs(BaseModel):
    model_name: str
    version: str
    columns: list[InputColumn]
    example: dict[str, Any] | None = Field(description="A record logged with the model.")


@router.get("/v1/models", response_model=list[ModelSummary], responses=UNAVAILABLE)
def models(
    _: Viewer,
    sessions: SessionsDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    registry: RegistryDep,
) -> list[ModelSummary]:
    """Every registered model with its aliases, champion and the champion's metrics."""
    try:
        found = list_models(registry)
    except RegistryUnavailable as exc:
        raise _unavailable(exc) from None
    ui = mlflow_ui(settings.mlflow_tracking_uri)
    return [
        ModelSummary.model_validate(
            model
            | {
                "pipelines": _pipelines(sessions, catalog, model["name"]),
                "mlflow_url": model_link(ui, model["name"]),
            }
        )
        for model in found
    ]


@router.get(
    "/v1/models/{name}",
    response_model=ModelDetail,
    responses={404: {"description": "No such registered model."}, **UNAVAILABLE},
)
def model(
    _: Viewer,
    sessions: SessionsDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    registry: RegistryDep,
    name: ModelName,
    limit: Annotated[int, Query(ge=1, le=200, description="Newest versions to list.")] = 50,
) -> ModelDetail:
    """One model: its newest versions with metrics and aliases, and every champion decision."""
    try:
        found = model_detail(registry, name, limit)
    except RegistryUnavailable as exc:
        raise _unavailable(exc) from None
    if found is None:
        raise HTTPException(404, f"no registered model {name!r}")
    ui = mlflow_ui(settings.mlflow_tracking_uri)
    versions = [
        VersionInfo.model_validate(
            version
            | {
                "champion": version["version"] == found["champion_version"],
                "mlflow_url": model_link(ui, name, version["version"]),
            }
        )
        for version in found["versions"]
    ]
    return ModelDetail.model_validate(
        found
        | {
            "versions": versions,
            "promotions": _promotions(sessions, name, versions),
            "pipelines": _pipelines(sessions, catalog, name),
            "mlflow_url": model_link(ui, name),
        }
    )


@router.get(
    "/v1/models/{name}/inputs",
    response_model=ModelInputs,
    responses={
        404: {"description": "No such model or version, or no champion."},
        **UNAVAILABLE,
    },
)
def inputs(
    _: Viewer,
    registry: RegistryDep,
    name: ModelName,
    version: Annotated[
        str | None,
        Query(max_length=9, pattern=r"^[1-9][0-9]*$", description="Default: the champion."),
    ] = None,
) -> ModelInputs:
    """The input columns of a version (from its signature) and a record logged as its example."""
    try:
        return ModelInputs.model_validate(version_inputs(registry, name, version))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except UnservableModel as exc:
        raise HTTPException(503, str(exc)) from None
    except RegistryUnavailable as exc:
        raise _unavailable(exc) from None


def _pipelines(sessions: Sessions, catalog: Catalog, model_name: str) -> list[str]:
    serving = {p.name for p in catalog.all() if p.serving and p.serving.model_name == model_name}
    return sorted(serving | set(trained_by(sessions, model_name)))


def _promotions(
    sessions: Sessions, model_name: str, versions: list[VersionInfo]
) -> list[PromotionEvent]:
    """The decisions runs recorded, and the verdict tags of listed versions no recorded run
    decided on (a version registered by hand, or by a store since emptied)."""
    events = [PromotionEvent.model_validate(d) for d in recorded_promotions(sessions, model_name)]
    decided = {event.version for event in events}
    events += [
        PromotionEvent(
            version=v.version,
            decided_at=v.created_at,
            alias=None,
            metric=None,
            score=None,
            previous_champion=None,
            previous_score=None,
            reason=v.promotion,
            pipeline_run_id=v.pipeline_run_id,
        )
        for v in versions
        if v.promotion and v.version not in decided
    ]
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(events, key=lambda e: (e.decided_at or never, e.version.zfill(12)))


def _unavailable(exc: RegistryUnavailable) -> HTTPException:
    return HTTPException(503, f"the model registry does not answer: {exc}")
