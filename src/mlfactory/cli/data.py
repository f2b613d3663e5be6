"""``mlfactory data``: declare data sets, load them, and read what the store holds of them.

Every command takes a data set's name; an unknown one is an error (exit 2). ``load`` and
``add`` need a declared data set (or file); the read commands also know data sets that only
the store has (those a run's ``source`` file was loaded into).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mlfactory.cli.common import (
    JsonOption,
    console,
    print_json,
    status_text,
    store_sessions,
    user_errors,
)
from mlfactory.datasets.project import (
    DeclarationError,
    UnknownDataset,
    add_declarations,
    declarations,
    project_file,
)
from mlfactory.ingest.state import dataset_status, load_history, rejection_page
from mlfactory.settings import get_settings

data_app = typer.Typer(
    help="Data sets: declare, load, and read their state, loads and rejections.",
    no_args_is_help=True,
)
DatasetArgument = Annotated[str, typer.Argument(help="Data set name.")]


def known_dataset(name: str) -> None:
    """Raise UnknownDataset unless ``name`` is declared or has loads in the store."""
    declared = declarations(get_settings())
    if name in declared.datasets or load_history(store_sessions(), name):
        return
    known = ", ".join(sorted(declared.datasets)) or "none"
    raise UnknownDataset(f"unknown data set {name!r} (declared: {known})")


@data_app.command("add")
@user_errors
def data_add(
    dataset: DatasetArgument,
    file: Annotated[Path, typer.Option("--file", help="A CSV, JSON Lines or Parquet file.")],
    key: Annotated[
        list[str] | None, typer.Option("--key", help="A key column (repeat for several).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="The column a model learns.")] = None,
) -> None:
    """Infer a declaration from a sample of FILE and add it to the project file for review
    (with a pipeline of the same name when there is a label)."""
    from mlfactory.ingest.drafts import draft_dataset, draft_pipeline

    settings = get_settings()
    target = project_file(settings)
    if not target.is_file():  # the first declaration creates the project file
        settings = settings.model_copy(update={"project_file": None})
    if dataset in declarations(settings).datasets:
        raise DeclarationError(f"data set {dataset!r} is already declared")
    declaration = draft_dataset(settings, dataset, file, folder=target.parent, key=key, label=label)
    entries = {"datasets": {dataset: declaration}}
    pipeline, why_not = draft_pipeline(dataset, declaration) if label else (None, None)
    if pipeline is not None:
        entries["pipelines"] = {dataset: pipeline}
    note = f"inferred by `mlfactory data add` from {file.name} on {date.today()}: review it"
    add_declarations(target, entries, note)
    typer.echo(target.read_text())
    added = f"data set [bold]{dataset}[/]" + (
        f" and pipeline [bold]{dataset}[/]" if pipeline else ""
    )
    then = f"mlfactory run {dataset}" if pipeline else f"mlfactory data load {dataset}"
    console.print(f"Added {added} to {target}. Review it, then `{then}`.")
    if why_not:
        console.print(f"No pipeline: {why_not}.")


@data_app.command("load")
@user_errors
def data_load(
    dataset: DatasetArgument,
    file: Annotated[
        Path | None, typer.Option("--file", help="Load this file instead of the declared source.")
    ] = None,
    percentage: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="Load the first P % of the source's keys (cumulative)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load a declared data set from its source (or FILE) as one audited batch, after checking
    the source's columns and types against the declaration."""
    from mlfactory.ingest.declared import load_declared

    settings = get_settings()
    declared = declarations(settings).dataset(dataset)
    selection: dict[str, Any] = {}
    if percentage is not None:
        selection = {"mode": "fraction", "percentage": percentage}
    with console.status(f"Loading {dataset}..."):
        result = load_declared(store_sessions(), settings, declared, path=file, **selection)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(
        f"Batch {result.batch_id} ({result.name}) of {dataset}: {result.rows_seen:,} seen, "
        f"{result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
        f"{result.rows_unchanged:,} unchanged, {result.rows_deleted:,} deleted, "
        f"{result.rows_rejected:,} rejected"
        + (f" (see `mlfactory data rejections {dataset}`)" if result.rows_rejected else "")
    )


@data_app.command("show")
@user_errors
def data_show(dataset: DatasetArgument, as_json: JsonOption = False) -> None:
    """A data set's declaration and what the store holds of it."""
    known_dataset(dataset)
    declared = declarations(get_settings()).datasets.get(dataset)
    state = dataset_status(store_sessions(), dataset)
    if as_json:
        body = declared.model_dump(mode="json", exclude_defaults=True) if declared else None
        print_json({"declaration": body, **state})
        return
    if declared is None:
        console.print(f"[bold]{dataset}[/] is not declared: a run's source file was loaded into it")
    else:
        from ruamel.yaml import YAML

        body = declared.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        stream = io.StringIO()
        YAML().dump({dataset: body}, stream)
        typer.echo(stream.getvalue())
    _print_state(dataset, state)


@data_app.command("status")
@user_errors
def data_status(dataset: DatasetArgument, as_json: JsonOption = False) -> None:
    """Items, labels and class distribution of a data set, and its last completed load."""
    known_dataset(dataset)
    state = dataset_status(store_sessions(), dataset)
    if as_json:
        print_json(state)
        return
    _print_state(dataset, state)


@data_app.command("history")
@user_errors
def data_history(dataset: DatasetArgument, as_json: JsonOption = False) -> None:
    """Every load batch of a data set with its counts and outcome."""
    known_dataset(dataset)
    batches = load_history(store_sessions(), dataset)
    if as_json:
        print_json(batches)
        return
    counts = ("seen", "inserted", "updated", "unchanged", "deleted", "rejected")
    table = Table("id", "name", "mode", "%", "status", *counts, "started")
    for batch in batches:
        table.add_row(
            str(batch["id"]),
            batch["name"],
            batch["mode"],
            "-" if batch["percentage"] is None else f"{batch['percentage']:g}",
            status_text(batch["status"]),
            *(f"{batch[f'rows_{n}']:,}" for n in counts),
            batch["started_at"][:19].replace("T", " "),
        )
    console.print(table)


@data_app.command("rejections")
@user_errors
def data_rejections(
    dataset: DatasetArgument,
    batch: Annotated[int | None, typer.Option(help="Only this load batch's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Rows kept aside, with the reason and the line of the source each came from."""
    known_dataset(dataset)
    page = rejection_page(
        store_sessions(), dataset, batch_id=batch, stage=None, limit=limit, offset=0
    )
    if as_json:
        print_json(page)
        return
    by_stage = ", ".join(f"{count:,} at {stage}" for stage, count in page["by_stage"].items())
    console.print(
        f"[bold]{dataset}[/]: {page['total']:,} rejected rows"
        + (f" ({by_stage})" if by_stage else "")
    )
    table = Table("batch", "stage", "line", "key", "reason")
    for row in page["rejections"]:
        table.add_row(
            str(row["batch_id"] or "-"),
            row["stage"],
            "-" if row["line"] is None else str(row["line"]),
            (row["key"] or "-")[:24],
            row["reason"],
        )
    console.print(table)


def _print_state(dataset: str, state: dict[str, Any]) -> None:
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
