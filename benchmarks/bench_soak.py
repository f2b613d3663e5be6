"""Soak: 50 concurrent clients for 60 s against ``mlfactory serve``; errors and resident memory.

The logistic-regression champion of ``advertising`` (trained and registered as in
``bench_serving.py``) behind ``mlfactory serve`` with auth, validation and stored predictions on.
``wrk`` holds 50 keep-alive connections posting 1-record requests for ``--duration`` seconds after
a warm-up; every second the resident memory (RSS) of the server's processes is read from
``/proc``. Reported: requests, failed requests, requests/s, and RSS at the start of the measured
window, at its end, its peak and its least-squares slope. The baseline is the server's own RSS at
the start of the window: the ratio end / start must stay near 1.0 (flat), where a leak of even a
few hundred bytes per request would show as tens of MB.

    .venv/bin/python benchmarks/bench_soak.py [--clients 50] [--duration 60]

Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench_ingest import DEFAULT_POSTGRES
from bench_ingest import store as empty_store
from bench_serving import (
    WRK_SCRIPT,
    mlfactory_server,
    prepare,
    read_rows,
    running,
    stored_predictions,
    token,
    wrk,
)

FLAT_GOAL = 1.10  # RSS at the end of the window at most 10 % above its start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="Measured seconds.")
    parser.add_argument("--warm-up", type=int, default=10, help="Seconds of load before.")
    parser.add_argument("--workers", type=int, default=1, help="Processes of mlfactory serve.")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    with (
        tempfile.TemporaryDirectory(prefix="bench-soak-") as root,
        empty_store(args.store, args.postgres_url) as database,
    ):
        home = Path(root)
        env = prepare(home, "logistic", database)
        server = mlfactory_server(env, args.workers)
        with running(server, home) as port:
            script = home / "soak.lua"
            body = home / "soak.json"
            body.write_text(json.dumps({"records": read_rows()[:1]}))
            auth = f'wrk.headers["Authorization"] = "Bearer {token(port)}"'
            script.write_text(WRK_SCRIPT.replace("{auth}", auth).replace("{body}", str(body)))
            url = f"http://127.0.0.1:{port}{server.path}"
            pids = server_pids(port)
            wrk(script, url, args.clients, args.warm_up)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(pids, samples, stop))
            sampler.start()
            try:
                rate, p50, p99, failed = wrk(script, url, args.clients, args.duration)
            finally:
                stop.set()
                sampler.join()
        print(f"mlfactory stored {stored_predictions(env):,} predictions")
    report(args, rate, p50, p99, failed, samples)


def server_pids(port: int) -> list[int]:
    """The processes listening on ``port`` (``mlfactory serve`` and its workers)."""
    output = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    pids = {int(part.split("=")[1]) for part in output.replace(",", " ").split() if "pid=" in part}
    if not pids:
        raise RuntimeError(f"no process found listening on port {port}")
    return sorted(pids)


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def sample_rss(pids: list[int], samples: list[tuple[float, float]], stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_mb(pids)))
        stop.wait(1.0)


def report(
    args: argparse.Namespace,
    rate: float,
    p50: float,
    p99: float,
    failed: int,
    samples: list[tuple[float, float]],
) -> None:
    seconds = [moment for moment, _ in samples]
    memory = [mb for _, mb in samples]
    slope = statistics.linear_regression(seconds, memory).slope * 60
    start, end = memory[0], memory[-1]
    ratio = end / start
    print(
        f"{args.clients} clients, {args.duration} s, {args.workers} worker(s), store {args.store}"
    )
    print(f"  {rate * args.duration:,.0f} requests, {failed} failed, {rate:,.0f} req/s")
    print(f"  latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"  RSS start {start:.1f} MB, end {end:.1f} MB, peak {max(memory):.1f} MB, "
        f"slope {slope:+.2f} MB/min"
    )
    verdict = "met" if ratio <= FLAT_GOAL and failed == 0 else "missed"
    print(f"  RSS end / start: {ratio:.3f}x (goal <= {FLAT_GOAL:.2f}x and 0 errors: {verdict})")


if __name__ == "__main__":
    main()
