"""The cluster mode's promise, "no code change": a pipeline trains, registers and promotes
against a real ``mlflow server`` process over HTTP (artefacts proxied by the server), and
``mlfactory serve`` then answers with that champion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api_process import api_process
from mlfactory.accounts import add_user
from test_deploy import free_port, started, wait_until_healthy

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)]
PASSWORD = "mlflow-server-password"


def test_a_pipeline_trains_promotes_and_serves_through_an_mlflow_server(
    cli_env: dict[str, str], sessions, datasets_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLF_", "MLFLOW_"))}
    env = {**cli_env, "MLF_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    with started(command, server_env, tmp_path / "mlflow.log") as process:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", process, tmp_path / "mlflow.log")

        def run() -> str:
            result = subprocess.run(
                [sys.executable, "-m", "mlfactory", "run", "advertising"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert "Registered model advertising version 1 (alias champion)" in run()
        assert "Registered model advertising version 2 (alias challenger)" in run()  # re-scored

        add_user(sessions, "alice", PASSWORD, "user")
        with api_process(env, tmp_path / "serve.log") as api:
            token = httpx.post(
                f"{api.url}/token", data={"username": "alice", "password": PASSWORD}
            ).json()["access_token"]
            record = {
                "Daily Time Spent on Site": 68.95,
                "Age": 35,
                "Area Income": 61833.9,
                "Daily Internet Usage": 256.09,
                "Male": 0,
            }
            answer = httpx.post(
                f"{api.url}/v1/pipelines/advertising/predict",
                json={"records": [record]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "1"
    assert list((tmp_path / "server-artifacts").rglob("MLmodel"))  # the server kept the models
