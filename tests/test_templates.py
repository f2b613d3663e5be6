"""The pipeline templates on real rows: the tabular one with missing values, categories, dates,
booleans and a mapped text label; the text one on French bank reviews; served with the request
schema of the declaration; drift checked on the rows a later load brings."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.api.routes import predict as predict_routes
from mlfactory.datasets.project import declarations
from mlfactory.orchestration import Pipeline, get_pipeline, run_pipeline
from mlfactory.pipelines.declared import DeclaredPipelines
from mlfactory.settings import Settings, get_settings
from mlfactory.training.classifiers import Inputs, ModelChoice, classifier

pytestmark = pytest.mark.slow
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
PASSWORD = "template-password"

VISITS = """\
datasets:
  visits:
    source: {{kind: csv, path: visits.csv}}
    key: [visit]
    label: {{column: clicked, map: {{0: stayed, 1: clicked}}, positive: clicked}}
    columns:
      visit: integer
      minutes: {{type: number, min: 0, max: 1440, nullable: true}}
      age: {{type: integer, min: 10, max: 120}}
      income: number
      country: {{type: category, nullable: true}}
      seen: date
      male: boolean
      topic: text
      clicked: {{type: integer, choices: [0, 1]}}
pipelines:
  visits:
    template: tabular_classification
    dataset: visits
    model: {model}
    metric: roc_auc
    evaluation: {{method: fixed, fraction: 0.25}}
"""


def visits_csv(advertising_csv: Path, path: Path, rows: slice) -> None:
    """The advertising rows under other names, with every 10th minutes and every 7th country
    missing, Male as yes/no, and the click as 0/1."""
    with advertising_csv.open(newline="") as file:
        source = list(csv.DictReader(file))
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["visit", "minutes", "age", "income", "country", "seen", "male", "topic", "clicked"]
        )
        for number, row in list(enumerate(source))[rows]:
            writer.writerow(
                [
                    number,
                    "" if number % 10 == 0 else row["Daily Time Spent on Site"],
                    row["Age"],
                    row["Area Income"],
                    "" if number % 7 == 0 else row["Country"],
                    row["Timestamp"],
                    "yes" if row["Male"] == "1" else "no",
                    row["Ad Topic Line"],
                    row["Clicked on Ad"],
                ]
            )


def project(settings: Settings, tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "mlfactory.yaml"
    path.write_text(text)
    return settings.model_copy(update={"project_file": path})


def pipeline_of(settings: Settings, name: str) -> Pipeline:
    from mlfactory.pipelines.templates import build_declared

    declared = declarations(settings)
    return build_declared(declared.pipelines[name], declared)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make a project file the process's own (``MLF_PROJECT_FILE``), as a user's shell would:
    its pipelines are then registered, served by the API and listed by the CLI."""

    def use(settings: Settings) -> None:
        monkeypatch.setenv("MLF_PROJECT_FILE", str(settings.project_file))
        get_settings.cache_clear()
        predict_routes._serving.cache_clear()

    yield use
    monkeypatch.delenv("MLF_PROJECT_FILE", raising=False)
    get_settings.cache_clear()
    predict_routes._serving.cache_clear()


