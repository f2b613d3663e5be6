"""Errors as RFC 9457 problem details (``application/problem+json``), whatever raised them.

Routes raise ``HTTPException``; unknown paths (404) and methods (405) come from the router as
the same exception; request validation gives 422 with one entry per bad field; anything else is
a bug, answered with a bare 500 (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

MEDIA_TYPE = "application/problem+json"


def problem(status: int, detail: str | None = None, **extra: Any) -> JSONResponse:
    """A problem response; ``detail`` defaults to the status's title."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:  # a code Python does not name
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail or title}
    return JSONResponse({**body, **extra}, status_code=status, media_type=MEDIA_TYPE)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # A structured detail (a list of field errors, say) travels as the extension member errors.
    structured = not isinstance(exc.detail, str)
    response = problem(
        exc.status_code,
        None if structured else exc.detail,
        instance=request.url.path,
        **({"errors": exc.detail} if structured else {}),
    )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem(422, detail, instance=request.url.path, errors=errors)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette calls this for any unhandled exception, then re-raises it for the server log."""
    return problem(500, "internal server error", instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)
