"""Serving: mlfactory's predict route vs ``mlflow models serve`` and vs a bare FastAPI route.

The same registered model (scaling + logistic regression on the advertising rows; then a
100-tree random forest, a CPU-bound model) behind three servers, one at a time, each driven by
``wrk`` on loopback with keep-alive connections:

- ``mlflow``: ``mlflow models serve --env-manager local`` (one uvicorn worker, its default);
- ``bare``: a FastAPI route that only builds a frame from the records and calls the model
  (no auth, no validation, no storage): the stack's limit;
- ``mlfactory``: ``POST /v1/pipelines/advertising/predict`` with a bearer token, records checked
  against the signature, every prediction stored, one uvicorn process.

For each: requests/s, p50 and p99 latency for 1-record and 1000-record requests at concurrency 1
and 16; a keep-alive latency check (sequential requests on one connection: the TCP_NODELAY trap
of ``uvicorn --workers N`` shows as ~40 ms each); and the model's in-process rows/s.

    .venv/bin/python benchmarks/bench_serving.py [--duration 5]

Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench_ingest import DEFAULT_POSTGRES
from bench_ingest import store as empty_store
from harness import datasets_dir

FEATURES = ["Daily Time Spent on Site", "Age", "Area Income", "Daily Internet Usage", "Male"]
PASSWORD = "bench-password"
MODELS = ["logistic", "forest"]
SERVERS = ["mlflow", "bare", "mlfactory"]
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
local file = io.open("{body}", "rb")
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


class BareBody(BaseModel):
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    path: str  # of the prediction endpoint
    health: str
    wrap: str  # key of the records in the request body
    token: bool = False


@dataclass(frozen=True)
class Result:
    model: str
    server: str
    records: int
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="Seconds per measurement.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--servers", nargs="+", default=SERVERS, choices=SERVERS)
    parser.add_argument("--workers", type=int, default=1, help="Processes of mlfactory serve.")
    parser.add_argument(
        "--store", choices=["sqlite", "postgresql"], default="sqlite", help="mlfactory's store."
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help="A PostgreSQL server where a throwaway database is made for --store postgresql.",
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-uri", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.model_uri, args.port)
        return
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    results: list[Result] = []
    in_process: dict[str, dict[str, dict[int, float]]] = {}
    keep_alive: dict[tuple[str, str], float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as root,
        contextlib.ExitStack() as stack,
    ):
        rows = read_rows()
        for model in args.models:
            home = Path(root) / model
            database = stack.enter_context(empty_store(args.store, args.postgres_url))
            env = prepare(home, model, database)
            in_process[model] = measure_in_process(home, rows)
            servers = {
                "mlflow": mlflow_server(env),
                "bare": bare_server(env),
                "mlfactory": mlfactory_server(env, args.workers),
            }
            for name in args.servers:
                if name != "mlflow" or model == "logistic":  # the forest: bare vs mlfactory
                    measured, keep_alive[model, name] = measure(
                        servers[name], home, rows, args, model
                    )
                    results += measured
    report(results, in_process, keep_alive)


def read_rows() -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(datasets_dir() / "advertising" / "advertising.csv")
    return frame[FEATURES].astype("float64").to_dict(orient="records")


def prepare(home: Path, model: str, database_url: str) -> dict[str, str]:
    """Train and register the model as champion of "advertising" in ``home``, add a user; the
    environment of the servers."""
    import mlflow
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlfactory.accounts import add_user
    from mlfactory.settings import Settings
    from mlfactory.store import session_factory
    from mlfactory.training.registry import CLOUDPICKLE, SKOPS, log_and_register
    from mlfactory.training.tracking import experiment_id, use_tracking

    settings = Settings(home=home, database_url=database_url)
    settings.ensure_dirs()
    frame = pd.read_csv(datasets_dir() / "advertising" / "advertising.csv")
    features, target = frame[FEATURES].astype("float64"), frame["Clicked on Ad"]
    estimator = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        if model == "logistic"
        else RandomForestClassifier(n_estimators=100, random_state=0)
    )
    with mlflow.start_run(experiment_id=experiment_id("advertising", settings)):
        registered = log_and_register(
            estimator.fit(features, target),
            features,
            "advertising",
            # skops refuses to load trees it has not been told to trust
            serialization_format=SKOPS if model == "logistic" else CLOUDPICKLE,
        )
    use_tracking(settings).set_registered_model_alias("advertising", "champion", registered.version)
    add_user(session_factory(settings.database_url), "bench", PASSWORD, "user")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLF_")}
    env.update(
        MLF_HOME=str(home),
        MLF_DATABASE_URL=settings.database_url,
        MLF_MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        MODEL_URI=registered.model_uri,
        # mlflow models serve starts "uvicorn" found on the PATH
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def mlflow_server(env: dict[str, str]) -> Server:
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve"]
    command += ["-m", env["MODEL_URI"], "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}"]
    return Server("mlflow", command, env, "/invocations", "/ping", "dataframe_records")


def bare_server(env: dict[str, str]) -> Server:
    command = [sys.executable, __file__, "--serve-bare", "--model-uri", env["MODEL_URI"]]
    return Server("bare", [*command, "--port", "{port}"], env, "/predict", "/health", "records")


def mlfactory_server(env: dict[str, str], workers: int) -> Server:
    """``mlfactory serve``, as deployed (its access log on), with no rate limit in the way."""
    command = [str(Path(sys.executable).with_name("mlfactory")), "serve", "--host", "127.0.0.1"]
    command += ["--port", "{port}", "--workers", str(workers)]
    path = "/v1/pipelines/advertising/predict"
    env = {**env, "MLF_API_RATE_PER_MINUTE": str(10**9)}
    return Server("mlfactory", command, env, path, "/health", "records", token=True)


def serve_bare(model_uri: str, port: int) -> None:
    """The bare route: what a FastAPI tutorial serves a model with."""
    import mlflow.sklearn
    import pandas as pd
    import uvicorn
    from fastapi import FastAPI

    model = mlflow.sklearn.load_model(model_uri)
    columns = list(model.feature_names_in_)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: BareBody) -> dict[str, Any]:
        frame = pd.DataFrame(body.records)[columns]
        return {
            "labels": [str(label) for label in model.predict(frame)],
            "probabilities": model.predict_proba(frame).tolist(),
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def running(server: Server, home: Path) -> Iterator[int]:
    """Start the server, wait until it answers its health route, stop it after use."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in server.command]
    log = (home / f"{server.name}.log").open("w")
    process = subprocess.Popen(command, env=server.env, cwd=home, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not healthy(port, server.health):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not start; see {log.name}")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def healthy(port: int, path: str) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def token(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/token",
        body=f"username=bench&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return json.loads(connection.getresponse().read())["access_token"]


def measure(
    server: Server, home: Path, rows: list[dict[str, Any]], args: argparse.Namespace, model: str
) -> tuple[list[Result], float]:
    """The server's results, and its keep-alive p50 in ms."""
    results = []
    with running(server, home) as port:
        headers = {"Content-Type": "application/json"}
        if server.token:
            headers["Authorization"] = f"Bearer {token(port)}"
        for size in (1, 1000):
            body = home / f"{server.name}-{size}.json"
            body.write_text(json.dumps({server.wrap: rows[:size]}))
            script = home / f"{server.name}-{size}.lua"
            auth = (
                f'wrk.headers["Authorization"] = "{headers["Authorization"]}"'
                if server.token
                else ""
            )
            script.write_text(WRK_SCRIPT.replace("{auth}", auth).replace("{body}", str(body)))
            if size == 1:
                keep_alive = keep_alive_check(server, port, body.read_bytes(), headers)
            for concurrency in args.concurrency:
                url = f"http://127.0.0.1:{port}{server.path}"
                wrk(script, url, concurrency, 1)  # warm-up: first load, caches, JIT-less paths
                result = wrk(script, url, concurrency, args.duration)
                results.append(Result(model, server.name, size, concurrency, *result))
                print(line(results[-1]), flush=True)
        if server.name == "mlfactory":
            print(f"  mlfactory stored {stored_predictions(server.env)} predictions", flush=True)
    return results, keep_alive


def wrk(script: Path, url: str, concurrency: int, seconds: int) -> tuple[float, float, float, int]:
    """requests/s, p50 ms, p99 ms, failed requests (socket errors and non-2xx answers)."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s"]
    output = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    fields = next(row for row in output.splitlines() if row.startswith("RESULT")).split()
    requests, micros, socket_errors, status_errors = (int(value) for value in fields[1:5])
    p50, p99 = float(fields[5]) / 1000, float(fields[6]) / 1000
    return requests / (micros / 1e6), p50, p99, socket_errors + status_errors


def keep_alive_check(server: Server, port: int, body: bytes, headers: dict[str, str]) -> float:
    """p50 ms of 200 sequential requests on one kept-alive connection: it must be far below the
    ~40 ms that a response delayed by Nagle's algorithm and a delayed ACK costs."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seconds = []
    for _ in range(200):
        started = time.perf_counter()
        connection.request("POST", server.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{server.name} answered {response.status}")
        seconds.append(time.perf_counter() - started)
    connection.close()
    p50 = statistics.median(seconds) * 1000
    print(f"  {server.name}: keep-alive p50 {p50:.2f} ms over 200 sequential requests")
    return p50


def stored_predictions(env: dict[str, str]) -> int:
    from sqlalchemy import func, select

    from mlfactory.store import Prediction, session_factory

    with session_factory(env["MLF_DATABASE_URL"])() as session:
        return session.scalar(select(func.count()).select_from(Prediction)) or 0


def measure_in_process(home: Path, rows: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Median seconds of one call in this process, for 1 and 1000 rows: the model alone on a
    ready frame (``predict``; ``predict_proba``), the bare route's work (a frame from the
    records, both calls) and mlfactory's (records checked, an array built, ``predict_proba``)."""
    import pandas as pd

    from mlfactory.inference.champion import champion_version, registry_client
    from mlfactory.inference.model_cache import load_version
    from mlfactory.inference.serving import predict_records
    from mlfactory.settings import Settings

    version, run_id = champion_version(registry_client(Settings(home=home)), "advertising")
    served = load_version("advertising", version, run_id)
    model = served.model

    def bare(records: list[dict[str, Any]]) -> None:
        data = pd.DataFrame(records)[FEATURES]
        model.predict(data)
        model.predict_proba(data)

    work = {
        "predict": lambda records, frame: model.predict(frame),
        "predict_proba": lambda records, frame: model.predict_proba(frame),
        "bare route work": lambda records, frame: bare(records),
        "mlfactory predict_records": lambda records, frame: predict_records(served, records),
    }
    figures: dict[str, dict[int, float]] = {}
    for name, fn in work.items():
        for size in (1, 1000):
            records = rows[:size]
            frame = pd.DataFrame(records)[FEATURES]
            figures.setdefault(name, {})[size] = best_time(partial(fn, records, frame))
    return figures


def best_time(fn: Any, seconds: float = 2.0) -> float:
    """Median seconds of one call over about ``seconds`` of calls."""
    fn()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def line(result: Result) -> str:
    return (
        f"{result.model:<9} {result.server:<10} {result.records:>5} rec  c={result.concurrency:<3}"
        f" {result.requests_per_s:9.1f} req/s {result.rows_per_s:11.0f} rows/s"
        f"  p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  failed {result.failed}"
    )


def report(
    results: list[Result],
    in_process: dict[str, dict[str, dict[int, float]]],
    keep_alive: dict[tuple[str, str], float],
) -> None:
    """The in-process figures, then a verdict per goal whose measurements were made."""
    found = {(r.model, r.server, r.records, r.concurrency): r for r in results}
    print("\nIn process, one call:")
    for model, figures in in_process.items():
        for name, seconds in figures.items():
            print(
                f"  {model:<9} {name:<26} 1 row {seconds[1] * 1e6:8.0f} us   "
                f"1000 rows {seconds[1000] * 1e3:7.2f} ms = {1000 / seconds[1000]:9.0f} rows/s"
            )
    print("\nGoals:")

    def verdict(name: str, value: float, goal: float, unit: str = "x", most: bool = False) -> None:
        ok = value <= goal if most else value >= goal
        sign = "<=" if most else ">="
        print(f"  {'PASS' if ok else 'MISS'}: {name} = {value:.2f}{unit}, goal {sign} {goal}{unit}")

    mlf, bare, mlflow_ = (found.get(("logistic", s, 1, 1)) for s in ("mlfactory", "bare", "mlflow"))
    if mlf and mlflow_:
        ratio = mlf.requests_per_s / mlflow_.requests_per_s
        verdict("1-record req/s, mlfactory / mlflow (c=1)", ratio, 8)
    if mlf and bare:
        verdict(
            "1-record req/s, mlfactory / bare (c=1)", mlf.requests_per_s / bare.requests_per_s, 0.5
        )
        overhead = mlf.p50_ms - bare.p50_ms
        verdict("1-record p50, mlfactory - bare (c=1)", overhead, 2, unit=" ms", most=True)
    for model, figures in in_process.items():
        served = [found[k].rows_per_s for k in found if k[:3] == (model, "mlfactory", 1000)]
        if served:
            ratio = max(served) / (1000 / figures["predict"][1000])
            verdict(f"{model}: 1000-record rows/s / in-process predict", ratio, 0.7)
    one, many = (found.get(("forest", "mlfactory", 1, c)) for c in (1, 16))
    if one and many:
        verdict("forest: mlfactory req/s, c=16 / c=1", many.requests_per_s / one.requests_per_s, 1)
    for (model, server), p50 in keep_alive.items():
        verdict(f"{model}: {server} keep-alive p50", p50, 20, unit=" ms", most=True)
    verdict("failed requests, all runs", sum(r.failed for r in results), 0, unit="", most=True)


if __name__ == "__main__":
    main()
