"""``mlfactory new pipeline NAME``: a package with a pipeline, its entry point, a test and a
README, ready to install and run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from jinja2 import Environment, PackageLoader, StrictUndefined

from mlfactory.cli.common import console, user_errors
from mlfactory.errors import UserError

new_app = typer.Typer(help="Start something new from a template.", no_args_is_help=True)

# template -> where it goes in the new package ({package} is the Python package's name)
FILES = {
    "pyproject.toml.j2": "pyproject.toml",
    "README.md.j2": "README.md",
    "pipeline.py.j2": "src/{package}/pipeline.py",
    "__init__.py.j2": "src/{package}/__init__.py",
    "test_pipeline.py.j2": "tests/test_{package}.py",
}


@new_app.command("pipeline")
@user_errors
def new_pipeline(
    name: Annotated[str, typer.Argument(help="The pipeline's name, e.g. churn.")],
    directory: Annotated[
        Path | None, typer.Option(help="Where to create the package (default: ./NAME).")
    ] = None,
) -> None:
    """Scaffold a package holding pipeline NAME: its entry point, one test and a README."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,49}", name):
        raise UserError(f"{name!r}: a pipeline name is lower-case letters, digits and _")
    target = (directory or Path(name)).resolve()
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty")
    environment = Environment(
        loader=PackageLoader("mlfactory.cli", "scaffold"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    values = {"name": name, "package": f"{name}_pipeline"}
    for template, destination in FILES.items():
        path = target / destination.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(environment.get_template(template).render(values))
    console.print(
        f"Created [bold]{target}[/]: `pip install -e {target}`, then `mlfactory run {name}`; "
        f"its test: `pytest {target / 'tests'}`"
    )
