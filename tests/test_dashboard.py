"""The dashboard against a real ``mlfactory serve`` process: every page rendered by Streamlit's
AppTest shows what the API holds (two real advertising runs, one with rejected rows, and 100
real arXiv papers with predictions and summaries), and on an empty store says what to run
first. Also the load and rejection routes its Data page reads, on SQLite and PostgreSQL.

The pages are compared with the API's own answers, fetched over HTTP next to them.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from api_process import api_process, process_env
from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.dashboard import session
from mlfactory.dashboard.launch import APP
from mlfactory.datasets.project import get_dataset
from mlfactory.ingest.csv_reader import BadRow
from mlfactory.ingest.declared import load_declared
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.orchestration import get_pipeline, run_pipeline
from mlfactory.settings import Settings
from mlfactory.store import session_factory
from test_api_articles import paper_records, predict_and_summarise, store_papers

pytestmark = pytest.mark.slow

advertising = get_pipeline("advertising")
PASSWORD = "dashboard-password"
BAD_ROWS = (
    "68.95,abc,61833.9,256.09,Cloned line,Tunis,0,Tunisia,2016-03-27 00:53:11,0",  # bad Age
    "1,2,3",  # too few fields
)
PAGES = ("overview", "data", "models", "predict", "articles", "runs")
TIMEOUT = 60  # seconds for one run of a page (each asks the API a few times)


def mlflow_copy(shared_uri: str, target: Path) -> str:
    """A copy of the session's MLflow store without its registered models: creating a store
    takes seconds, copying one a few milliseconds."""
    MlflowClient(shared_uri).search_experiments()  # creates the shared store on first use
    with (
        sqlite3.connect(shared_uri.removeprefix("sqlite:///")) as source,
        sqlite3.connect(target) as copy,
    ):
        source.backup(copy)
    uri = f"sqlite:///{target}"
    client = MlflowClient(uri, uri)
    while models := client.search_registered_models(max_results=100):
        for model in models:
            client.delete_registered_model(model.name)
    return uri


def store_settings(folder: Path, shared_mlflow: str, datasets_dir: Path) -> Settings:
    """A store, an MLflow registry and a home of their own, with one account per role."""
    settings = Settings(
        home=folder / "home",
        database_url=f"sqlite:///{folder / 'store.db'}",
        mlflow_tracking_uri=mlflow_copy(shared_mlflow, folder / "mlflow.db"),
        datasets_dir=datasets_dir,
    )
    sessions = session_factory(settings.database_url)
    for role in ("viewer", "user", "admin"):
        add_user(sessions, role, PASSWORD, role)
    return settings


def seed(settings: Settings, folder: Path) -> None:
    """Two advertising runs with a load of the file with two bad rows added between them, and
    the papers of a recorded arXiv response, some predicted and summarised."""
    first = run_pipeline(advertising, settings=settings)
    assert first.status == "success", first.error
    source = folder / "advertising-with-bad-rows.csv"
    original = (settings.datasets_dir or Path()) / "advertising" / "advertising.csv"
    source.write_text(original.read_text().rstrip("\n") + "\n" + "\n".join(BAD_ROWS) + "\n")
    sessions = session_factory(settings.database_url)
    declared = get_dataset(settings, "advertising")
    assert load_declared(sessions, settings, declared, path=source).rows_rejected == 2
    second = run_pipeline(advertising, {"c": 0.05}, settings=settings)
    assert second.status == "success", second.error
    ids = store_papers(sessions, paper_records(settings.datasets_dir or Path()))
    predict_and_summarise(sessions, sorted(ids.values()))


@dataclass(frozen=True)
class Live:
    """A running API and what the test asks it directly."""

    url: str

    def token(self, username: str) -> str:
        login = httpx.post(
            f"{self.url}/token", data={"username": username, "password": PASSWORD}, timeout=30
        )
        assert login.status_code == 200, login.text
        return login.json()["access_token"]

    def get(self, path: str, username: str = "viewer", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(username)}"}
        response = httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any], username: str = "admin") -> Any:
        headers = {"Authorization": f"Bearer {self.token(username)}"}
        response = httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)
        assert response.is_success, response.text
        return response.json()


@contextmanager
def live_api(settings: Settings, log: Path) -> Iterator[Live]:
    with api_process(process_env(settings), log) as server:
        yield Live(server.url)


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, datasets_dir: Path
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("dashboard-seeded")
    settings = store_settings(folder, mlflow_uri, datasets_dir)
    seed(settings, folder)
    with live_api(settings, folder / "serve.log") as live:
        yield live


@pytest.fixture(scope="module")
def empty(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, datasets_dir: Path
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("dashboard-empty")
    with live_api(store_settings(folder, mlflow_uri, datasets_dir), folder / "serve.log") as live:
        yield live


def dashboard(live: Live, username: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app signed in as ``username`` (its token in the session state, as sign-in leaves
    it), on its first page."""
    monkeypatch.setenv("MLF_API_URL", live.url)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.session_state[session.TOKEN] = live.token(username)
    app.session_state[session.USERNAME] = username
    app.session_state[session.ROLE] = username
    return shown(app.run())


