"""The ``mlfactory`` command: run pipelines and read what they did.

Read commands take ``--json`` for scripts. Mistakes (unknown pipeline, bad parameter) print one
line and exit with status 2; a failed run exits with status 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.ingest.state import dataset_status, load_history
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
from mlfactory.store import session_factory

app = typer.Typer(
    help="mlfactory: raw data to models that are retrained, tracked, served and watched.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)

data_app = typer.Typer(
    help="Data sets in the store: state, load history, loads.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
F = TypeVar("F", bound=Callable[..., Any])
KEY_METRICS = ("accuracy", "f1", "roc_auc")


def user_errors(command: F) -> F:
    """Turn a UserError into one line on stderr and exit status 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            errors.print(f"[red]Error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


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
    record = get_run(_sessions(), outcome.run_id) or {}
    if outcome.status != "success":
        errors.print(
            f"[red]Run {outcome.run_id} of {name} failed:[/red] {outcome.error}", highlight=False
        )
        raise typer.Exit(1)
    console.print(
        f"[green]Run {outcome.run_id} of {name} succeeded[/] in {outcome.duration_s:.1f}s"
    )
    _print_metrics(record.get("metrics") or {})
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
        _print_json(rows)
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
    sessions = _sessions()
    fail_interrupted_runs(sessions)
    if run_id is not None:
        record = get_run(sessions, run_id)
        if record is None:
            raise UserError(f"no run with id {run_id}")
        _print_json(record) if as_json else _print_run(record)
        return
    if name is not None:
        get_pipeline(name)  # an unknown name is an error, not an empty list
    rows = list_runs(sessions, name, limit)
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "pipeline", "status", "started", "duration", "steps", "model", "metrics")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["pipeline"],
            _status(row["status"]),
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
    sessions = _sessions()
    fail_interrupted_runs(sessions)
    rows = latest_runs(sessions)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("No runs yet: try [bold]mlfactory run advertising[/].")
        return
    table = Table("pipeline", "last run", "status", "ended", "model", "metrics", "error")
    for row in rows:
        table.add_row(
            row["pipeline"],
            str(row["id"]),
            _status(row["status"]),
            (row["ended_at"] or "")[:19].replace("T", " "),
            f"{row['model_name']} v{row['model_version']}" if row["model_version"] else "-",
            _metric_text(row["metrics"]),
            (row["error"] or "")[:80],
        )
    console.print(table)


@data_app.command("status")
@user_errors
def data_status(
    dataset: Annotated[str, typer.Argument(help="Data set name.")], as_json: JsonOption = False
) -> None:
    """Items, labels and class distribution of a data set, and its last completed load."""
    state = dataset_status(_sessions(), dataset)
    if as_json:
        _print_json(state)
        return
    last = state["last_batch"]
    console.print(
        f"[bold]{dataset}[/]: {state['items']:,} items, {state['labelled']:,} labelled; "
        + (
            f"last load {last['name']} ({last['mode']}, {last['percentage'] or 100:g} %)"
            if last
            else "never loaded"
        )
    )
    table = Table("label", "items")
    for label, count in state["classes"].items():
        table.add_row(label, f"{count:,}")
    console.print(table)


@data_app.command("history")
@user_errors
def data_history(
    dataset: Annotated[str, typer.Argument(help="Data set name.")], as_json: JsonOption = False
) -> None:
    """Every load batch of a data set with its counts and outcome."""
    batches = load_history(_sessions(), dataset)
    if as_json:
        _print_json(batches)
        return
    table = Table(
        "id",
        "name",
        "mode",
        "%",
        "status",
        "seen",
        "inserted",
        "updated",
        "unchanged",
        "rejected",
        "started",
    )
    for batch in batches:
        table.add_row(
            str(batch["id"]),
            batch["name"],
            batch["mode"],
            "-" if batch["percentage"] is None else f"{batch['percentage']:g}",
            _status(batch["status"]),
            *(
                f"{batch[f'rows_{n}']:,}"
                for n in ("seen", "inserted", "updated", "unchanged", "rejected")
            ),
            batch["started_at"][:19].replace("T", " "),
        )
    console.print(table)


