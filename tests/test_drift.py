"""Drift detection on real data: the advertising clicks and arXiv papers.

Two random halves of one data set must not drift; a shifted or filtered current set must, on
the columns that were changed, with a severity that grows with the shift. Both branches of the
test choice are run: up to 1,000 reference rows (K-S, chi-squared) and above (normed
Wasserstein, Jensen-Shannon), the latter on advertising rows replicated with a little noise.
"""

from __future__ import annotations

import ast
import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlfactory.errors import UserError
from mlfactory.monitoring import (
    DriftInputError,
    DriftOptions,
    DriftReport,
    Severity,
    compare,
    embedding_projection,
    label_column,
    psi,
    psi_rows,
    render_html,
    severity,
    text_length_features,
    write_report,
)

NUMERIC = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage"]
COLUMNS = [*NUMERIC, "Male", "Clicked on Ad"]


@pytest.fixture(scope="module")
def advertising(advertising_csv: Path) -> pd.DataFrame:
    return pd.read_csv(advertising_csv)


@pytest.fixture(scope="module")
def arxiv(datasets_dir: Path) -> pd.DataFrame:
    """Text-length features and the primary subject of each paper."""
    papers = pd.read_csv(datasets_dir / "arxiv" / "arxiv_data.csv")
    features = text_length_features(papers, ["titles", "summaries"])
    features["primary_term"] = papers["terms"].map(lambda terms: ast.literal_eval(terms)[0])
    features["summaries"] = papers["summaries"]
    return features


ARXIV_GROUPS = {
    "text length": ["titles_chars", "titles_words", "summaries_chars", "summaries_words"],
    "term mix": ["primary_term"],
}
ARXIV_COLUMNS = [*ARXIV_GROUPS["text length"], "primary_term"]


def halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    middle = len(frame) // 2
    return frame.iloc[order[:middle]], frame.iloc[order[middle:]].copy()


