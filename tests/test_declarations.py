"""Project files: the built-in declarations, a project's own, and mistakes named by file, line and
field."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from mlfactory.datasets.declarations import Template
from mlfactory.datasets.project import DeclarationError, declarations
from mlfactory.orchestration import get_pipeline
from mlfactory.orchestration.registry import pipeline_names
from mlfactory.settings import Settings

CHURN = """\
datasets:
  churn:
    source: {kind: csv, path: churn.csv}
    key: [CustomerId]
    label: Exited
    columns:
      CustomerId: integer
      Geography: {type: category, choices: [France, Spain]}
      Age: {type: integer, min: 18, nullable: true}
      Exited: {type: integer, choices: [0, 1]}
pipelines:
  churn:
    template: tabular_classification
    dataset: churn
    metric: roc_auc
    schedule: "@daily"
"""


def project(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "mlfactory.yaml"
    path.write_text(text)
    return Settings(home=tmp_path / "home", project_file=path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(DeclarationError) as caught:
        declarations(project(tmp_path, text))
    return str(caught.value)


def test_the_builtin_data_sets_and_pipelines_are_declarations(tmp_path: Path) -> None:
    declared = declarations(Settings(home=tmp_path))
    assert {"advertising", "products", "arxiv"} <= set(declared.datasets)
    assert {"advertising", "products"} <= set(declared.pipelines)
    assert {"advertising", "products"} <= set(pipeline_names())
    advertising = declared.datasets["advertising"]
    assert advertising.columns["Age"].max == 120 and advertising.label_type == "integer"
    assert declared.pipelines["products"].build == "mlfactory.pipelines.products:build"
    assert get_pipeline("products").name == "products"


def test_a_project_declares_a_data_set_and_a_pipeline(tmp_path: Path) -> None:
    declared = declarations(project(tmp_path, CHURN))
    churn = declared.datasets["churn"]
    assert churn.key == ["CustomerId"] and churn.label is not None
    assert churn.columns["Age"].nullable and churn.columns["Age"].min == 18
    assert declared.folders["churn"] == tmp_path
    assert declared.pipelines["churn"].template == "tabular_classification"
    assert "advertising" in declared.datasets  # the built-in ones are still there


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("Age: {type: integer,", "Age: {type: int,"),
            ":9: datasets.churn.columns.Age.type: Input",
        ),
        (("min: 18", "min: old"), ":9: datasets.churn.columns.Age.min"),
        (("[CustomerId]", "[Id]"), ":2: datasets.churn: key column 'Id' is not a declared column"),
        (("dataset: churn", "dataset: nope"), ":14: pipelines.churn.dataset: unknown data set"),
        (("metric: roc_auc", "metric: speed"), ":15: pipelines.churn.metric: Input should be"),
        (("@daily", "every day"), ":16: pipelines.churn.schedule: 'every day' is neither"),
        (("    source: {kind: csv, path: churn.csv}\n", ""), ":2: datasets.churn.source: Field"),
        (("label: Exited", "label: Gone"), ":2: datasets.churn: label column 'Gone' is not a"),
        (("churn:\n    source", "advertising:\n    source"), ":2: datasets.advertising: 'adver"),
        (("key: [CustomerId]", "key: line"), ":2: datasets.churn: key `line` only with mode"),
        (("path: churn.csv", "pth: churn.csv"), ":3: datasets.churn.source: a csv source has no"),
    ],
)
def test_a_mistake_names_the_file_the_line_and_the_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    message = error(tmp_path, CHURN.replace(*change))
    assert message.startswith(str(tmp_path / "mlfactory.yaml") + ":"), message
    assert expected in message, message
    assert "\n" not in message


def test_features_must_be_usable_columns(tmp_path: Path) -> None:
    text = CHURN + "    features: [Geography, CustomerId, Exited, Missing]\n"
    assert "pipelines.churn.features.2: 'Exited' is the label" in error(tmp_path, text)
    text = CHURN.replace("Geography: {type", "Surname: text\n      Geography: {type")
    text += "    features: [Surname]\n"
    assert "'Surname' is text; features are" in error(tmp_path, text)


def test_yaml_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    message = error(tmp_path, CHURN.replace("choices: [France, Spain]", "choices: [France"))
    assert message.startswith(f"{tmp_path / 'mlfactory.yaml'}:") and "not valid YAML" in message


def test_a_missing_project_file_is_an_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, project_file=tmp_path / "nope.yaml")
    with pytest.raises(DeclarationError, match="no such project file"):
        declarations(settings)


def test_every_declarable_template_builds(tmp_path: Path) -> None:
    """The templates the declaration schema offers are the ones pipelines/templates builds."""
    text = CHURN + "  churn_text:\n    template: text_classification\n    dataset: churn\n"
    text = text.replace(
        "Geography: {type", "Note: {type: text, nullable: true}\n      Geography: {type"
    )
    declared = declarations(project(tmp_path, text))
    from mlfactory.pipelines.templates import build_declared

    built = {
        declared.pipelines[name].template: build_declared(declared.pipelines[name], declared)
        for name in ("churn", "churn_text")
    }
    assert set(built) == set(get_args(Template))
    assert built["text_classification"].ordered_steps()[0].name == "load"


def test_anchors_and_merge_keys_are_read(tmp_path: Path) -> None:
    text = CHURN.replace(
        "      Age: {type: integer, min: 18, nullable: true}",
        "      Age: &age {type: integer, min: 18, nullable: true}\n"
        "      Tenure: {<<: *age, min: 0}",
    )
    declared = declarations(project(tmp_path, text))
    tenure = declared.datasets["churn"].columns["Tenure"]
    assert (tenure.type, tenure.min, tenure.nullable) == ("integer", 0, True)


def test_a_declared_pipeline_may_not_take_the_name_of_one_in_code(tmp_path: Path) -> None:
    text = CHURN.replace("pipelines:\n  churn:", "pipelines:\n  arxiv_train:")
    assert (
        ":12: pipelines.arxiv_train: 'arxiv_train' is already the name of a pipeline in code"
        in (error(tmp_path, text))
    )


def test_values_written_in_yaml_take_the_column_type(tmp_path: Path) -> None:
    text = CHURN.replace("choices: [France, Spain]", "choices: [1, 2]").replace(
        "label: Exited", "label: {column: Exited, map: {0: stayed, 1: left}, positive: left}"
    )
    churn = declarations(project(tmp_path, text)).datasets["churn"]
    assert churn.columns["Geography"].choices == ["1", "2"]  # a category holds text
    assert churn.label is not None and churn.label.map == {0: "stayed", 1: "left"}
    assert churn.label_type == "category" and churn.label.positive == "left"
    bad = CHURN.replace(
        "Exited: {type: integer, choices: [0, 1]}", "Exited: {type: integer, choices: [0, 1.5]}"
    )
    assert "choice 1.5 is not an integer" in error(tmp_path, bad)


def test_a_shared_path_stays_inside_the_data_sets_folder(tmp_path: Path) -> None:
    text = CHURN.replace(
        "source: {kind: csv, path: churn.csv}",
        "source: {kind: csv, url: 'https://example.org/x.csv', sha256: '"
        + "a" * 64
        + "', shared: ../../etc/passwd}",
    )
    assert "must be a path inside MLF_DATASETS_DIR" in error(tmp_path, text)


@pytest.mark.parametrize(
    ("column", "given", "stored_or_error"),
    [
        ({"type": "integer"}, "9007199254740992", 9007199254740992),  # 2**53: still exact
        ({"type": "integer"}, "9007199254740993", "is beyond ±9,007,199,254,740,992"),
        ({"type": "integer"}, "9" * 400, "is beyond ±9,007,199,254,740,992"),
        ({"type": "number"}, "1e400", "is not a finite number"),
        (
            {"type": "date", "max": "2024-01-01"},
            "2024-01-01T03:00+05:00",
            "2024-01-01T03:00:00+05:00",
        ),
        ({"type": "date", "max": "2024-01-01"}, "2024-01-01T03:00+00:00", "is above the maximum"),
        ({"type": "category"}, "  Lyon ", "Lyon"),
        ({"type": "boolean", "nullable": True}, "   ", None),
    ],
)
def test_source_values_are_typed_exactly(column: dict, given: str, stored_or_error: object) -> None:
    from datetime import date

    from mlfactory.datasets.columns import ColumnReader
    from mlfactory.datasets.declarations import Column

    if column.get("max") == "2024-01-01":
        column = {**column, "max": date(2024, 1, 1)}
    reader = ColumnReader("x", Column.model_validate(column))
    if isinstance(stored_or_error, str) and stored_or_error.startswith("is "):
        with pytest.raises(
            ValueError, match=stored_or_error.replace("(", r"\(").replace(")", r"\)")
        ):
            reader.from_source(given)
    else:
        assert reader.from_source(given) == stored_or_error
