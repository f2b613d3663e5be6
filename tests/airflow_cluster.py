"""A real Airflow 3 cluster for tests: api-server, scheduler, dag-processor and a Celery worker
as processes, on a PostgreSQL metadata database and a Redis broker.

Everything it starts is stopped at the end, even when the test fails: each component runs in
its own session, and the task processes the Celery worker forks (which the Task SDK moves into
process groups of their own) are found through /proc before anything is signalled.
Its Redis keys all carry one prefix (kombu's ``global_keyprefix``) and only those are deleted.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from sqlalchemy import create_engine, make_url, text

from api_process import children, wait_until_gone

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
T = TypeVar("T")
REDIS_DB = 11
"""Not 0, the database everything uses by default; keys are prefixed on top of that."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s, dropped (with its
    connections) at the end. Raises ``OperationalError`` when the server cannot be reached."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def redis_error(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used, or None when it answers."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis unreachable at {url}: {exc}"
    finally:
        client.close()
    return None


@contextmanager
def redis_namespace(url: str) -> Iterator[str]:
    """A key prefix of our own on the Redis at ``url``; its keys are deleted at the end."""
    prefix = f"mlf-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def redis_keys(url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


def entry_point_site(folder: Path, pipelines: dict[str, str]) -> Path:
    """A folder that, on ``PYTHONPATH``, registers ``pipelines`` (name -> ``module:attribute``)
    in the ``mlfactory.pipelines`` entry-point group, as an installed package would."""
    dist = folder / "mlfactory_test_pipelines-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mlfactory-test-pipelines\nVersion: 1.0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in pipelines.items())
    (dist / "entry_points.txt").write_text(f"[mlfactory.pipelines]\n{lines}")
    return folder


def cluster_env(
    base: dict[str, str], home: Path, dags: Path, metadata_url: str, broker_url: str, prefix: str
) -> dict[str, str]:
    """The environment every component shares (Airflow reads its configuration from it)."""
    api = f"http://127.0.0.1:{free_port()}"
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__BASE_URL": api,
        # Tokens the scheduler signs for the worker's tasks must verify in the api-server.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": prefix,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }


@dataclass
class AirflowCluster:
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    leftovers: set[int] = field(default_factory=set)
    """Processes (components or their descendants) still alive after the stop; empty if clean."""

    @property
    def url(self) -> str:
        return self.env["AIRFLOW__API__BASE_URL"]

    def tails(self, lines: int = 30) -> str:
        """The last ``lines`` lines of every component's output, for a failure message."""
        parts = []
        for name, log in self.logs.items():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {name} (last {len(tail)} lines) -----\n" + "\n".join(tail))
        return "\n".join(parts)

    def assert_running(self) -> None:
        exited = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not exited, f"Airflow components exited: {exited}\n{self.tails()}"

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll ``probe()`` until it returns something truthy; fail with every log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            with suppress(httpx.TransportError):
                if found := probe():
                    return found
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tails()}")

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call of the REST API v2 (the simple auth manager lets everyone in as admin);
        its JSON answer, or a failure naming the status and body."""
        response = httpx.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Wait for the DAG to be parsed, unpause it, trigger a run with ``conf`` and wait for
        the run to end; the run as the API shows it."""
        self.wait_for(f"DAG {dag_id} to be parsed", lambda: self._dag_known(dag_id), 120)
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run_id = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}
        )["dag_run_id"]

        def ended() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return self.wait_for(f"DAG run {run_id} to end", ended, timeout)

    def _dag_known(self, dag_id: str) -> bool:
        return httpx.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=30).status_code == 200


COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "celery-worker": [
        "celery",
        "worker",
        "--concurrency",
        "2",
        "--skip-serve-logs",
        "--without-gossip",
        "--without-mingle",
    ],
}


@contextmanager
def airflow_cluster(env: dict[str, str], logs: Path) -> Iterator[AirflowCluster]:
    """Migrate the metadata database, start every component, yield once the api-server answers;
    stop everything at the end (see ``AirflowCluster.leftovers``)."""
    logs.mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stderr[-4000:]}"
    port = env["AIRFLOW__API__BASE_URL"].rpartition(":")[2]
    cluster = AirflowCluster(env)
    try:
        for name, args in COMPONENTS.items():
            extra = ["--port", port] if name == "api-server" else []
            cluster.logs[name] = logs / f"{name}.log"
            with cluster.logs[name].open("wb") as out:
                cluster.processes[name] = subprocess.Popen(
                    [AIRFLOW, *args, *extra],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        cluster.wait_for("the api-server", lambda: _healthy(cluster.url), 120)
        yield cluster
    finally:
        cluster.leftovers = _stop(list(cluster.processes.values()))


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200


def _stop(processes: list[subprocess.Popen[bytes]], grace: float = 20) -> set[int]:
    """SIGTERM to every component's group, SIGKILL to whatever of them and their descendants
    is left after ``grace`` seconds; the processes still alive after that."""
    family = {p.pid for p in processes} | {pid for p in processes for pid in children(p.pid)}
    for process in processes:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    left = wait_until_gone(family, grace)
    for process in processes:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for process in processes:
        process.wait(10)
    return wait_until_gone(left, 10)