@data_app.command("load")
@user_errors
def data_load(
    dataset: Annotated[str, typer.Argument(help="Data set name.")],
    percentage: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="Load the first P % of the source's keys (cumulative)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load a data set from its source into the store as one audited batch."""
    from mlfactory.ingest.loader import load_batch
    from mlfactory.ingest.sources import get_source

    source = get_source(dataset)
    with console.status(f"Loading {dataset}..."):
        result = load_batch(
            _sessions(),
            dataset,
            source.read(get_settings(), None),
            mode="full" if percentage is None else "fraction",
            percentage=percentage,
            source=dataset,
        )
    if as_json:
        _print_json(result.as_dict())
        return
    console.print(
        f"Batch {result.batch_id} ({result.name}) of {dataset}: {result.rows_seen:,} seen, "
        f"{result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
        f"{result.rows_unchanged:,} unchanged, {result.rows_rejected:,} rejected"
    )


users_app = typer.Typer(help="Accounts of the API: add, list, disable.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
@user_errors
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer (read), user (read, predict) or admin.")] = (
        "viewer"
    ),
) -> None:
    """Add a user; the password comes from a hidden prompt, or from stdin when it is piped."""
    from mlfactory.accounts import add_user

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    account = add_user(_sessions(), name, password, role)
    console.print(f"Added user [bold]{account.username}[/] with role [bold]{account.role}[/]")


@users_app.command("list")
@user_errors
def users_list(as_json: JsonOption = False) -> None:
    """Every user with its role and state."""
    from mlfactory.accounts import list_users

    rows = [
        {
            "username": account.username,
            "role": account.role,
            "disabled": account.disabled,
            "created_at": account.created_at.isoformat(),
        }
        for account in list_users(_sessions())
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table("user", "role", "state", "created")
    for row in rows:
        state = "[red]disabled[/]" if row["disabled"] else "[green]enabled[/]"
        table.add_row(row["username"], row["role"], state, row["created_at"][:19].replace("T", " "))
    console.print(table)


@users_app.command("disable")
@user_errors
def users_disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: its tokens stop working at once and it can no longer log in."""
    from mlfactory.accounts import disable_user

    disable_user(_sessions(), name)
    console.print(f"Disabled user [bold]{name}[/]")


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


def _sessions() -> sessionmaker[Session]:
    return session_factory(get_settings().database_url)


def _print_run(record: dict[str, Any]) -> None:
    console.print(
        f"Run {record['id']} of [bold]{record['pipeline']}[/]: {_status(record['status'])} "
        f"({record['engine']}, {_seconds(record['duration_s'])})"
    )
    if record["error"]:
        console.print(f"[red]{record['error']}[/]", highlight=False)
    table = Table("step", "attempt", "status", "duration", "error")
    for attempt in record["attempts"]:
        table.add_row(
            attempt["step"],
            str(attempt["attempt"]),
            _status(attempt["status"]),
            _seconds(attempt["duration_s"]),
            (attempt["error"] or "")[:100],
        )
    console.print(table)
    _print_metrics(record["metrics"])


def _print_metrics(metrics: dict[str, float]) -> None:
    if not metrics:
        return
    table = Table("metric", "value", title="Metrics")
    for metric, value in metrics.items():
        table.add_row(metric, f"{value:.4f}")
    console.print(table)


def _metric_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{key}={metrics[key]:.3f}" for key in KEY_METRICS if key in metrics)


def _status(status: str) -> str:
    colour = {"success": "green", "failed": "red", "running": "yellow"}.get(status, "grey50")
    return f"[{colour}]{status}[/]"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


if __name__ == "__main__":
    app()
