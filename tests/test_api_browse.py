"""Browsing the store through the API, on SQLite and PostgreSQL: data sets, pages of items with
each filter and full-text search, one item with its history, predictions, annotations and
lineage (model version -> MLflow run -> pipeline run -> snapshots -> load batches)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.ingest.csv_reader import read_csv_rows
from mlfactory.ingest.loader import Record, load_batch, records_from_csv
from mlfactory.orchestration import Context, Pipeline, Step, run_pipeline
from mlfactory.settings import Settings
from mlfactory.store import Annotation, DataLoad, Item, Prediction, Snapshot

DATASET = "advertising"
MOVED = {"2": "Zanzibar Quay", "3": "Quay of Zanzibar"}
"""Keys whose City the second load changes."""


@dataclass(frozen=True)
class Seeded:
    client: TestClient
    viewer: dict[str, str]
    ids: dict[str, int]  # item id by key
    between_loads: datetime  # after the first load, before the second
    run_id: int  # the pipeline run that "trained" clicks v2


def advertising_records(settings: Settings) -> list[Record]:
    assert settings.datasets_dir is not None
    source = read_csv_rows(settings.datasets_dir / "advertising" / "advertising.csv")
    records = list(records_from_csv(source, label_field="Clicked on Ad"))
    assert all(isinstance(record, Record) for record in records)
    return records  # type: ignore[return-value]


def snapshot_and_register(ctx: Context) -> dict[str, Any]:
    """A training run's traces in the store: snapshots taken by this run, the version it made."""
    from mlfactory.datasets.snapshots import carve_evaluation_set, training_snapshot

    evaluation = carve_evaluation_set(ctx.sessions, DATASET, ctx.artifact_dir, run_id=ctx.run_id)
    training = training_snapshot(ctx.sessions, DATASET, ctx.artifact_dir, run_id=ctx.run_id)
    ctx.update_run(mlflow_run_id="mlflow-run-of-v2", model_name="clicks", model_version="2")
    return {"training": training.digest, "evaluation": evaluation.digest}


def predict(sessions: sessionmaker[Session], rows: list[tuple[int, str, str, str]]) -> None:
    """Prediction rows (item id, model, version, label), inserted in this order."""
    with sessions.begin() as session:
        for item_id, model, version, label in rows:
            session.add(
                Prediction(
                    item_id=item_id,
                    dataset=DATASET,
                    model_name=model,
                    model_version=version,
                    label=label,
                    scores={label: 0.9},
                )
            )


