"""Accounts in the store (both backends): add, list, disable, passwords hashed with argon2, and the
``mlfactory users`` commands as a person or a script runs them."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from contextlib import suppress
from select import select as wait_readable

import pytest
from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import (
    AccountError,
    add_user,
    authenticate,
    disable_user,
    get_user,
    has_role,
    list_users,
)
from mlfactory.store import User

PASSWORD = "correct horse battery"
MLFACTORY = [sys.executable, "-m", "mlfactory"]


def users(
    env: dict[str, str], *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MLFACTORY, "users", *args],
        env=env,
        input="" if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_disable(sessions: sessionmaker[Session]) -> None:
    added = add_user(sessions, "bob", PASSWORD, "user")
    add_user(sessions, "ann", PASSWORD, "admin")
    assert (added.username, added.role, added.disabled) == ("bob", "user", False)
    assert [(a.username, a.role, a.disabled) for a in list_users(sessions)] == [
        ("ann", "admin", False),
        ("bob", "user", False),
    ]
    disable_user(sessions, "bob")
    assert get_user(sessions, "bob").disabled  # type: ignore[union-attr]
    assert not get_user(sessions, "ann").disabled  # type: ignore[union-attr]
    assert get_user(sessions, "nobody") is None


def test_only_the_argon2_hash_is_stored(sessions: sessionmaker[Session]) -> None:
    add_user(sessions, "ann", PASSWORD, "viewer")
    with sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "ann"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHash.recommended().verify(PASSWORD, stored)


def test_authenticate(sessions: sessionmaker[Session]) -> None:
    add_user(sessions, "ann", PASSWORD, "viewer")
    assert authenticate(sessions, "ann", PASSWORD).username == "ann"  # type: ignore[union-attr]
    assert authenticate(sessions, "ann", PASSWORD.upper()) is None
    assert authenticate(sessions, "nobody", PASSWORD) is None
    disable_user(sessions, "ann")
    assert authenticate(sessions, "ann", PASSWORD) is None


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("ann", PASSWORD, "root", "unknown role 'root'; choose among viewer, user, admin"),
        ("ann", "short", "user", "a password has at least 8 characters"),
        ("", PASSWORD, "user", "bad user name ''"),
        ("two words", PASSWORD, "user", "bad user name 'two words'"),
        ("a" * 101, PASSWORD, "user", "bad user name"),
    ],
)
def test_bad_accounts_are_refused(
    sessions: sessionmaker[Session], username: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message.replace("(", r"\(")):
        add_user(sessions, username, password, role)
    assert list_users(sessions) == []


def test_names_are_unique_and_unknown_names_cannot_be_disabled(
    sessions: sessionmaker[Session],
) -> None:
    add_user(sessions, "ann", PASSWORD, "viewer")
    with pytest.raises(AccountError, match="user 'ann' exists already"):
        add_user(sessions, "ann", "another password", "admin")
    assert [(a.username, a.role) for a in list_users(sessions)] == [("ann", "viewer")]
    with pytest.raises(AccountError, match="no user 'bob'"):
        disable_user(sessions, "bob")


def test_roles_are_ordered() -> None:
    assert has_role("admin", "viewer") and has_role("user", "user")
    assert not has_role("viewer", "user") and not has_role("user", "admin")
    assert not has_role("root", "viewer")


@pytest.mark.slow
def test_users_commands_with_the_password_on_stdin(
    cli_env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    added = users(cli_env, "add", "ann", "--role", "admin", password=PASSWORD)
    assert added.returncode == 0, added.stderr
    assert "Added user ann with role admin" in added.stdout
    assert authenticate(sessions, "ann", PASSWORD) is not None  # stdin's line, newline stripped
    assert users(cli_env, "add", "bob", password=PASSWORD).returncode == 0  # viewer by default

    assert users(cli_env, "disable", "bob").returncode == 0
    listed = json.loads(users(cli_env, "list", "--json").stdout)
    assert [(u["username"], u["role"], u["disabled"]) for u in listed] == [
        ("ann", "admin", False),
        ("bob", "viewer", True),
    ]
    table = users(cli_env, "list").stdout
    assert "ann" in table and "disabled" in table

    for args, password, message in [
        (["add", "ann"], PASSWORD, "user 'ann' exists already"),
        (["add", "cid", "--role", "root"], PASSWORD, "unknown role 'root'"),
        (["add", "cid"], "short", "a password has at least 8 characters"),
        (["disable", "nobody"], None, "no user 'nobody'"),
    ]:
        refused = users(cli_env, *args, password=password)
        assert refused.returncode == 2, (args, refused.stderr)
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert PASSWORD not in added.stdout + added.stderr


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_users_add_prompts_for_a_hidden_password_on_a_terminal(
    cli_env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    # pty.fork gives the command a terminal of its own, as its controlling one: the password
    # prompt reads /dev/tty. The password is typed once the prompt has turned echo off, as a
    # person would after seeing the prompt; an echoed password would show on ``screen``.
    pid, terminal = pty.fork()
    if pid == 0:  # the child: become the command
        os.execve(sys.executable, [*MLFACTORY, "users", "add", "ann", "--role", "user"], cli_env)
    screen = b""

    def read_until(text: bytes) -> None:
        nonlocal screen
        deadline = time.monotonic() + 30
        while text not in screen and time.monotonic() < deadline:
            if wait_readable([terminal], [], [], 0.1)[0]:
                try:
                    screen += os.read(terminal, 1024)
                except OSError:  # the command closed the terminal
                    break
        assert text in screen, screen

    def type_password_once_echo_is_off() -> None:
        deadline = time.monotonic() + 30
        while termios.tcgetattr(terminal)[3] & termios.ECHO and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not termios.tcgetattr(terminal)[3] & termios.ECHO, "the prompt does not hide input"
        os.write(terminal, PASSWORD.encode() + b"\n")

    try:
        read_until(b"Password:")
        type_password_once_echo_is_off()
        read_until(b"Repeat for confirmation:")
        type_password_once_echo_is_off()
        read_until(b"with role")
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        with suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert PASSWORD.encode() not in screen  # never echoed
    assert authenticate(sessions, "ann", PASSWORD) is not None
