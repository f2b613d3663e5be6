"""Dependencies of the routes: settings, store sessions and the authenticated user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import get_user, has_role
from mlfactory.accounts.users import Account
from mlfactory.api.security import InvalidToken, decode_token
from mlfactory.settings import Settings

oauth2 = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]


def current_user(
    request: Request, sessions: SessionsDep, token: Annotated[str | None, Depends(oauth2)]
) -> Account:
    """The enabled account the bearer token names; 401 otherwise, saying why."""
    if token is None:
        raise HTTPException(401, "not authenticated: send a bearer token", headers=CHALLENGE)
    try:
        claims = decode_token(token, request.app.state.signing_key)
    except InvalidToken as exc:
        raise HTTPException(401, str(exc), headers=CHALLENGE) from None
    account = get_user(sessions, claims.username)
    if account is None or account.disabled:
        raise HTTPException(401, "the token's user is unknown or disabled", headers=CHALLENGE)
    request.state.username = account.username
    return account


def require(role: str) -> Callable[..., Account]:
    """A dependency admitting accounts with ``role`` or a stronger one (403 otherwise)."""

    def check(account: Annotated[Account, Depends(current_user)]) -> Account:
        if not has_role(account.role, role):
            raise HTTPException(403, f"role {account.role!r} may not do this; needs {role!r}")
        return account

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[Account, Depends(require("viewer"))]
User = Annotated[Account, Depends(require("user"))]
Admin = Annotated[Account, Depends(require("admin"))]
