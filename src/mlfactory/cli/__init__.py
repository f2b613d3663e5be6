"""The ``mlfactory`` command: run pipelines and read what they did.

Read commands take ``--json`` for scripts. Mistakes (unknown pipeline, bad parameter) print one
line and exit with status 2; a failed run exits with status 1.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlfactory.cli.common import (
    JsonOption,
    console,
    errors,
    print_json,
    print_metrics,
    status_text,
    store_sessions,
    user_errors,
)
from mlfactory.cli.data import data_app
from mlfactory.cli.new import new_app
from mlfactory.cli.users import users_app
from mlfactory.errors import UserError
from mlfactory.orchestration import (
    StepEvent,
    all_pipelines,
    get_pipeline,
    parse_pairs,
    run_pipeline,
    validate_params,
)
from mlfactory.orchestration.history import get_run, latest_runs, list_runs
from mlfactory.orchestration.records import fail_interrupted_runs
from mlfactory.settings import get_settings

app = typer.Typer(
    help="mlfactory: raw data to models that are retrained, tracked, served and watched.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(users_app, name="users")
app.add_typer(new_app, name="new")

KEY_METRICS = ("accuracy", "f1", "roc_auc")


@app.callback()
def _configure() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlfactory").setLevel(get_settings().log_level)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO lines drown the output


@app.command()
@user_errors
def run(
    name: Annotated[str, typer.Argument(help="Pipeline to run.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A run parameter, key=value.")
    ] = None,
) -> None:
    """Run a pipeline here, now, step by step."""
    pipeline = get_pipeline(name)
    params = validate_params(pipeline.params, parse_pairs(pipeline.params, param or []))
    steps = pipeline.ordered_steps()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{name}: starting", total=len(steps))

        def observe(event: StepEvent) -> None:
            if event.kind == "started":
                progress.update(task, description=f"{name}: {event.step} (attempt {event.attempt})")
                return
            marks = {
                "succeeded": "[green]ok[/]",
                "failed": "[red]failed[/]",
                "retrying": "[yellow]retrying[/]",
                "skipped": "[grey50]skipped[/]",
            }
            detail = f" {event.duration_s:.2f}s" if event.kind == "succeeded" else ""
            error = f"  {event.error}" if event.error else ""
            progress.console.print(
                f"  {event.step:<14} {marks[event.kind]}{detail}{error}", highlight=False
            )
            if event.kind in ("succeeded", "failed", "skipped"):
                progress.advance(task)

        outcome = run_pipeline(pipeline, params, observer=observe)
    record = get_run(store_sessions(), outcome.run_id) or {}
    if outcome.status != "success":
        errors.print(
            f"[red]Run {outcome.run_id} of {name} failed:[/red] {outcome.error}", highlight=False
        )
        raise typer.Exit(1)
    console.print(
        f"[green]Run {outcome.run_id} of {name} succeeded[/] in {outcome.duration_s:.1f}s"
    )
    print_metrics(record.get("metrics") or {})
    if record.get("model_version"):
        alias = (record.get("summary") or {}).get("promotion", {}).get("alias", "")
        console.print(
            f"Registered model [bold]{record['model_name']}[/] version "
            f"[bold]{record['model_version']}[/]" + (f" (alias [bold]{alias}[/])" if alias else "")
        )


@app.command()
@user_errors
def pipelines(as_json: JsonOption = False) -> None:
    """List the registered pipelines."""
    rows = [
        {
            "name": pipeline.name,
            "schedule": pipeline.schedule_text,
            "steps": [step.name for step in pipeline.ordered_steps()],
            "params": pipeline.params.model_json_schema().get("properties", {}),
            "description": pipeline.description.strip().splitlines()[0]
            if pipeline.description
            else "",
        }
        for pipeline in all_pipelines()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("pipeline", "schedule", "steps", "description")
    for row in rows:
        table.add_row(
            row["name"], row["schedule"] or "-", " > ".join(row["steps"]), row["description"]
        )
    console.print(table)


@app.command()
@user_errors
def runs(
    name: Annotated[str | None, typer.Argument(help="Only this pipeline's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    run_id: Annotated[int | None, typer.Option("--id", help="Show one run in detail.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recent runs with their steps; ``--id N`` shows every attempt of one run."""
    sessions = store_sessions()
    fail_interrupted_runs(sessions)
    if run_id is not None:
        record = get_run(sessions, run_id)
        if record is None:
            raise UserError(f"no run with id {run_id}")
        print_json(record) if as_json else _print_run(record)
        return
    if name is not None:
        get_pipeline(name)  # an unknown name is an error, not an empty list
    rows = list_runs(sessions, name, limit)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "pipeline", "status", "started", "duration", "steps", "model", "metrics")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["pipeline"],
            status_text(row["status"]),
            row["started_at"][:19].replace("T", " "),
            _seconds(row["duration_s"]),
            ", ".join(f"{count} {state}" for state, count in row["step_states"].items()),
            f"v{row['model_version']}" if row["model_version"] else "-",
            _metric_text(row["metrics"]),
        )
    console.print(table)


