"""Users in the store: create, list, disable, and check a password (argon2 through pwdlib).

Only the argon2 hash of a password is stored; the password itself is never kept nor logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal, cast

from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.store import User

Role = Literal["viewer", "user", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "user", "admin")
"""Each role can do what the roles before it can: read; read and predict; everything."""

MIN_PASSWORD_CHARS = 8
USERNAME = re.compile(r"[\w.@-]{1,100}")

_hasher = PasswordHash.recommended()


class AccountError(UserError):
    pass


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    disabled: bool
    created_at: datetime


def has_role(role: str, required: str) -> bool:
    """Whether ``role`` may do what ``required`` may (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(cast(Role, required))


def add_user(sessions: sessionmaker[Session], username: str, password: str, role: str) -> Account:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; choose among {', '.join(ROLES)}")
    if not USERNAME.fullmatch(username):
        raise AccountError(
            f"bad user name {username!r}: 1 to 100 letters, digits, '.', '_', '@' or '-'"
        )
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    try:
        with sessions.begin() as session:
            user = User(username=username, password_hash=_hasher.hash(password), role=role)
            session.add(user)
            session.flush()
            return _account(user)
    except IntegrityError:
        raise AccountError(f"user {username!r} exists already") from None


def list_users(sessions: sessionmaker[Session]) -> list[Account]:
    with sessions() as session:
        return [_account(user) for user in session.scalars(select(User).order_by(User.username))]


def get_user(sessions: sessionmaker[Session], username: str) -> Account | None:
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == username))
        return None if user is None else _account(user)


def disable_user(sessions: sessionmaker[Session], username: str) -> None:
    """Disable an account: its tokens stop working at once and it can no longer log in."""
    with sessions.begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"no user {username!r}")
        user.disabled = True


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> Account | None:
    """The account when the password is right and the account is enabled, else None."""
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == username))
        stored = _dummy_hash() if user is None else user.password_hash
        account = None if user is None else _account(user)
    # Verifying even for an unknown name keeps that answer as slow as a wrong password's.
    if not _hasher.verify(password, stored) or account is None or account.disabled:
        return None
    return account


@cache
def _dummy_hash() -> str:
    return _hasher.hash("mlfactory-timing-equaliser")


def _account(user: User) -> Account:
    return Account(user.username, cast(Role, user.role), user.disabled, user.created_at)
