"""The audit trail, drift reports and the store's Prometheus gauges through the API, on SQLite
and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.monitoring import compare, write_report
from mlfactory.settings import Settings
from mlfactory.store import DriftCheck
from test_api_runs import Api, demo, gated, make_api, run


@pytest.fixture
def api(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Api]:
    yield make_api(settings, sessions, demo, gated)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text``."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if found and ",".join(sorted(found.group(1).split(","))) == wanted:
            return float(found.group(2))
    raise AssertionError(f"no sample {name}{{{wanted}}} in the scrape")


def test_logins_and_run_triggers_are_audited_and_only_admins_read_the_trail(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    refused = api.client.post("/token", data={"username": "viewer", "password": "wrong"})
    assert refused.status_code == 401
    unknown = api.client.post("/token", data={"username": "nobody", "password": "guess"})
    assert unknown.status_code == 401  # not audited: anybody could fill the trail with names
    started = api.client.post(
        "/v1/pipelines/demo/runs", json={"params": {"rate": 0.3}}, headers=api.admin
    )
    assert started.status_code == 202
    assert api.client.get("/v1/audit", headers=api.viewer).status_code == 403

    trail = api.client.get("/v1/audit", headers=api.admin).json()
    actions = [(entry["actor"], entry["action"]) for entry in trail["entries"]]
    assert actions == [  # newest first
        ("admin", "run.trigger"),
        ("viewer", "login.failed"),
        ("admin", "login"),
        ("viewer", "login"),
    ]
    trigger = trail["entries"][0]
    assert trigger["target"] == "pipeline:demo"
    assert trigger["after"]["run_id"] == started.json()["run_id"]
    assert trigger["after"]["params"]["rate"] == 0.3
    logins = api.client.get("/v1/audit", params={"action": "login"}, headers=api.admin).json()
    assert (logins["total"], {e["actor"] for e in logins["entries"]}) == (2, {"viewer", "admin"})


def test_the_latest_drift_report_per_data_set_is_served_and_exported(
    api: Api, sessions: sessionmaker[Session], settings: Settings, advertising_csv
) -> None:
    frame = pd.read_csv(advertising_csv)
    reference = frame[["Age", "Daily Time Spent on Site"]].iloc[:500]
    shifted = frame[["Age", "Daily Time Spent on Site"]].iloc[500:].assign(Age=lambda f: f.Age + 15)
    assert api.client.get("/v1/drift", headers=api.viewer).json() == []
    ids = []
    for current in (reference, shifted):  # an older report, then the latest
        report = compare(reference, current, groups={"age": ["Age"]})
        _, html = write_report(report, settings.artifacts_dir / f"drift{len(ids)}")
        with sessions.begin() as session:
            check = DriftCheck(
                dataset="advertising",
                pipeline="advertising_monitor",
                severity=str(report.severity),
                dataset_drift=report.dataset_drift,
                report=report.to_dict(),
                html_path=str(html),
            )
            session.add(check)
            session.flush()
            ids.append(check.id)

    latest = api.client.get("/v1/drift", headers=api.viewer).json()
    assert [entry["id"] for entry in latest] == [ids[1]]
    assert latest[0]["severity"] == "critical"
    assert latest[0]["psi"]["age"] == pytest.approx(report.groups[0].psi)
    detail = api.client.get(f"/v1/drift/{ids[1]}", headers=api.viewer).json()
    assert "Age" in [column["column"] for column in detail["report"]["columns"]]
    page = api.client.get(f"/v1/drift/{ids[1]}/html", headers=api.viewer)
    assert page.status_code == 200 and "Age" in page.text
    assert api.client.get("/v1/drift/424242", headers=api.viewer).status_code == 404
    with sessions.begin() as session:
        session.get_one(DriftCheck, ids[0]).html_path = "/etc/passwd"  # not a report of ours
    assert api.client.get(f"/v1/drift/{ids[0]}/html", headers=api.viewer).status_code == 404

    scraped = api.client.get("/metrics", headers=api.viewer).text
    assert metric(scraped, "mlfactory_drift_psi", dataset="advertising", group="age") == (
        pytest.approx(report.groups[0].psi)
    )
    assert metric(scraped, "mlfactory_drift_severity", dataset="advertising", group="age") == 3
    assert metric(scraped, "mlfactory_dataset_drift", dataset="advertising") == float(
        report.dataset_drift
    )


def test_runs_metrics_and_table_sizes_are_exported(api: Api, settings: Settings) -> None:
    run(settings)
    run(settings, fail=True)
    scraped = api.client.get("/metrics", headers=api.viewer).text
    assert metric(scraped, "mlfactory_run_duration_seconds", pipeline="demo", status="failed") > 0
    assert (
        metric(
            scraped, "mlfactory_step_duration_seconds", pipeline="demo", step="fit", status="failed"
        )
        >= 0
    )
    assert metric(
        scraped,
        "mlfactory_model_metric",
        pipeline="demo",
        model="",
        version="",
        metric="accuracy",
    ) == pytest.approx(0.91)  # from the last successful run
    assert metric(scraped, "mlfactory_table_rows", table="pipeline_runs") == 2
