"""``mlfactory users``: accounts of the API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from mlfactory.cli.common import JsonOption, console, print_json, store_sessions, user_errors

users_app = typer.Typer(help="Accounts of the API: add, list, disable.", no_args_is_help=True)


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
    account = add_user(store_sessions(), name, password, role)
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
        for account in list_users(store_sessions())
    ]
    if as_json:
        print_json(rows)
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

    disable_user(store_sessions(), name)
    console.print(f"Disabled user [bold]{name}[/]")