def shown(app: AppTest) -> AppTest:
    """``app`` after a run that raised nothing."""
    assert not app.exception, [error.message for error in app.exception]
    return app


def open_page(app: AppTest, page: str) -> AppTest:
    return shown(app.switch_page(f"views/{page}.py").run())


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def charts(app: AppTest) -> int:
    return len(app.get("vega_lite_chart"))


def texts(elements: Any) -> list[str]:
    return [element.value for element in elements]


def test_signing_in_with_the_form(seeded: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLF_API_URL", seeded.url)
    app = shown(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert texts(app.title) == ["mlfactory"]

    app.text_input[0].input("admin")
    app.text_input[1].input("not the password")
    shown(app.form_submit_button[0].click().run())
    assert texts(app.error) == ["Not signed in: wrong user name or password"]
    assert session.TOKEN not in app.session_state

    app.text_input[1].input(PASSWORD)
    shown(app.form_submit_button[0].click().run())
    assert texts(app.title) == ["Overview"]
    assert (app.session_state[session.USERNAME], app.session_state[session.ROLE]) == (
        "admin",
        "admin",
    )
    assert "Signed in as **admin** (admin)" in texts(app.sidebar.caption)

    shown(app.sidebar.button[0].click().run())  # sign out
    assert texts(app.title) == ["mlfactory"]
    assert session.TOKEN not in app.session_state


def test_an_api_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    monkeypatch.setenv("MLF_API_URL", url)
    app = shown(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    app.text_input[0].input("admin")
    app.text_input[1].input(PASSWORD)
    shown(app.form_submit_button[0].click().run())
    (error,) = texts(app.error)
    assert error.startswith(f"the API at {url} does not answer (ConnectError)")
    assert "MLF_API_URL" in error


def test_a_refused_token_signs_out(seeded: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    app = dashboard(seeded, "viewer", monkeypatch)
    app.session_state[session.TOKEN] = "not-a-token"
    shown(app.run())
    assert [w.startswith("Signed out:") for w in texts(app.warning)] == [True]
    assert session.TOKEN not in app.session_state


def test_overview_shows_each_pipeline_s_last_run(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "viewer", monkeypatch), "overview")
    pipelines = seeded.get("/v1/pipelines")
    assert texts(app.title) == ["Overview"]
    assert metrics(app) == {
        "Pipelines": str(len(pipelines)),
        "Pipelines that ran": "1",
        "Last run failed": "0",
    }
    table = app.dataframe[0].value
    assert list(table["pipeline"]) == [p["name"] for p in pipelines]
    row = table[table["pipeline"] == "advertising"].iloc[0]
    last = next(p["last_run"] for p in pipelines if p["name"] == "advertising")
    assert (row["last run"], row["status"]) == (last["id"], "success")
    assert charts(app) == 1  # the run durations


def test_data_shows_sizes_classes_and_rejections(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "viewer", monkeypatch), "data")
    datasets = {d["name"]: d for d in seeded.get("/v1/datasets")}
    assert app.selectbox[0].options == list(datasets)
    assert app.selectbox[0].value == "advertising"
    loads = seeded.get("/v1/datasets/advertising/loads")
    rejected = seeded.get("/v1/datasets/advertising/rejections", limit=200)
    assert metrics(app) == {
        "Items": str(datasets["advertising"]["items"]),
        "Labelled": str(datasets["advertising"]["labelled"]),
        "Load batches": str(len(loads)),
        "Rejected rows": "2",
        "at load": "2",
    }
    batches, reasons = app.dataframe[0].value, app.dataframe[1].value
    assert list(batches["items after"]) == [b["items_after"] for b in reversed(loads)]
    assert list(reasons["reason"]) == [r["reason"] for r in rejected["rejections"]]
    assert any("Age" in reason for reason in reasons["reason"])
    assert charts(app) == 2  # size across batches, class distribution

    shown(app.selectbox[0].select("arxiv").run())
    assert metrics(app)["Items"] == "100"
    assert texts(app.success) == ["No row was rejected."]


def test_models_shows_versions_champion_and_promotions(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "viewer", monkeypatch), "models")
    model = seeded.get("/v1/models/advertising")
    assert app.selectbox[0].options == ["advertising"]
    assert metrics(app) == {
        "Champion": f"v{model['champion_version']}",
        "Latest version": "v2",
        "Pipelines": "advertising",
    }
    versions, history = app.dataframe[0].value, app.dataframe[1].value
    assert list(versions["version"]) == ["2", "1"]
    champion = versions[versions["champion"] == "★"]
    assert list(champion["version"]) == [model["champion_version"]]
    assert list(versions["test_roc_auc"]) == [
        round(v["metrics"]["test_roc_auc"], 4) for v in model["versions"]
    ]
    assert list(history["reason"]) == [e["reason"] for e in reversed(model["promotions"])]
    assert history["reason"].iloc[-1] == "no champion yet"
    assert app.selectbox[1].value == "test_roc_auc"
    assert charts(app) == 1
    assert any("no MLflow UI" in caption for caption in texts(app.caption))


def test_predict_answers_with_the_champion(seeded: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_page(dashboard(seeded, "user", monkeypatch), "predict")
    inputs = seeded.get("/v1/models/advertising/inputs")
    assert app.selectbox[0].value == "advertising"
    fields = {field.label: field for field in app.number_input}
    assert list(fields) == [column["name"] for column in inputs["columns"]]
    assert {name: field.value for name, field in fields.items()} == inputs["example"]

    fields["Age"].set_value(61.0)
    fields["Daily Internet Usage"].set_value(120.5)
    shown(app.form_submit_button[0].click().run())
    record = {**inputs["example"], "Age": 61.0, "Daily Internet Usage": 120.5}
    expected = seeded.post("/v1/pipelines/advertising/predict", {"records": [record]})
    (answer,) = expected["predictions"]
    assert texts(app.subheader) == [f"Answer: {answer['label']}"]
    confidence = answer["probabilities"][str(answer["label"])]  # keyed by the label as text
    assert metrics(app) == {"Confidence": f"{confidence:.1%}"}
    assert charts(app) == 2  # the confidence ring, the probabilities


def test_a_viewer_sees_the_form_but_cannot_predict(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "viewer", monkeypatch), "predict")
    assert texts(app.warning) == [
        "Predictions need the role user or admin; this account is a viewer."
    ]
    assert app.form_submit_button[0].disabled
    assert len(app.number_input) == 5


def test_articles_shows_counts_and_a_paper_in_full(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "viewer", monkeypatch), "articles")
    overall = seeded.get("/v1/articles", limit=50)
    assert metrics(app)["Articles"] == "100"
    assert metrics(app)["Subjects"] == str(len(overall["subjects"]))
    assert app.selectbox[0].options == ["all subjects", *overall["subjects"]]
    listed = app.dataframe[0].value
    assert list(listed["title"]) == [a["title"] for a in overall["articles"]]
    newest = overall["articles"][0]
    assert texts(app.subheader)[-1] == newest["title"]  # the newest paper, in full

    # The first paper stored has two summaries and two predictions: the latest of each show.
    first_id = min(a["id"] for a in seeded.get("/v1/articles", limit=200)["articles"])
    first = seeded.get(f"/v1/articles/{first_id}")
    app.text_input[0].input(first["arxiv_id"])
    shown(app.run())
    assert len(app.dataframe[0].value) == 1
    assert texts(app.subheader)[-1] == first["title"]
    assert metrics(app)["Predicted subject"] == "physics"
    assert metrics(app)["Confidence"] == "90.0%"
    assert "A newer summary of the first paper." in texts(app.markdown)
    assert first["abstract"] in texts(app.markdown)

    subject = next(iter(overall["subjects"]))
    app.text_input[0].input("")
    shown(app.selectbox[0].select(subject).run())
    assert set(app.dataframe[0].value["subject"]) == {subject}


