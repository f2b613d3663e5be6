"""The FastAPI application: ``create_app(settings)``; ``app`` for ``uvicorn mlfactory.api.main:app``.

``mlfactory serve`` (see ``server.py``) runs ``create_app`` as a factory in each server process,
with the settings of the environment.
"""

from __future__ import annotations

from fastapi import FastAPI

from mlfactory.api import problems
from mlfactory.api.guards import BodySizeLimit, LoginThrottle, RateLimit
from mlfactory.api.inputs import InputGuard
from mlfactory.api.metrics import RequestMetrics
from mlfactory.api.routes import (
    articles,
    audit,
    auth,
    datasets,
    drift,
    health,
    loads,
    me,
    metrics,
    models,
    pipelines,
    predict,
    status,
)
from mlfactory.api.security import signing_key
from mlfactory.settings import Settings, get_settings
from mlfactory.store import session_factory

PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/health/ready",
        "/token",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
        "/redoc",
    }
)
"""Routes that need no token; every other route must reject anonymous and wrong-role callers."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="mlfactory",
        version="0.1.0",
        description="Predictions from champion models, data and run browsing, operations.",
    )
    app.state.settings = settings
    app.state.signing_key = signing_key(settings)  # fails fast in production without a secret
    app.state.sessions = session_factory(settings.database_url)
    app.state.rate_limit = RateLimit(settings.api_rate_per_minute)
    app.state.login_throttle = LoginThrottle(settings.api_login_per_minute)
    app.add_middleware(InputGuard)  # innermost: reads bodies only under the size limit
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestMetrics)  # added last, so outermost: 413s and 429s are counted
    problems.install(app)
    for module in (
        auth,
        me,
        health,
        predict,
        datasets,
        loads,
        articles,
        models,
        pipelines,
        status,
        drift,
        audit,
        metrics,
    ):
        app.include_router(module.router)
    return app


def __getattr__(name: str) -> FastAPI:
    """``mlfactory.api.main:app`` builds the app from the environment on first access."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