@sqlite_only
def test_tabular_template_with_missing_values_categories_dates_booleans_and_a_text_label(
    settings: Settings, advertising_csv: Path, tmp_path: Path, registered: Any
) -> None:
    visits_csv(advertising_csv, tmp_path / "visits.csv", slice(0, 800))
    settings = project(settings, tmp_path, VISITS.format(model="hist_gradient_boosting"))
    registered(settings)
    pipeline = get_pipeline("visits")

    first = run_pipeline(pipeline, settings=settings)

    assert first.status == "success", first.error
    assert first.outputs["train"]["model_version"] == "1"
    evaluated = first.outputs["evaluate"]
    assert set(evaluated) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert evaluated["roc_auc"] > 0.9  # the usage figures carry the signal, missing or not
    assert first.outputs["predict"]["predicted"] == 800
    assert first.outputs["summary"]["class_counts"]["test"].keys() == {"clicked", "stayed"}

    # Serving: the request schema is the declaration's.
    app = create_app(settings)
    add_user(app.state.sessions, "alice", PASSWORD, "user")
    with TestClient(app) as client:
        token = client.post("/token", data={"username": "alice", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        record = {
            "age": 35,
            "income": 61833.9,
            "country": "Tunisia",
            "seen": "2016-03-27 00:53:11",
            "male": False,
        }  # no minutes: nullable, imputed as in training
        answer = client.post(
            "/v1/pipelines/visits/predict", json={"records": [record]}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert prediction["label"] in ("clicked", "stayed")
        assert set(prediction["probabilities"]) == {"clicked", "stayed"}

        bad = [
            {key: value for key, value in record.items() if key != "age"},
            {**record, "seen": "soon"},
            {**record, "male": "no"},
            {**record, "minutes": 2000},
            {**record, "colour": "red"},
        ]
        refused = client.post(
            "/v1/pipelines/visits/predict", json={"records": bad}, headers=headers
        )
    assert refused.status_code == 422
    assert [(e["record"], e["field"], e["msg"]) for e in refused.json()["errors"]] == [
        (0, "age", "field required"),
        (1, "seen", "'soon' is not an ISO 8601 date or date and time"),
        (2, "male", "'no' is not true or false"),
        (3, "minutes", "2000 is above the maximum 1440"),
        (4, "colour", "unknown field: not a declared column"),
    ]

    # A later load brings 200 new rows: the drift step compares them with the last training data.
    visits_csv(advertising_csv, tmp_path / "visits.csv", slice(0, 1000))
    second = run_pipeline(pipeline, settings=settings)
    assert second.status == "success", second.error
    drift = second.outputs["drift"]
    assert (drift["checked"], drift["current_rows"]) == (True, 200)
    assert drift["severity"] in ("ok", "warning", "alert", "critical")
    assert second.outputs["summary"]["drift"]["report"] == drift["drift_report_id"]
    assert (
        second.outputs["snapshot"]["evaluation"]["digest"]
        == (
            first.outputs["snapshot"]["evaluation"]["digest"]  # the fixed set, carved once
        )
    )


@pytest.mark.parametrize("kind", ["logistic_regression", "hist_gradient_boosting", "random_forest"])
def test_each_model_takes_missing_values_categories_and_dates(kind: str) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "minutes": np.where(rng.random(200) < 0.1, np.nan, rng.normal(60, 10, 200)),
            "male": rng.integers(0, 2, 200).astype("float64"),
            "country": pd.Series(rng.choice(["FR", "TN"], 200)).where(rng.random(200) >= 0.1),
            "seen": pd.to_datetime(rng.integers(1.45e9, 1.46e9, 200), unit="s", utc=True),
        }
    )
    labels = (frame["minutes"].fillna(60) > 60).map({True: "long", False: "short"})
    inputs = Inputs.of(
        {"minutes": "number", "male": "boolean", "country": "category", "seen": "date"},
        nullable=["minutes", "country"],
    )
    model = classifier(inputs, ModelChoice(kind=kind, n_estimators=20))
    model.fit(frame, labels)
    unseen = frame.head(3).assign(country=["XX", np.nan, "FR"])
    assert list(model.predict(unseen)) == list(model.predict(unseen))  # deterministic, no error
    assert model.score(frame, labels) > 0.8


def test_all_numbers_that_cannot_be_missing_make_a_plain_scaler_and_model() -> None:
    inputs = Inputs.of({"age": "integer", "income": "number"})
    assert [name for name, _ in classifier(inputs, ModelChoice()).steps] == ["scale", "model"]


@sqlite_only
def test_text_template_on_french_bank_reviews(
    settings: Settings, datasets_dir: Path, tmp_path: Path, model_name: str
) -> None:
    reviews = datasets_dir / "reviews" / "banks_fr_trustpilot" / "reviews.csv"
    text = f"""\
datasets:
  bank_reviews:
    source: {{kind: csv, path: {reviews}}}
    other_columns: drop
    key: [Company, ""]  # the file numbers the reviews of each company
    label: Rating
    columns:
      "": integer
      Company: category
      Title: {{type: text, nullable: true}}
      Experience: text
      Rating: {{type: integer, min: 1, max: 5}}
pipelines:
  bank_reviews:
    template: text_classification
    dataset: bank_reviews
    features: [Company]
    class_weight: balanced
"""
    settings = project(settings, tmp_path, text)
    pipeline = pipeline_of(settings, "bank_reviews")

    outcome = run_pipeline(pipeline, {"model_name": model_name}, settings=settings)

    assert outcome.status == "success", outcome.error
    assert outcome.outputs["load"]["rows_inserted"] == 2521
    assert outcome.outputs["promote"]["metric"] == "macro_f1"  # five classes
    assert outcome.outputs["evaluate"]["accuracy"] > 0.7  # 83 % of the reviews are 5 stars
    assert outcome.outputs["train"]["model_version"] == "1"
    serving = pipeline.serving
    assert serving is not None and serving.to_features is not None
    frame = serving.to_features(
        [{"Company": "Floa Bank", "Experience": "Service très rapide, merci"}],
        ["Company", "Title", "Experience"],
    )
    assert frame.to_dict("records") == [
        {"Company": "Floa Bank", "Title": "", "Experience": "Service très rapide, merci"}
    ]


def test_the_declared_collection_lists_and_builds_the_project_pipelines(
    settings: Settings, tmp_path: Path, registered: Any
) -> None:
    registered(project(settings, tmp_path, VISITS.format(model="random_forest")))
    collection = DeclaredPipelines()
    assert {"advertising", "products", "visits"} <= set(collection.names())
    assert collection.get("visits").params.model_fields["model_name"].default == "visits"
    assert get_pipeline("visits").tags[0] == "tabular_classification"


def test_texts_as_sentence_embeddings(datasets_dir: Path) -> None:
    """``text_features: embeddings``: the packaged all-MiniLM-L6-v2, offline, in the pipeline."""
    reviews = pd.read_csv(datasets_dir / "reviews" / "banks_fr_trustpilot" / "reviews.csv")
    sample = reviews.groupby("Rating").head(12)  # 60 reviews, every rating
    frame = sample[["Company", "Experience"]].reset_index(drop=True)
    inputs = Inputs.of({"Company": "category", "Experience": "text"})
    model = classifier(inputs, ModelChoice(c=10.0), text_features="embeddings")
    model.fit(frame, sample["Rating"].tolist())
    assert model.named_steps["features"].named_transformers_["embeddings"].columns == (
        "Experience",
    )
    assert model.score(frame, sample["Rating"].tolist()) > 0.6