def test_runs_shows_steps_and_lets_an_admin_start_one(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "admin", monkeypatch), "runs")
    page = seeded.get("/v1/pipelines/advertising/runs")
    assert app.selectbox[0].value == "advertising"
    assert list(app.dataframe[0].value["run"]) == [run["id"] for run in page["runs"]]
    newest = seeded.get(f"/v1/runs/{page['runs'][0]['id']}")
    assert texts(app.subheader) == [f"Run {newest['id']} of advertising"]
    assert metrics(app)["Status"] == "success"
    steps = app.dataframe[1].value
    assert list(steps["step"]) == [step["step"] for step in newest["steps"]]
    assert charts(app) == 1

    form = app.text_area[0]
    form.input("[1, 2]")
    shown(app.form_submit_button[0].click().run())
    assert "The parameters must be a JSON object" in texts(app.error)[0]
    app.text_area[0].input('{"c": -1}')
    shown(app.form_submit_button[0].click().run())
    (refused,) = texts(app.error)
    assert "c" in refused and "greater than 0" in refused
    assert seeded.get("/v1/pipelines/advertising/runs")["total"] == page["total"]

    viewer = open_page(dashboard(seeded, "viewer", monkeypatch), "runs")
    assert len(viewer.text_area) == 0  # no form to start a run


