"""Login: the OAuth2 password flow issues a bearer token."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from mlfactory.accounts import authenticate, get_user
from mlfactory.api.deps import CHALLENGE, SessionsDep, SettingsDep
from mlfactory.api.security import create_token
from mlfactory.api.trail import audit

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/token", response_model=Token)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    sessions: SessionsDep,
    settings: SettingsDep,
) -> Token:
    """Exchange a user name and password for a token (``Authorization: Bearer <token>``)."""
    # Attempts are throttled per address and name (growing delays after a few failures) and
    # per address: that bounds password guessing and the argon2 work a caller can make the
    # server do, and never locks the name's owner out (their tokens are not counted here).
    address = request.client.host if request.client else "unknown"
    throttle = request.app.state.login_throttle
    throttle.check(address, form.username)
    account = authenticate(sessions, form.username, form.password)
    if account is None:
        throttle.failed(address, form.username)
        # Failed logins are audited for existing accounts only: names anybody may type would
        # let an anonymous caller grow an append-only table without bound.
        known = "\x00" not in form.username and get_user(sessions, form.username) is not None
        if known:
            audit(sessions, form.username, "login.failed", "api")
        raise HTTPException(401, "wrong user name or password", headers=CHALLENGE)
    throttle.succeeded(address, form.username)
    audit(sessions, account.username, "login", "api", detail=f"role {account.role}")
    token, lifetime = create_token(
        account.username,
        account.role,
        request.app.state.signing_key,
        timedelta(minutes=settings.jwt_lifetime_minutes),
    )
    return Token(access_token=token, expires_in=lifetime)
