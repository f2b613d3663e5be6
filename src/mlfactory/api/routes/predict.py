"""Predictions from a pipeline's champion model, and reloading it.

The route is ``async``: it only awaits. A first load runs in the thread pool, the checks and the
model on the prediction service's thread (bounded and batching: see ``inference.serving``), the
insert of the predictions in the thread pool again. The response is serialised here, once, by
orjson: 0.08 ms for 1,000 predictions, where FastAPI's encoder takes 11 ms and ``json`` 1.2 ms.

As the server starts, the champions of the serving pipelines are loaded in the background, so
no request pays for it, and then the heap is frozen (``gc.freeze``): the ~400,000 objects of
MLflow, scikit-learn and pandas live as long as the process, and a full collection that scans
them stalls every request for 100-200 ms, every few requests of 1,000 records.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from mlfactory.api.deps import Admin, User
from mlfactory.api.metrics import record_model_load, record_predictions
from mlfactory.api.problems import problem
from mlfactory.api.trail import audit
from mlfactory.datasets.columns import label_text
from mlfactory.inference.champion import NoChampionError
from mlfactory.inference.model_cache import ModelCache, ServedModel
from mlfactory.inference.schema import UnservableModel
from mlfactory.inference.serving import (
    InvalidRecords,
    ModelRefused,
    PredictionService,
    store_predictions,
)
from mlfactory.orchestration import Serving, UnknownPipeline, get_pipeline
from mlfactory.orchestration.registry import pipeline_names

logger = logging.getLogger(__name__)

MAX_ERRORS = 100  # field errors listed in one response; the detail says how many there were
_service_lock = threading.Lock()
_pipelines_of_model: dict[str, set[str]] = {}  # model name -> pipelines served with it

EXAMPLE_RECORD = {
    "Daily Time Spent on Site": 68.95,
    "Age": 35,
    "Area Income": 61833.9,
    "Daily Internet Usage": 256.09,
    "Male": 0,
    "City": "fields the model does not use are ignored",
}


@dataclass
class WarmUp:
    """The loading of the champions as the server starts: readiness waits for it."""

    done: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # pipeline -> why its load failed


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service = _service_of(app)
    app.state.warm_up = WarmUp()
    warm_up = asyncio.create_task(_warm_up_then_freeze(service, app.state.warm_up))
    try:
        yield
    finally:
        if warm_up.done():
            gc.unfreeze()  # the next app of this process (tests) starts from a collectable heap
        else:
            warm_up.cancel()
        app.state.predictions = None  # a restarted app makes a new service
        await run_in_threadpool(service.close)


router = APIRouter(tags=["predictions"], lifespan=lifespan)


class PredictRequest(BaseModel):
    records: list[dict[str, Any]] = Field(
        min_length=1,
        description="Records shaped like the pipeline's source rows, at most "
        "MLF_API_MAX_BATCH of them.",
        examples=[[EXAMPLE_RECORD]],
    )


class PredictionOut(BaseModel):
    id: int = Field(description="Id of the stored prediction.")
    label: str | int | float | bool = Field(description="Of the label's declared type.")
    probabilities: dict[str, float] | None = Field(
        description="Probability of each class; null for a model that gives none."
    )
    model_name: str
    model_version: str


class PredictResponse(BaseModel):
    pipeline: str
    model_name: str
    model_version: str = Field(description="The version that answered every record.")
    predictions: list[PredictionOut]


class ReloadResponse(BaseModel):
    pipeline: str
    model_name: str
    previous_version: str | None = Field(description="Served before; null if none was loaded.")
    version: str = Field(description="Served from now on.")
    changed: bool


PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown pipeline, or one that serves no predictions."},
    413: {"description": "More records than MLF_API_MAX_BATCH."},
    422: {
        "description": "Invalid records: ``errors`` lists record, field and message (or says "
        "why the model cannot answer records of the right types)."
    },
    503: {
        "description": "The pipeline has no champion model yet, or its champion cannot be "
        "served (its inputs are no longer declared)."
    },
}


@router.post(
    "/v1/pipelines/{name}/predict",
    response_model=PredictResponse,
    responses={code: PROBLEMS[code] for code in (404, 413, 422, 503)},
)
async def predict(name: str, body: PredictRequest, request: Request, account: User) -> Response:
    """Label and class probabilities of each record from the pipeline's champion; each answer
    is stored and its id returned. Every record is answered by the same version."""
    serving = _serving(name)
    limit = request.app.state.settings.api_max_batch
    if len(body.records) > limit:
        raise HTTPException(
            413, f"{len(body.records)} records in one request; at most {limit} are accepted"
        )
    service = _service_of(request.app)
    served = service.models.cached(serving.model_name) or await _first_load(service, name, serving)
    try:
        answers = await service.predict(served, body.records, serving.to_features)
    except InvalidRecords as exc:
        return _invalid(request, exc)
    except ModelRefused as exc:
        error = {"loc": ["body", "records"], "msg": str(exc), "type": "value_error"}
        return problem(422, str(exc), instance=request.url.path, errors=[error])
    except UnservableModel as exc:  # the declaration no longer fits the champion
        raise _unavailable(name, serving, exc) from None
    ids = await run_in_threadpool(
        store_predictions, request.app.state.sessions, name, served, answers
    )
    record_predictions(
        name, served.name, served.version, [label_text(item.label) or "" for item in answers]
    )
    content = {
        "pipeline": name,
        "model_name": served.name,
        "model_version": served.version,
        "predictions": [
            {
                "id": prediction_id,
                "label": item.label,
                "probabilities": item.probabilities,
                "model_name": served.name,
                "model_version": served.version,
            }
            for prediction_id, item in zip(ids, answers, strict=True)
        ],
    }
    return Response(orjson.dumps(content), media_type="application/json")


@router.post(
    "/v1/pipelines/{name}/reload",
    response_model=ReloadResponse,
    responses={code: PROBLEMS[code] for code in (404, 503)},
)
async def reload(name: str, request: Request, account: Admin) -> ReloadResponse:
    """Look at the champion alias now and serve the version it names, without waiting for the
    next periodic check; requests in flight finish on the version they started with."""
    serving = _serving(name)
    models = _service_of(request.app).models
    try:
        before, after = await run_in_threadpool(models.reload, serving.model_name)
    except (NoChampionError, UnservableModel) as exc:
        raise _unavailable(name, serving, exc) from None
    await run_in_threadpool(
        audit,
        request.app.state.sessions,
        account.username,
        "model.reload",
        f"model:{serving.model_name}",
        before={"version": before},
        after={"version": after},
        detail=f"pipeline {name}",
    )
    return ReloadResponse(
        pipeline=name,
        model_name=serving.model_name,
        previous_version=before,
        version=after,
        changed=before != after,
    )


@cache
def _serving(name: str) -> Serving:
    """The pipeline's serving declaration, looked up once (entry points are read from disk);
    unknown names are not cached, so the cache holds registered pipelines only."""
    try:
        pipeline = get_pipeline(name)
    except UnknownPipeline as exc:
        raise HTTPException(404, str(exc)) from None
    if pipeline.serving is None:
        raise HTTPException(404, f"pipeline {name!r} serves no predictions (it has no serving)")
    _pipelines_of_model.setdefault(pipeline.serving.model_name, set()).add(name)
    return pipeline.serving


def _service_of(app: FastAPI) -> PredictionService:
    """The app's prediction service, made on first use (the lifespan does not run when a test
    client is used without ``with``)."""
    service = getattr(app.state, "predictions", None)
    if service is None:
        with _service_lock:
            service = getattr(app.state, "predictions", None)
            if service is None:
                settings = app.state.settings
                models = ModelCache.for_registry(settings, on_load=_record_load)
                service = PredictionService(models, max_batch_rows=settings.api_max_batch)
                app.state.predictions = service
    return service


async def _warm_up_then_freeze(service: PredictionService, state: WarmUp) -> None:
    await run_in_threadpool(_load_champions, service, state)
    gc.collect()
    gc.freeze()
    state.done = True


def _load_champions(service: PredictionService, state: WarmUp) -> None:
    for name in pipeline_names():
        try:
            service.models.get(_serving(name).model_name)
        except HTTPException:  # the pipeline serves no predictions
            continue
        except NoChampionError:
            logger.info("pipeline %s has no champion to serve yet", name)
        except Exception as exc:
            logger.exception("loading the champion of pipeline %s failed", name)
            state.failures[name] = type(exc).__name__


def _record_load(served: ServedModel, seconds: float) -> None:
    for pipeline in sorted(_pipelines_of_model.get(served.name, ())):
        record_model_load(pipeline, served.name, seconds)


async def _first_load(service: PredictionService, name: str, serving: Serving) -> ServedModel:
    try:
        return await run_in_threadpool(service.models.get, serving.model_name)
    except (NoChampionError, UnservableModel) as exc:
        raise _unavailable(name, serving, exc) from None


def _unavailable(name: str, serving: Serving, exc: Exception) -> HTTPException:
    if isinstance(exc, NoChampionError):
        return HTTPException(
            503,
            f"pipeline {name!r} has no champion model yet (no version of model "
            f"{serving.model_name!r} has the alias 'champion'): run `mlfactory run {name}` "
            "to train and promote one",
        )
    return HTTPException(503, f"the champion of pipeline {name!r} cannot be served: {exc}")


def _invalid(request: Request, exc: InvalidRecords) -> JSONResponse:
    errors = [
        {
            "loc": ["body", "records", error.record, error.field],
            "msg": error.message,
            "type": error.type,
            "record": error.record,
            "field": error.field,
        }
        for error in exc.errors[:MAX_ERRORS]
    ]
    return problem(422, str(exc), instance=request.url.path, errors=errors)