def test_a_run_started_from_the_dashboard_is_followed_to_its_failure(
    tmp_path: Path, mlflow_uri: str, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store_settings(tmp_path, mlflow_uri, datasets_dir)
    with live_api(settings, tmp_path / "serve.log") as live:
        app = open_page(dashboard(live, "admin", monkeypatch), "runs")
        assert texts(app.info) == ["No runs yet: run `mlfactory run advertising`."]
        app.text_area[0].input('{"source": "/nonexistent/ads.csv"}')
        shown(app.form_submit_button[0].click().run())
        (started,) = texts(app.success)
        run_id = int(started.split()[1])
        assert started == f"Run {run_id} of advertising started."
        deadline = time.monotonic() + 60
        while live.get(f"/v1/runs/{run_id}")["status"] == "running":
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.2)

        shown(app.run())
        assert metrics(app)["Status"] == "failed"
        run = live.get(f"/v1/runs/{run_id}")
        assert run["error"] in texts(app.error)
        assert "/nonexistent/ads.csv" in run["error"]
        assert any(e.label.startswith("load, attempt") for e in app.expander)


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_says_what_to_run_first(
    empty: Live, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    app = open_page(dashboard(empty, "admin", monkeypatch), page)
    pipelines = empty.get("/v1/pipelines")
    first = pipelines[0]["name"]
    serving = next(p["name"] for p in pipelines if p["model_name"])
    expected = {
        "overview": f"No runs yet: run `mlfactory run {first}`.",
        "data": "No data loaded yet: run `mlfactory run advertising` to load a data set.",
        "models": "No registered models yet: run `mlfactory run advertising` to train and "
        "register one.",
        "predict": f"No champion model yet: run `mlfactory run {serving}` to train one.",
        "articles": "No articles yet: run `mlfactory run arxiv_ingest` to fetch papers.",
        "runs": f"No runs yet: run `mlfactory run {first}`.",
    }
    assert texts(app.title) == [page.capitalize()]
    assert texts(app.info) == [expected[page]]
    assert not app.error


# The routes behind the Data page, on both stores.


@dataclass(frozen=True)
class Loaded:
    client: TestClient
    viewer: dict[str, str]
    batches: list[int]

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.viewer)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def loaded(settings: Settings, sessions: sessionmaker[Session]) -> Loaded:
    """Three batches of a data set: 5 rows; 7 rows (2 new, 1 changed) and a bad one; one that
    failed midway."""
    rows = [
        Record(key=str(n), data={"n": n}, label="even" if n % 2 == 0 else "odd") for n in range(8)
    ]
    first = load_batch(sessions, "numbers", rows[:5])
    changed = Record(key="0", data={"n": 0, "note": "changed"}, label="even")
    second = load_batch(
        sessions, "numbers", [changed, *rows[1:7], BadRow(9, "too few fields", "9", 1)]
    )

    def broken() -> Iterator[Record]:
        yield rows[7]
        raise OSError("the source went away")

    with pytest.raises(OSError):
        load_batch(sessions, "numbers", broken())
    client = TestClient(create_app(settings))
    add_user(sessions, "viewer", PASSWORD, "viewer")
    login = client.post("/token", data={"username": "viewer", "password": PASSWORD})
    viewer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return Loaded(client, viewer, [first.batch_id, second.batch_id])


