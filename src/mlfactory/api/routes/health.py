"""Liveness and readiness, open to all (load balancers and orchestrators call them)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from mlfactory.api.deps import SessionsDep, SettingsDep

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str | int]:
    """The process answers; ``pid`` tells which server process did."""
    return {"status": "ok", "pid": os.getpid()}


@router.get("/health/ready")
def ready(request: Request, sessions: SessionsDep, settings: SettingsDep) -> JSONResponse:
    """The store and the model registry answer, and every champion the API serves is loaded
    (503 naming what is not so)."""
    from mlflow.tracking import MlflowClient

    warm_up = getattr(request.app.state, "warm_up", None)
    checks: dict[str, str] = {}
    if warm_up is None or not warm_up.done:
        checks["models"] = "loading"
    elif warm_up.failures:
        checks["models"] = "failed: " + ", ".join(sorted(warm_up.failures))
    else:
        checks["models"] = "ok"
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["store"] = f"unreachable: {type(exc).__name__}"
    try:
        uri = settings.mlflow_tracking_uri
        MlflowClient(uri, uri).search_registered_models(max_results=1)
        checks["registry"] = "ok"
    except Exception as exc:
        checks["registry"] = f"unreachable: {type(exc).__name__}"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, 200 if ok else 503)
