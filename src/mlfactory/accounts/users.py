"""Users in the store: create, list, disable, and check a password (argon2 through pwdlib)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.errors import UserError
from mlfactory.store import User

Role = Literal["viewer", "user", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "user", "admin")
"""Each role can do what the roles before it can: read; read and predict; everything."""

_hasher = PasswordHash.recommended()
# Verifying against this keeps a login for an unknown name as slow as one with a wrong password.
_DUMMY_HASH = _hasher.hash("mlfactory-timing-equaliser")


class AccountError(UserError):
    pass


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    disabled: bool


def has_role(role: str, required: str) -> bool:
    return ROLES.index(role) >= ROLES.index(required)  # type: ignore[arg-type]


def add_user(sessions: sessionmaker[Session], username: str, password: str, role: str) -> Account:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; choose among {', '.join(ROLES)}")
    if not username.strip() or len(username) > 100:
        raise AccountError("a user name has 1 to 100 characters")
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
    try:
        with sessions.begin() as session:
            session.add(User(username=username, password_hash=_hasher.hash(password), role=role))
    except IntegrityError:
        raise AccountError(f"user {username!r} exists already") from None
    return Account(username, role, False)  # type: ignore[arg-type]


def list_users(sessions: sessionmaker[Session]) -> list[Account]:
    with sessions() as session:
        users = session.scalars(select(User).order_by(User.username)).all()
    return [Account(u.username, u.role, u.disabled) for u in users]  # type: ignore[arg-type]


def get_user(sessions: sessionmaker[Session], username: str) -> Account | None:
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == username))
    return None if user is None else Account(user.username, user.role, user.disabled)  # type: ignore[arg-type]


def disable_user(sessions: sessionmaker[Session], username: str) -> None:
    with sessions.begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"no user {username!r}")
        user.disabled = True


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> Account | None:
    """The account when the password is right and the account is enabled, else None."""
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _hasher.verify(password, _DUMMY_HASH)
        return None
    if not _hasher.verify(password, user.password_hash) or user.disabled:
        return None
    return Account(user.username, user.role, user.disabled)  # type: ignore[arg-type]