def test_loads_give_the_size_after_each_batch(loaded: Loaded) -> None:
    batches = loaded.get("/v1/datasets/numbers/loads")
    assert [b["status"] for b in batches] == ["completed", "completed", "failed"]
    assert [b["id"] for b in batches[:2]] == loaded.batches
    assert [(b["rows_inserted"], b["rows_updated"], b["rows_rejected"]) for b in batches[:2]] == [
        (5, 0, 0),
        (2, 1, 1),
    ]
    assert [b["items_after"] for b in batches] == [5, 7, None]
    assert "the source went away" in batches[2]["error"]
    response = loaded.client.get("/v1/datasets/nothing/loads", headers=loaded.viewer)
    assert response.status_code == 404


def test_rejections_come_with_their_reason_and_filters(loaded: Loaded) -> None:
    page = loaded.get("/v1/datasets/numbers/rejections")
    assert (page["total"], page["by_stage"]) == (1, {"load": 1})
    (rejection,) = page["rejections"]
    assert (rejection["batch_id"], rejection["line"], rejection["reason"]) == (
        loaded.batches[1],
        9,
        "too few fields",
    )
    assert rejection["raw"] == "9"
    assert loaded.get("/v1/datasets/numbers/rejections", batch_id=loaded.batches[0])["total"] == 0
    assert loaded.get("/v1/datasets/numbers/rejections", stage="validate") == {
        "total": 0,
        "limit": 50,
        "offset": 0,
        "by_stage": {"load": 1},
        "rejections": [],
    }
    response = loaded.client.get("/v1/datasets/nothing/rejections", headers=loaded.viewer)
    assert response.status_code == 404


def test_audit_shows_the_trail_to_admins_only(
    seeded: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page(dashboard(seeded, "admin", monkeypatch), "audit")
    trail = seeded.get("/v1/audit", username="admin", limit=200)["entries"]
    rows = app.dataframe[0].value
    # Reading the trail signed in once more: its newest entry is that login.
    assert list(zip(rows["actor"], rows["action"], strict=True))[: len(trail) - 1] == [
        (entry["actor"], entry["action"]) for entry in trail[1:]
    ]
    app.selectbox[0].select("login")
    shown(app.run())
    assert set(app.dataframe[0].value["action"]) == {"login"}

    viewer = open_page(dashboard(seeded, "viewer", monkeypatch), "audit")
    assert texts(viewer.info) == ["The audit trail is for admins."]
    assert len(viewer.dataframe) == 0
