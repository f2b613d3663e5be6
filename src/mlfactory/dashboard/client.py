"""The dashboard's one way to the data: the mlfactory HTTP API, through httpx.

The API's base URL is ``MLF_API_URL`` (default ``http://127.0.0.1:8000``). Errors come back as
:class:`ApiError` carrying the status and the problem-details ``detail`` the API wrote, or as
:class:`ApiUnreachable` when nothing answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from mlfactory.settings import Settings

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def api_url() -> str:
    """``MLF_API_URL`` as the settings read it, now (not cached: tests point it elsewhere)."""
    return Settings().api_url.strip().rstrip("/")


class ApiError(Exception):
    """The API answered with an error; ``detail`` is its explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ApiUnreachable(Exception):
    """Nothing answered at the API's URL (not started, wrong ``MLF_API_URL``, timeout)."""


def login(base_url: str, username: str, password: str) -> str:
    """A bearer token for the account, through the OAuth2 password flow (``POST /token``)."""
    answer = _send(base_url, "POST", "/token", data={"username": username, "password": password})
    return answer["access_token"]


class Api:
    """The API routes the dashboard reads, as a signed-in user."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> Any:
        query = {key: value for key, value in params.items() if value is not None}
        return _send(self.base_url, "GET", path, headers=self._headers, params=query)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return _send(self.base_url, "POST", path, headers=self._headers, json=body)

    def me(self) -> dict[str, Any]:
        return self.get("/v1/me")

    def pipelines(self) -> list[dict[str, Any]]:
        return self.get("/v1/pipelines")

    def runs(self, pipeline: str, limit: int = 50) -> dict[str, Any]:
        return self.get(f"/v1/pipelines/{_part(pipeline)}/runs", limit=limit)

    def run(self, run_id: int) -> dict[str, Any]:
        return self.get(f"/v1/runs/{run_id}")

    def start_run(self, pipeline: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.post(f"/v1/pipelines/{_part(pipeline)}/runs", {"params": params})

    def datasets(self) -> list[dict[str, Any]]:
        return self.get("/v1/datasets")

    def loads(self, dataset: str) -> list[dict[str, Any]]:
        return self.get(f"/v1/datasets/{_part(dataset)}/loads")

    def rejections(self, dataset: str, limit: int = 200) -> dict[str, Any]:
        return self.get(f"/v1/datasets/{_part(dataset)}/rejections", limit=limit)

    def models(self) -> list[dict[str, Any]]:
        return self.get("/v1/models")

    def model(self, name: str) -> dict[str, Any]:
        return self.get(f"/v1/models/{_part(name)}")

    def inputs(self, model_name: str) -> dict[str, Any]:
        return self.get(f"/v1/models/{_part(model_name)}/inputs")

    def predict(self, pipeline: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self.post(f"/v1/pipelines/{_part(pipeline)}/predict", {"records": records})

    def articles(self, **filters: Any) -> dict[str, Any]:
        return self.get("/v1/articles", **filters)

    def article(self, article_id: int) -> dict[str, Any]:
        return self.get(f"/v1/articles/{article_id}")

    def audit(self, limit: int = 200, **filters: Any) -> dict[str, Any]:
        return self.get("/v1/audit", limit=limit, **filters)


def _part(name: str) -> str:
    """``name`` as one path segment."""
    return quote(name, safe="")


def _send(base_url: str, method: str, path: str, **options: Any) -> Any:
    try:
        response = httpx.request(method, base_url + path, timeout=TIMEOUT, **options)
    except httpx.TransportError as exc:
        raise ApiUnreachable(
            f"the API at {base_url} does not answer ({type(exc).__name__}): start it with "
            "`mlfactory serve`, or point MLF_API_URL at it"
        ) from exc
    if response.is_error:
        raise ApiError(response.status_code, _detail(response))
    return response.json()


def _detail(response: httpx.Response) -> str:
    """The problem-details explanation of an error response, else its status line."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if not isinstance(body, dict):
        return response.reason_phrase or "error"
    detail = str(body.get("detail") or response.reason_phrase)
    errors = [error for error in body.get("errors") or [] if isinstance(error, dict)]
    fields = [
        f"{'.'.join(str(part) for part in error.get('loc', []))}: {error.get('msg', '')}"
        for error in errors[:5]
    ]
    if errors and str(errors[0].get("msg", "")) not in detail:  # else the detail lists them
        return f"{detail} ({'; '.join(fields)})"
    return detail
