"""``mlfactory serve`` as a real process: worker processes that share the port evenly, keep-alive
requests without the ~44 ms TCP_NODELAY trap of ``uvicorn --workers``, graceful stop on SIGTERM,
no orphans, dead workers replaced, and a refusal to start when misconfigured."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api_process import ApiProcess, api_process, children, wait_until_gone
from mlfactory.accounts import add_user
from mlfactory.api.server import STARTUP_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]

PASSWORD = "correct horse battery"


def health_pid(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())["pid"]


def pids_of_fresh_connections(server: ApiProcess, count: int) -> Counter[int]:
    """Which worker answers each of ``count`` connections open at the same time."""
    connections = [http.client.HTTPConnection("127.0.0.1", server.port) for _ in range(count)]
    try:
        for connection in connections:
            connection.connect()
        return Counter(health_pid(connection) for connection in connections)
    finally:
        for connection in connections:
            connection.close()


def wait_for_workers(server: ApiProcess, count: int) -> set[int]:
    deadline = time.monotonic() + 30
    seen: set[int] = set()
    while len(seen) < count and time.monotonic() < deadline:
        with suppress(OSError):  # a worker still starting, or failing to: the output will say
            seen |= set(pids_of_fresh_connections(server, 8))
    assert len(seen) == count, f"workers seen: {seen}\n{server.output()}"
    return seen


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_two_workers_share_the_port_and_stop_together(
    cli_env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path, loop: str
) -> None:
    add_user(sessions, "ann", PASSWORD, "viewer")
    with api_process(cli_env, tmp_path / "serve.log", "--workers", "2", "--loop", loop) as server:
        workers = wait_for_workers(server, 2)
        assert workers <= children(server.process.pid)

        # 16 connections at once reach both workers (one shared socket often gives 16 to one).
        spread = pids_of_fresh_connections(server, 16)
        assert set(spread) == workers, spread

        login = httpx.post(f"{server.url}/token", data={"username": "ann", "password": PASSWORD})
        token = login.json()["access_token"]
        assert httpx.get(f"{server.url}/no/such", headers={"Authorization": f"Bearer {token}"})

        family = children(server.process.pid)
        assert server.stop(signal.SIGTERM) == 0
        assert wait_until_gone(family, timeout=10) == set()
    output = server.output()
    assert output.count("Finished server process") == 2  # each worker shut down gracefully
    key = (Path(cli_env["MLF_HOME"]) / "jwt_secret").read_text().strip()
    for secret in (key, PASSWORD, token):
        assert secret not in output


def test_a_dead_worker_is_replaced(cli_env: dict[str, str], tmp_path: Path) -> None:
    with api_process(cli_env, tmp_path / "serve.log", "--workers", "2") as server:
        first, second = wait_for_workers(server, 2)
        time.sleep(STARTUP_SECONDS + 1)  # past start-up: a death now is a crash, not a bad start
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while len(seen - {first}) < 2 and time.monotonic() < deadline:
            seen |= set(pids_of_fresh_connections(server, 8))
        replacement = seen - {first, second}
        assert len(replacement) == 1, f"{seen}\n{server.output()}"
        assert "exited with status -9; starting another" in server.output()
        assert server.stop() == 0


def test_workers_stop_when_the_parent_is_killed(cli_env: dict[str, str], tmp_path: Path) -> None:
    with api_process(cli_env, tmp_path / "serve.log", "--workers", "2") as server:
        workers = wait_for_workers(server, 2)
        server.stop(signal.SIGKILL)
        assert wait_until_gone(workers, timeout=10) == set()


def test_production_without_a_secret_does_not_start(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlfactory", "serve", "--port", "0"],
        env={**cli_env, "MLF_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: MLF_JWT_SECRET must be set when MLF_ENV=production"


def test_a_port_in_use_is_one_line_not_a_traceback(cli_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mlfactory", "serve", "--port", str(port)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
