"""Dependencies of the routes: settings, store sessions and the authenticated user.

Every protected route depends on ``require(role)`` (through ``Viewer``, ``User`` or ``Admin``),
which checks, in this order: a bearer token is there (401), its signature and expiry hold (401),
its user is within the rate limit (429), exists and is enabled (401), and has the role (403).
The role is the one the store holds now, so a downgrade takes effect before the token expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import ROLES, Account, get_user, has_role
from mlfactory.api.security import InvalidToken, decode_token
from mlfactory.settings import Settings

oauth2 = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)
CHALLENGE = {"WWW-Authenticate": "Bearer"}
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}  # RFC 6750, section 3


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]


def current_user(
    request: Request, sessions: SessionsDep, token: Annotated[str | None, Depends(oauth2)]
) -> Account:
    """The enabled account the bearer token names; 401 (or 429) otherwise, saying why."""
    if token is None:
        raise HTTPException(401, "not authenticated: send a bearer token", headers=CHALLENGE)
    try:
        claims = decode_token(token, request.app.state.signing_key)
    except InvalidToken as exc:
        raise HTTPException(401, str(exc), headers=INVALID_TOKEN) from None
    # Counted before the store is asked, so a flood of valid tokens costs the store nothing.
    request.app.state.rate_limit.hit(claims.username)
    account = get_user(sessions, claims.username)
    if account is None or account.disabled:
        raise HTTPException(401, "the token's user is unknown or disabled", headers=INVALID_TOKEN)
    request.state.username = account.username
    return account


def require(role: str) -> Callable[..., Awaitable[Account]]:
    """A dependency admitting accounts with ``role`` or a stronger one (403 otherwise).

    Its name, ``require_<role>``, is what the route audit (tests/test_api_auth.py) reads.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    # async: it only compares two strings, so it need not take a thread-pool hop.
    async def check(account: Annotated[Account, Depends(current_user)]) -> Account:
        if not has_role(account.role, role):
            raise HTTPException(403, f"role {account.role!r} may not do this; needs {role!r}")
        return account

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[Account, Depends(require("viewer"))]
User = Annotated[Account, Depends(require("user"))]
Admin = Annotated[Account, Depends(require("admin"))]
