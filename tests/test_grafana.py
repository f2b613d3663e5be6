"""The provisioned Grafana dashboards only chart metrics the API exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.main import create_app
from mlfactory.settings import Settings

DASHBOARDS = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
METRIC = re.compile(r"\b(mlfactory_[a-z0-9_]+)")
SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def exported_metrics(settings: Settings, sessions: sessionmaker[Session]) -> set[str]:
    """Every sample name a scrape of the real app can hold, families without samples included."""
    add_user(sessions, "viewer", "viewer-password", "viewer")
    client = TestClient(create_app(settings))
    token = client.post("/token", data={"username": "viewer", "password": "viewer-password"})
    scrape = client.get(
        "/metrics", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert scrape.status_code == 200
    names = set()
    for family in text_string_to_metric_families(scrape.text):
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES)
    return names


def unknown_metrics(dashboard: dict, exported: set[str]) -> list[str]:
    """``panel title: metric`` for every metric a panel queries that is not exported, and
    ``panel title: no query`` for a panel that queries nothing."""
    problems = []
    for panel in dashboard["panels"]:
        expressions = [target.get("expr", "") for target in panel.get("targets", [])]
        if not any(METRIC.search(expression) for expression in expressions):
            problems.append(f"{panel['title']}: no query of an mlfactory metric")
        for expression in expressions:
            problems += [
                f"{panel['title']}: {name}"
                for name in METRIC.findall(expression)
                if name not in exported
            ]
    return problems


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_panel_queries_metrics_the_api_exports(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    exported = exported_metrics(settings, sessions)
    files = sorted(DASHBOARDS.glob("*.json"))
    assert {file.stem for file in files} == {"platform", "models", "pipelines"}
    for file in files:
        dashboard = json.loads(file.read_text())
        assert dashboard["uid"] and dashboard["panels"], file.name
        assert unknown_metrics(dashboard, exported) == [], file.name
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "prometheus", (file.name, panel["title"])

    broken = {"panels": [{"title": "typo", "targets": [{"expr": "rate(mlfactory_request[5m])"}]}]}
    assert unknown_metrics(broken, exported) == ["typo: mlfactory_request"]
    empty = {"panels": [{"title": "empty", "targets": [{"expr": "up"}]}]}
    assert unknown_metrics(empty, exported) == ["empty: no query of an mlfactory metric"]