@app.command()
@user_errors
def status(as_json: JsonOption = False) -> None:
    """The last run of each pipeline with its key metrics."""
    sessions = store_sessions()
    fail_interrupted_runs(sessions)
    rows = latest_runs(sessions)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No runs yet: try [bold]mlfactory run advertising[/].")
        return
    table = Table("pipeline", "last run", "status", "ended", "model", "metrics", "error")
    for row in rows:
        table.add_row(
            row["pipeline"],
            str(row["id"]),
            status_text(row["status"]),
            (row["ended_at"] or "")[:19].replace("T", " "),
            f"{row['model_name']} v{row['model_version']}" if row["model_version"] else "-",
            _metric_text(row["metrics"]),
            (row["error"] or "")[:80],
        )
    console.print(table)


class EventLoop(StrEnum):
    auto = "auto"
    asyncio = "asyncio"
    uvloop = "uvloop"


@app.command()
@user_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MLF_API_HOST].")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (0: any free one) [MLF_API_PORT].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Server processes, one per core [MLF_API_WORKERS].")
    ] = None,
    loop: Annotated[
        EventLoop, typer.Option(help="Event loop of the workers; auto is uvloop when installed.")
    ] = EventLoop.auto,
) -> None:
    """Serve the HTTP API (OpenAPI documentation at /docs) until SIGTERM or Ctrl-C."""
    from mlfactory.api.server import serve as run_server

    settings = get_settings()
    status = run_server(
        settings,
        host or settings.api_host,
        settings.api_port if port is None else port,
        workers or settings.api_workers,
        loop.value,
    )
    raise typer.Exit(status)


@app.command()
@user_errors
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """The web dashboard (Streamlit) on HOST:PORT, a client of the API at MLF_API_URL."""
    from mlfactory.dashboard.launch import run_dashboard

    run_dashboard(host, port)


def _print_run(record: dict[str, Any]) -> None:
    console.print(
        f"Run {record['id']} of [bold]{record['pipeline']}[/]: {status_text(record['status'])} "
        f"({record['engine']}, {_seconds(record['duration_s'])})"
    )
    if record["error"]:
        console.print(f"[red]{record['error']}[/]", highlight=False)
    table = Table("step", "attempt", "status", "duration", "error")
    for attempt in record["attempts"]:
        table.add_row(
            attempt["step"],
            str(attempt["attempt"]),
            status_text(attempt["status"]),
            _seconds(attempt["duration_s"]),
            (attempt["error"] or "")[:100],
        )
    console.print(table)
    print_metrics(record["metrics"])


def _metric_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{key}={metrics[key]:.3f}" for key in KEY_METRICS if key in metrics)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


if __name__ == "__main__":
    app()