def replicated(frame: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """``copies`` copies of the rows, numeric columns jittered by 1 % of their std."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(copies):
        part = frame.copy()
        for column in NUMERIC:
            part[column] = part[column] + rng.normal(0, 0.01 * frame[column].std(), len(frame))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def by_column(report: DriftReport) -> dict:
    return {result.column: result for result in report.columns}


def by_group(report: DriftReport) -> dict:
    return {group.group: group for group in report.groups}


# -- small samples (reference <= 1,000 rows): K-S and chi-squared ---------------------------


def test_random_halves_of_advertising_do_not_drift(advertising: pd.DataFrame) -> None:
    flagged = 0
    for seed in range(5):
        reference, current = halves(advertising, seed)
        report = compare(reference, current, columns=COLUMNS)
        assert not report.dataset_drift
        assert report.severity == Severity.NONE
        tests = {result.column: result.test for result in report.columns}
        assert tests == {**dict.fromkeys(NUMERIC, "ks"), "Male": "chi2", "Clicked on Ad": "chi2"}
        flagged += len(report.drifted_columns)
    # 30 tests at p < 0.05: a couple of false alarms at most
    assert flagged <= 3


def test_age_shift_is_flagged_and_severity_rises_with_it(advertising: pd.DataFrame) -> None:
    reference, current = halves(advertising, 0)
    reports = []
    for years in (0, 2, 3, 15):
        shifted = current.assign(Age=current["Age"] + years)
        reports.append(compare(reference, shifted, columns=COLUMNS))
    assert reports[0].drifted_columns == []
    for report in reports[1:]:
        assert report.drifted_columns == ["Age"]
        assert not report.dataset_drift  # 1 of 6 columns < the default share of 0.5
    age = [by_group(report)["Age"] for report in reports]
    assert all(a.psi < b.psi for a, b in pairwise(age))
    levels = [group.severity.level for group in age]
    assert levels == sorted(levels)
    assert (age[0].severity, age[-1].severity) == (Severity.NONE, Severity.CRITICAL)
    assert reports[-1].severity == Severity.CRITICAL
    # the exporter's rows are the groups' figures
    assert ("Age", age[-1].psi, "critical") in psi_rows(reports[-1])
    assert {row[0] for row in psi_rows(reports[-1])} == set(COLUMNS)
    # the share of drifting columns that makes data set drift is configurable
    strict = compare(
        reference,
        current.assign(Age=current["Age"] + 15),
        columns=COLUMNS,
        options=DriftOptions(drift_share=1 / 6),  # "at least" this share
    )
    assert strict.dataset_drift and strict.drifted_share == pytest.approx(1 / 6)


def test_only_clicking_users_drift_the_data_set(advertising: pd.DataFrame) -> None:
    reference, current = halves(advertising, 1)
    clickers = current[current["Clicked on Ad"] == 1]
    report = compare(reference, clickers, columns=[*NUMERIC, "Male"])
    assert set(NUMERIC) <= set(report.drifted_columns)
    assert report.dataset_drift
    assert report.severity == Severity.CRITICAL


def test_two_valued_column_gets_evidentlys_z_test_p_value(advertising: pd.DataFrame) -> None:
    """For two values the chi-squared test of homogeneity is the two-proportion z-test."""
    reference, current = halves(advertising, 2)
    current = current[current["Age"] > 40]
    report = compare(reference, current, columns=["Male"])
    n1, n2 = len(reference), len(current)
    p1, p2 = reference["Male"].mean(), current["Male"].mean()
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    male = by_column(report)["Male"]
    assert (male.kind, male.test) == ("categorical", "chi2")
    assert male.score == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert male.summary["1"] == pytest.approx((p1, p2))


def test_missing_values_are_left_out(advertising: pd.DataFrame) -> None:
    """An integer column that gains missing values turns float: 1.0 must still match 1."""
    reference, current = halves(advertising, 0)
    holes = current.assign(Male=current["Male"].where(current.index % 10 != 0))
    assert holes["Male"].dtype == float
    whole, holed = (
        by_column(compare(reference, frame, columns=["Male"]))["Male"] for frame in (current, holes)
    )
    assert set(holed.summary) == {"0", "1"}
    assert holed.current_rows == holes["Male"].notna().sum() < len(holes)
    assert not holed.drifted and not whole.drifted


def test_predicted_label_mix(advertising: pd.DataFrame) -> None:
    """A real model's predictions: stable on a random half, shifted on older users."""
    train, rest = halves(advertising, 3)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    model.fit(train[NUMERIC], train["Clicked on Ad"])
    reference = label_column(model.predict(train[NUMERIC])).to_frame()
    same = label_column(model.predict(rest[NUMERIC])).to_frame()
    older = label_column(model.predict(rest.loc[rest["Age"] > 45, NUMERIC])).to_frame()
    groups = {"predicted label": ["predicted_label"]}
    stable = compare(reference, same, groups=groups)
    shifted = compare(reference, older, groups=groups)
    assert by_column(stable)["predicted_label"].kind == "categorical"
    assert stable.drifted_columns == [] and stable.severity == Severity.NONE
    assert shifted.drifted_columns == ["predicted_label"]
    mix = by_column(shifted)["predicted_label"].summary
    assert mix["1"][1] > mix["1"][0] + 0.2  # far more predicted clicks among older users
    assert shifted.severity.level >= Severity.ALERT.level


# -- large samples (reference > 1,000 rows): Wasserstein and Jensen-Shannon -----------------


def test_large_samples_switch_to_distances(advertising: pd.DataFrame) -> None:
    big = replicated(advertising, copies=3, seed=0)
    reference, current = halves(big, 4)
    stable = compare(reference, current, columns=COLUMNS)
    tests = {result.column: (result.test, result.threshold) for result in stable.columns}
    assert tests == {
        **dict.fromkeys(NUMERIC, ("wasserstein_normed", 0.1)),
        "Male": ("jensen_shannon", 0.1),
        "Clicked on Ad": ("jensen_shannon", 0.1),
    }
    assert stable.drifted_columns == [] and not stable.dataset_drift

    age_std = reference["Age"].std(ddof=0)
    small_shift = compare(reference, current.assign(Age=current["Age"] + 0.05 * age_std))
    large_shift = compare(reference, current.assign(Age=current["Age"] + 0.25 * age_std))
    assert "Age" not in small_shift.drifted_columns
    assert "Age" in large_shift.drifted_columns
    # a shift of every value by c moves the Wasserstein distance by about c
    assert by_column(large_shift)["Age"].score == pytest.approx(0.25, abs=0.03)

    men = compare(reference, current[current["Male"] == 1], columns=COLUMNS)
    male = by_column(men)["Male"]
    assert male.drifted and male.score >= 0.1


def test_the_branch_depends_on_reference_size(advertising: pd.DataFrame) -> None:
    current = advertising.sample(300, random_state=5)
    at_limit = compare(advertising, current, columns=["Age"])
    one_more = compare(pd.concat([advertising, advertising.iloc[:1]]), current, columns=["Age"])
    assert by_column(at_limit)["Age"].test == "ks"
    assert by_column(one_more)["Age"].test == "wasserstein_normed"


# -- text: arXiv papers ---------------------------------------------------------------------


def test_arxiv_halves_are_stable_and_one_subject_drifts(arxiv: pd.DataFrame) -> None:
    reference, current = halves(arxiv, 0)
    stable = compare(reference, current, columns=ARXIV_COLUMNS, groups=ARXIV_GROUPS)
    assert not stable.dataset_drift
    assert stable.severity == Severity.NONE
    assert "primary_term" not in stable.drifted_columns

    vision = current[current["primary_term"] == "cs.CV"]
    shifted = compare(reference, vision, columns=ARXIV_COLUMNS, groups=ARXIV_GROUPS)
    assert "primary_term" in shifted.drifted_columns
    assert by_column(shifted)["primary_term"].summary["cs.CV"][1] == 1.0
    assert by_group(shifted)["term mix"].severity == Severity.CRITICAL
    assert shifted.severity == Severity.CRITICAL


def test_embedding_projection_drift(arxiv: pd.DataFrame) -> None:
    """TF-IDF vectors of the abstracts stand in for embeddings: 1,000 wide for 600 reference
    rows, where projecting the rows that fitted the axes would flag drift between halves."""
    vectors = TfidfVectorizer(max_features=1000, stop_words="english", sublinear_tf=True)
    embeddings = vectors.fit_transform(arxiv["summaries"]).toarray()
    order = np.random.default_rng(0).permutation(len(arxiv))
    reference_rows, current_rows = order[:600], order[600:]
    vision_rows = current_rows[arxiv["primary_term"].to_numpy()[current_rows] == "cs.CV"]

    def embedding_report(rows: np.ndarray) -> DriftReport:
        reference, current = embedding_projection(
            embeddings[reference_rows], embeddings[rows], components=5
        )
        assert list(current.columns) == [f"embedding_pc{i}" for i in range(1, 6)]
        assert len(reference) == 300  # the half of the reference that did not fit the axes
        return compare(reference, current, groups={"embedding": list(current.columns)})

    stable = embedding_report(current_rows)
    vision = embedding_report(vision_rows)
    assert stable.drifted_columns == []
    assert stable.severity.level <= Severity.WARNING.level
    assert vision.severity == Severity.CRITICAL
    assert by_group(vision)["embedding"].psi > 3 * by_group(stable)["embedding"].psi
    assert "embedding_pc1" in vision.drifted_columns


# -- PSI by hand ----------------------------------------------------------------------------


def test_numeric_psi_matches_a_hand_computation() -> None:
    # quartiles of 1..8 (linear interpolation): 2.75, 4.5, 6.25 -> bins {1,2} {3,4} {5,6} {7,8}
    reference = pd.Series([1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    current = pd.Series([1, 1, 1, 5, 7, 8, 9, 10], dtype=float)  # bins: 3, 0, 1, 4 of 8
    options = DriftOptions(psi_bins=4, psi_epsilon=1e-4)
    expected = (
        (3 / 8 - 1 / 4) * math.log((3 / 8) / (1 / 4))
        + (1e-4 - 1 / 4) * math.log(1e-4 / (1 / 4))
        + (1 / 8 - 1 / 4) * math.log((1 / 8) / (1 / 4))
        + (4 / 8 - 1 / 4) * math.log((4 / 8) / (1 / 4))
    )
    assert psi(reference, current, "numeric", options) == pytest.approx(expected, rel=1e-12)
    assert psi(reference, reference, "numeric", options) == 0.0


def test_categorical_psi_matches_a_hand_computation() -> None:
    reference = pd.Series(["a", "a", "b", "c"])
    current = pd.Series(["a", "b", "b", "d"])  # c vanishes, d is new
    options = DriftOptions(psi_epsilon=1e-3)
    expected = (
        (1 / 4 - 2 / 4) * math.log((1 / 4) / (2 / 4))
        + (2 / 4 - 1 / 4) * math.log((2 / 4) / (1 / 4))
        + (1e-3 - 1 / 4) * math.log(1e-3 / (1 / 4))
        + (1 / 4 - 1e-3) * math.log((1 / 4) / 1e-3)
    )
    assert psi(reference, current, "categorical", options) == pytest.approx(expected, rel=1e-12)


def test_severity_levels() -> None:
    options = DriftOptions()
    assert [severity(value, options) for value in (0.0, 0.099, 0.1, 0.2, 0.3, 2.0)] == [
        Severity.NONE,
        Severity.NONE,
        Severity.WARNING,
        Severity.ALERT,
        Severity.CRITICAL,
        Severity.CRITICAL,
    ]
    assert [level.level for level in Severity] == [0, 1, 2, 3]


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error(advertising: pd.DataFrame) -> None:
    reference, current = halves(advertising, 0)
    with pytest.raises(DriftInputError, match="current data has no rows"):
        compare(reference, current.iloc[:0], columns=COLUMNS)
    with pytest.raises(DriftInputError, match="reference data has no rows"):
        compare(reference.iloc[:0], current, columns=COLUMNS)
    with pytest.raises(DriftInputError, match=r"missing from the current data: \['Age'\]"):
        compare(reference, current.drop(columns="Age"), columns=COLUMNS)
    with pytest.raises(DriftInputError, match=r"no values in the current data: \['Age'\]"):
        compare(reference, current.assign(Age=np.nan), columns=COLUMNS)
    with pytest.raises(DriftInputError, match=r"missing from the reference data: \['Salary'\]"):
        compare(reference, current, columns=COLUMNS, groups={"money": ["Salary"]})
    with pytest.raises(DriftInputError, match=r"feature groups with no columns: \['money'\]"):
        compare(reference, current, columns=COLUMNS, groups={"money": []})
    with pytest.raises(DriftInputError, match="the string 'Age'"):
        compare(reference, current, columns="Age")
    with pytest.raises(DriftInputError, match=r"categorical but not compared: \['City'\]"):
        compare(reference, current, columns=COLUMNS, categorical=["City"])
    with pytest.raises(DriftInputError, match="drift_share"):
        DriftOptions(drift_share=0)
    with pytest.raises(DriftInputError, match="differ in width"):
        embedding_projection(np.ones((10, 4)), np.ones((3, 5)))
    with pytest.raises(DriftInputError, match="cannot give 8 components"):
        embedding_projection(np.ones((10, 4)), np.ones((3, 4)), components=8)
    # interfaces print user errors on one line
    assert issubclass(DriftInputError, UserError)


# -- report: HTML and JSON ------------------------------------------------------------------


EVIL = '<script>alert("drift")</script>'


def hostile_report(advertising: pd.DataFrame) -> DriftReport:
    """A malicious column name, category value, group name and context label."""
    reference, current = halves(advertising, 0)
    reference = reference.rename(columns={"Age": EVIL})
    current = current.rename(columns={"Age": EVIL})
    current["Country"] = current["Country"].where(current.index % 2 == 0, EVIL)
    report = compare(
        reference,
        current,
        columns=[EVIL, "Male", "Country"],
        groups={EVIL: [EVIL], "country": ["Country"]},
        context={"model": EVIL, "pipeline": "advertising"},
    )
    return report


def test_html_escapes_names_values_and_context(advertising: pd.DataFrame) -> None:
    report = hostile_report(advertising)
    page = render_html(report, title=EVIL)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&#34;drift&#34;)&lt;/script&gt;") >= 4
    assert "Data set drift" in page and "advertising" in page
    for group in report.groups:
        assert f"{group.psi:.4f}" in page


def test_json_round_trips_and_both_files_are_written(
    advertising: pd.DataFrame, tmp_path: Path
) -> None:
    report = hostile_report(advertising)
    again = DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.severity is report.severity and isinstance(again.groups[0].severity, Severity)

    json_path, html_path = write_report(report, tmp_path / "reports", stem="daily")
    assert (json_path.name, html_path.name) == ("daily.json", "daily.html")
    written = json.loads(json_path.read_text("utf-8"))
    assert written["format"] == "mlfactory.drift/1"
    assert DriftReport.from_dict(written) == report
    assert "<script" not in html_path.read_text("utf-8")
    with pytest.raises(DriftInputError, match="not a drift report"):
        DriftReport.from_dict({"format": "something else"})
