"""``mlfactory serve``: the API in N uvicorn worker processes, and the parent that keeps them.

Why not ``uvicorn --workers N``: its parent binds the listening socket as
``socket.socket(AF_INET)``, whose ``proto`` is 0, and asyncio turns TCP_NODELAY on only for
accepted sockets whose ``proto`` is IPPROTO_TCP. Under the asyncio event loop every keep-alive
response then waits, through Nagle's algorithm, for the client's delayed ACK: ~44 ms a request
on Linux (uvicorn issue #3149). And its workers share one socket, so whichever process wakes
first takes the connections: 16 clients often land 15 on one process and 1 on the other.

Here the parent binds the sockets itself with ``proto=IPPROTO_TCP`` and workers reopen them
from their descriptor (Python reads family, type and protocol back from the kernel), so every
accepted connection gets TCP_NODELAY under either event loop (uvloop sets it anyway). On Linux
each worker has its own socket on the same address (SO_REUSEPORT), and the kernel spreads new
connections evenly among them; elsewhere all workers share one socket.

The parent only supervises. On SIGTERM or SIGINT it sends SIGTERM to every worker (uvicorn
finishes the requests in flight), kills any still there after ``GRACE_SECONDS`` and exits 0.
A worker that dies is replaced on the same socket, where its connections queue meanwhile;
one that dies within ``STARTUP_SECONDS`` is broken, not unlucky, so everything stops with
status 1. A worker whose parent disappears (even by SIGKILL) stops by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from mlfactory.api.security import signing_key
from mlfactory.errors import UserError
from mlfactory.settings import Settings
from mlfactory.store import dispose_engines, get_engine

APP = "mlfactory.api.main:create_app"
GRACE_SECONDS = 30.0
"""How long the parent lets workers finish requests in flight before killing them."""
STARTUP_SECONDS = 10.0
"""A worker that exits younger than this failed to start; replacing it would only repeat that."""
BACKLOG = 2048
BALANCED = sys.platform == "linux"
"""Whether SO_REUSEPORT spreads connections among sockets (Linux) rather than picking one."""


log = logging.getLogger(__name__)


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on ``host:port``: one per worker, or one shared by all.

    Port 0 picks a free port, the same for every socket.
    """
    first = _listen(host, port)
    if not BALANCED:
        return [first] * count
    return [first, *(_listen(host, first.getsockname()[1]) for _ in range(count - 1))]


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if BALANCED:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(BACKLOG)  # connections queue from now on, before any worker has started
    return sock


@dataclass
class _Worker:
    sock: socket.socket
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


def serve(settings: Settings, host: str, port: int, workers: int, loop: str = "auto") -> int:
    """Serve the API until SIGTERM or SIGINT; the exit status.

    ``loop`` is uvicorn's: ``auto`` (uvloop when installed), ``asyncio`` or ``uvloop``.
    """
    _prepare(settings)
    sockets = listening_sockets(host, port, workers)
    bound = sockets[0].getsockname()[1]
    log.info("mlfactory API on http://%s:%d with %d worker(s)", host, bound, workers)
    wake, stop_signals = _route_signals_to_pipe()
    command = [sys.executable, "-m", __name__, str(os.getpid()), settings.log_level, loop]
    pool = [_start(command, sock) for sock in sockets]
    status = 0
    try:
        while status == 0:
            if stop_signals & set(os.read(wake, 64)):
                break
            status = _replace_dead(pool, command)
    finally:
        _stop(pool)
        for sock in set(sockets):
            sock.close()
    return status


def _prepare(settings: Settings) -> None:
    """Fail here, once, on a bad configuration, and create what workers starting together
    would race to create: the store's schema and the MLflow tables (first use of a new
    database migrates it, and two concurrent migrations of one database fail)."""
    from mlflow.tracking import MlflowClient

    signing_key(settings)
    get_engine(settings.database_url)
    dispose_engines()
    MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def _route_signals_to_pipe() -> tuple[int, set[int]]:
    """Make SIGTERM, SIGINT and SIGCHLD write their number to a pipe the parent blocks on."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, lambda *_: None)  # the wake-up fd does the work
    return read_end, {signal.SIGTERM, signal.SIGINT}


def _start(command: list[str], sock: socket.socket) -> _Worker:
    fd = sock.fileno()
    process = subprocess.Popen([*command, str(fd)], pass_fds=[fd], stdin=subprocess.DEVNULL)
    log.info("worker %d started", process.pid)
    return _Worker(sock, process)


def _replace_dead(pool: list[_Worker], command: list[str]) -> int:
    """Start a new worker for each that exited; 1 if one died at start-up, else 0."""
    for index, worker in enumerate(pool):
        code = worker.process.poll()
        if code is None:
            continue
        if time.monotonic() - worker.started < STARTUP_SECONDS:
            log.error("worker %d exited with status %d while starting", worker.process.pid, code)
            return 1
        log.warning("worker %d exited with status %d; starting another", worker.process.pid, code)
        pool[index] = _start(command, worker.sock)
    return 0


def _stop(pool: list[_Worker]) -> None:
    for worker in pool:
        if worker.process.poll() is None:
            worker.process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for worker in pool:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "worker %d did not stop in %.0f s; killing it", worker.process.pid, GRACE_SECONDS
            )
            worker.process.kill()
            worker.process.wait()


def _run_worker(parent: int, log_level: str, loop: str, fd: int) -> None:
    """One worker: uvicorn on the inherited socket until SIGTERM, or until orphaned."""
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        APP,
        factory=True,
        loop=loop,
        log_level=log_level.lower(),
        log_config=_log_config(log_level),
        timeout_graceful_shutdown=int(GRACE_SECONDS * 2 / 3),
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_stop_when_orphaned, args=(server, parent), daemon=True).start()
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


def _stop_when_orphaned(server: uvicorn.Server, parent: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent:
            server.should_exit = True
        time.sleep(1)


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with mlfactory's own loggers on the same handler at ``level``."""
    config = deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlfactory"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


if __name__ == "__main__":
    parent_pid, level, event_loop, descriptor = sys.argv[1:5]
    _run_worker(int(parent_pid), level, event_loop, int(descriptor))
