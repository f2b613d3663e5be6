"""One input check before every route: NUL bytes, unpaired surrogates and numbers beyond a
double are 422s naming where they are, on both backends, wherever a request can carry them;
no answer carries SQL, parameters, host names or paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.settings import Settings

PASSWORD = "inputs-password"
LEAKS = ("INSERT", "SELECT", "psycopg", "sqlite", "/work/", "/tmp/", "Traceback", "pid")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    add_user(app.state.sessions, "adam", PASSWORD, "admin")
    with TestClient(app) as test_client:
        token = test_client.post("/token", data={"username": "adam", "password": PASSWORD})
        test_client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield test_client


def refused(response, where: list) -> str:
    assert response.status_code == 422, response.text
    body = response.text
    assert not any(leak in body for leak in LEAKS), body
    (error,) = response.json()["errors"]
    assert error["loc"] == where, error
    return error["msg"]


def test_a_nul_byte_is_refused_wherever_a_request_carries_it(client: TestClient) -> None:
    login = client.post("/token", data={"username": "ad\x00am", "password": PASSWORD})
    assert refused(login, ["body", "username"]) == "contains a NUL character"
    run = client.post("/v1/pipelines/advertising/runs", json={"params": {"model_name": "a\x00b"}})
    assert refused(run, ["body", "params", "model_name"]) == "contains a NUL character"
    search = client.get("/v1/datasets/advertising/items", params={"q": "a\x00"})
    assert refused(search, ["query", "q"]) == "contains a NUL character"
    path = client.get("/v1/datasets/adver%00tising/items")
    assert refused(path, ["path"]) == "contains a NUL character"
    key = client.post("/v1/pipelines/advertising/predict", json={"records": [{"A\x00ge": 35}]})
    assert refused(key, ["body", "records", 0, "A\x00ge"]) == "contains a NUL character"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1" + "0" * 400, "a 401-digit integer is beyond any number a model takes"),
        ("1e400", "inf is not a finite number"),
        ("-1e400", "-inf is not a finite number"),
        ("NaN", "nan is not a finite number"),
        ('"\\ud800"', "contains an unpaired surrogate (not Unicode text)"),
    ],
)
def test_what_no_model_can_take_is_refused_naming_the_field(
    client: TestClient, raw: str, message: str
) -> None:
    body = '{"records": [{"Age": 35}, {"Age": ' + raw + "}]}"
    answer = client.post(
        "/v1/pipelines/advertising/predict",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert refused(answer, ["body", "records", 1, "Age"]) == message