def api_client(settings: Settings, sessions: sessionmaker[Session]) -> tuple[TestClient, dict]:
    client = TestClient(create_app(settings))
    add_user(sessions, "viewer", "viewer-password", "viewer")
    token = client.post("/token", data={"username": "viewer", "password": "viewer-password"})
    return client, {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture
def seeded(settings: Settings, sessions: sessionmaker[Session]) -> Seeded:
    load_batch(sessions, DATASET, advertising_records(settings))
    between = datetime.now(UTC)
    time.sleep(0.01)
    second = [
        replace(r, data={**r.data, "City": MOVED[r.key]}) if r.key in MOVED else r
        for r in advertising_records(settings)
    ]
    assert load_batch(sessions, DATASET, second).rows_updated == len(MOVED)
    trainer = Pipeline("trainer", steps=(Step("train", snapshot_and_register),))
    run_id = run_pipeline(trainer, settings=settings).run_id
    with sessions() as session:
        ids = dict(session.execute(select(Item.key, Item.id).where(Item.dataset == DATASET)).all())
    first_ten = sorted(ids.values())[:10]
    predict(
        sessions,
        [(i, "clicks", "1", "0") for i in first_ten]
        + [(i, "clicks", "2", "1") for i in first_ten[:5]]
        + [(i, "other", "1", "1") for i in first_ten[5:7]],
    )
    with sessions.begin() as session:
        session.add(
            Annotation(
                item_id=ids["2"],
                kind="summary",
                producer="extractive",
                producer_version="1.0",
                content="A user from Zanzibar Quay.",
            )
        )
    client, viewer = api_client(settings, sessions)
    return Seeded(client, viewer, ids, between, run_id)


def page(seeded: Seeded, **params: Any) -> dict[str, Any]:
    response = seeded.client.get(
        f"/v1/datasets/{DATASET}/items", params=params, headers=seeded.viewer
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_datasets_have_counts_classes_and_their_last_batch(seeded: Seeded) -> None:
    response = seeded.client.get("/v1/datasets", headers=seeded.viewer)
    assert response.status_code == 200
    (dataset,) = response.json()
    assert dataset["name"] == DATASET
    assert (dataset["items"], dataset["labelled"]) == (1000, 1000)
    assert dataset["classes"] == {"0": 500, "1": 500}
    batch = dataset["last_batch"]
    assert (batch["name"], batch["rows_seen"], batch["rows_updated"]) == ("load_2", 1000, 2)


def test_pages_add_up_to_the_total_in_id_order(seeded: Seeded) -> None:
    pages = [page(seeded, limit=300, offset=offset) for offset in (0, 300, 600, 900)]
    assert [p["total"] for p in pages] == [1000] * 4
    assert [len(p["items"]) for p in pages] == [300, 300, 300, 100]
    ids = [item["id"] for p in pages for item in p["items"]]
    assert ids == sorted(seeded.ids.values())
    assert page(seeded, limit=10, offset=1000) == {
        "total": 1000,
        "limit": 10,
        "offset": 1000,
        "items": [],
    }


def test_filter_by_label(seeded: Seeded) -> None:
    result = page(seeded, label="1", limit=500)
    assert result["total"] == 500
    assert {item["label"] for item in result["items"]} == {"1"}
    assert page(seeded, label="no such label")["total"] == 0


def test_filter_by_the_latest_prediction_of_any_model_or_of_one(seeded: Seeded) -> None:
    first_ten = sorted(seeded.ids.values())[:10]

    def ids(**params: Any) -> list[int]:
        return [item["id"] for item in page(seeded, **params)["items"]]

    # Latest of any model: clicks v2 for the first five, "other" for the next two.
    assert ids(predicted="1") == first_ten[:7]
    assert ids(predicted="0") == first_ten[7:]
    # Latest of one model.
    assert ids(predicted="1", model="clicks") == first_ten[:5]
    assert ids(predicted="0", model="clicks") == first_ten[5:]
    assert ids(predicted="1", model="other") == first_ten[5:7]
    shown = page(seeded, predicted="1", limit=1)["items"][0]["prediction"]
    assert (shown["model_name"], shown["model_version"], shown["label"]) == ("clicks", "2", "1")
    assert page(seeded, limit=1, offset=20)["items"][0]["prediction"] is None


def test_filter_by_update_time(seeded: Seeded) -> None:
    moved = sorted(seeded.ids[key] for key in MOVED)
    since = page(seeded, updated_since=seeded.between_loads.isoformat())
    assert [item["id"] for item in since["items"]] == moved
    assert page(seeded, updated_before=seeded.between_loads.isoformat())["total"] == 998
    naive = seeded.between_loads.replace(tzinfo=None).isoformat()  # taken as UTC
    assert page(seeded, updated_since=naive)["total"] == 2
    both = page(
        seeded,
        updated_since=seeded.between_loads.isoformat(),
        updated_before=datetime.now(UTC).isoformat(),
        label="no such label",
    )
    assert both["total"] == 0


def whole_word_matches(data: dict[str, Any], query: str) -> bool:
    """The search's contract, restated: every word of the query is a whole word of a value."""
    values = [str(value) for value in data.values()]
    return all(
        any(re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", v, re.I) for v in values)
        for word in re.findall(r"[^\W_]+", query)
    )


@pytest.mark.parametrize(
    "query",
    [
        "tunisia",
        "TUNISIA",
        "zanzibar",
        "quay ZANZIBAR",
        "of zanzibar",
        "line",  # a part of hyphenated words ("front-line"), a substring of others ("online")
        "net",
        "Country",
    ],
)
def test_search_matches_whole_words_of_values_alike_on_both_backends(
    seeded: Seeded, settings: Settings, query: str
) -> None:
    latest = {
        r.key: {**r.data, "City": MOVED.get(r.key, r.data["City"])}
        for r in advertising_records(settings)
    }
    expected = sorted(
        seeded.ids[k] for k, data in latest.items() if whole_word_matches(data, query)
    )
    result = page(seeded, q=query, limit=500)
    assert [item["id"] for item in result["items"]] == expected
    assert result["total"] == len(expected)
    if query == "Country":  # a key of every item, but no value's word
        assert expected == []
    else:
        assert expected


def test_search_combines_with_filters_and_paging(seeded: Seeded, settings: Settings) -> None:
    everywhere = page(seeded, q="interface", limit=500)
    assert everywhere["total"] > 2
    clicked = [item["id"] for item in everywhere["items"] if item["label"] == "1"]
    combined = page(seeded, q="interface", label="1", limit=2, offset=1)
    assert combined["total"] == len(clicked)
    assert [item["id"] for item in combined["items"]] == clicked[1:3]
    assert page(seeded, q="!!! ...")["total"] == 0  # no word at all matches nothing


def test_item_has_history_with_batches_predictions_annotations_and_lineage(
    seeded: Seeded, sessions: sessionmaker[Session]
) -> None:
    item_id = seeded.ids["2"]
    response = seeded.client.get(f"/v1/items/{item_id}", headers=seeded.viewer)
    assert response.status_code == 200, response.text
    item = response.json()
    assert (item["key"], item["data"]["City"]) == ("2", MOVED["2"])

    insert, update = item["history"]
    assert (insert["operation"], insert["batch"]["name"]) == ("insert", "initial")
    assert (update["operation"], update["batch"]["name"]) == ("update", "load_2")
    assert update["after"]["data"]["City"] == MOVED["2"]
    assert update["before"]["data"]["City"] == insert["after"]["data"]["City"] != MOVED["2"]

    assert [(p["model_name"], p["model_version"]) for p in item["predictions"]] == [
        ("clicks", "2"),
        ("clicks", "1"),
    ]
    (annotation,) = item["annotations"]
    assert (annotation["kind"], annotation["content"]) == ("summary", "A user from Zanzibar Quay.")

    v2, v1 = item["lineage"]
    assert (v2["model_version"], v2["mlflow_run_id"]) == ("2", "mlflow-run-of-v2")
    assert (v2["pipeline"], v2["pipeline_run_id"]) == ("trainer", seeded.run_id)
    with sessions() as session:
        snapshots = session.scalars(select(Snapshot).where(Snapshot.run_id == seeded.run_id))
        digests = {s.kind: s.digest for s in snapshots}
        batches = session.scalars(select(DataLoad.id).order_by(DataLoad.id)).all()
    assert {s["kind"]: s["digest"] for s in v2["snapshots"]} == digests
    assert set(digests) == {"training", "evaluation"}
    assert [b["id"] for b in v2["load_batches"]] == list(batches)
    assert [b["name"] for b in v2["load_batches"]] == ["initial", "load_2"]
    # Nothing, in the store or the registry, knows where clicks v1 came from.
    assert v1["model_version"] == "1"
    assert (v1["pipeline_run_id"], v1["mlflow_run_id"], v1["snapshots"]) == (None, None, [])
    assert v1["registry_error"] is None


def test_bad_parameters_are_422_problems(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    client, viewer = api_client(settings, sessions)
    items = "/v1/datasets/advertising/items"
    for path, params in [
        (items, {"limit": 0}),
        (items, {"limit": 501}),
        (items, {"offset": -1}),
        (items, {"q": "a\x00b"}),
        (items, {"q": ""}),
        (items, {"label": "x" * 201}),
        (items, {"updated_since": "yesterday"}),
        (items, {"updated_since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/items/0", {}),
        ("/v1/items/99999999999", {}),
    ]:
        response = client.get(path, params=params, headers=viewer)
        assert response.status_code == 422, (path, params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"]


def test_unknown_data_set_and_item_are_404(seeded: Seeded) -> None:
    assert seeded.client.get("/v1/datasets/nope/items", headers=seeded.viewer).status_code == 404
    assert seeded.client.get("/v1/items/999999", headers=seeded.viewer).status_code == 404


def test_browsing_needs_a_token(seeded: Seeded) -> None:
    for path in ("/v1/datasets", f"/v1/datasets/{DATASET}/items", "/v1/items/1"):
        assert seeded.client.get(path).status_code == 401


@pytest.mark.slow
def test_lineage_comes_from_the_registry_when_the_store_lacks_the_link(
    settings: Settings, sessions: sessionmaker[Session], model_name: str
) -> None:
    """A version registered by a run whose record never got the version (it failed after
    registering): the MLflow run's tag names the pipeline run, its dataset input the snapshot."""
    import mlflow
    import pandas as pd

    from mlfactory.datasets.snapshots import carve_evaluation_set, training_snapshot
    from mlfactory.training.datasets import log_training_data
    from mlfactory.training.tracking import experiment_id, use_tracking

    load_batch(sessions, DATASET, advertising_records(settings))
    digest = {}

    def snapshot(ctx: Context) -> None:
        carve_evaluation_set(ctx.sessions, DATASET, ctx.artifact_dir)  # not this run's
        digest["training"] = training_snapshot(ctx.sessions, DATASET, ctx.artifact_dir).digest

    run_id = run_pipeline(Pipeline("p", steps=(Step("s", snapshot),)), settings=settings).run_id
    client = use_tracking(settings)
    with mlflow.start_run(
        experiment_id=experiment_id(model_name, settings), tags={"mlfactory.run_id": str(run_id)}
    ) as mlflow_run:
        log_training_data(
            pd.DataFrame({"x": [1, 2]}),
            name="training",
            digest=digest["training"],
            targets="x",
            class_counts={},
            balanced_counts=None,
        )
    client.create_registered_model(model_name)
    version = client.create_model_version(
        model_name, f"runs:/{mlflow_run.info.run_id}/model", mlflow_run.info.run_id
    ).version
    with sessions() as session:
        item_id = session.scalar(select(Item.id).where(Item.key == "2"))
    predict(sessions, [(item_id, model_name, str(version), "1")])

    client_api, viewer = api_client(settings, sessions)
    (lineage,) = client_api.get(f"/v1/items/{item_id}", headers=viewer).json()["lineage"]
    assert lineage["mlflow_run_id"] == mlflow_run.info.run_id
    assert (lineage["pipeline"], lineage["pipeline_run_id"]) == ("p", run_id)
    assert [s["digest"] for s in lineage["snapshots"]] == [digest["training"]]
    assert [b["name"] for b in lineage["load_batches"]] == ["initial"]
