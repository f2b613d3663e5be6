"""What every command shares: the consoles, one-line errors, JSON output, the store."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.settings import get_settings
from mlfactory.store import session_factory

# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
F = TypeVar("F", bound=Callable[..., Any])


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


def store_sessions() -> sessionmaker[Session]:
    return session_factory(get_settings().database_url)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def status_text(status: str) -> str:
    colour = {"success": "green", "failed": "red", "running": "yellow"}.get(status, "grey50")
    return f"[{colour}]{status}[/]"


def print_metrics(metrics: dict[str, float]) -> None:
    if not metrics:
        return
    table = Table("metric", "value", title="Metrics")
    for metric, value in metrics.items():
        table.add_row(metric, f"{value:.4f}")
    console.print(table)
