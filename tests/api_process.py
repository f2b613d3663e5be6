"""A real ``mlfactory serve`` process for tests: started on a free port, stopped by a signal, and
never left behind (it runs in its own session, whose processes are killed at the end)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlfactory.settings import Settings


def process_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``mlfactory`` subprocess that uses ``settings``: this one's, with
    every ``MLF_`` variable replaced."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    env.update(
        MLF_HOME=str(settings.home),
        MLF_DATABASE_URL=settings.database_url,
        MLF_MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        MLF_DATASETS_DIR=str(settings.datasets_dir),
    )
    return env


STARTED = re.compile(r"mlfactory API on http://[^\s:]+:(\d+)")


@dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)


@contextmanager
def api_process(
    env: dict[str, str], log: Path, *args: str, cwd: Path | None = None
) -> Iterator[ApiProcess]:
    """``mlfactory serve --port 0 ARGS`` (run in ``cwd``), once it answers ``/health``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlfactory", "serve", "--port", "0", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = ApiProcess(process, _wait_for_port(process, log), log)
        _wait_for_health(server)
        yield server
    finally:
        with suppress(ProcessLookupError):  # whatever is left of its session
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _wait_for_port(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if match := STARTED.search(log.read_text(errors="replace")):
            return int(match[1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the server did not start:\n{log.read_text(errors='replace')}")


def _wait_for_health(server: ApiProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        assert server.process.poll() is None, f"the server exited:\n{server.output()}"
        time.sleep(0.1)
    raise AssertionError(f"the server never answered /health:\n{server.output()}")


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, and theirs, read from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found | {grandchild for child in found for grandchild in children(child)}


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie has finished."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until_gone(pids: set[int], timeout: float) -> set[int]:
    """Those of ``pids`` still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
