"""API tokens: HS256 JWTs carrying the user name (``sub``), ``role`` and expiry (``exp``).

The signing key comes from ``MLF_JWT_SECRET``. On a laptop, when it is unset, a random key is
generated once and kept in ``MLF_HOME/jwt_secret`` (mode 0600) so tokens survive restarts; with
``MLF_ENV=production`` the API refuses to start without the variable.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from mlfactory.settings import Settings

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The token is missing, malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class TokenClaims:
    username: str
    role: str
    expires_at: datetime


def signing_key(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.env == "production":
        raise RuntimeError("MLF_JWT_SECRET must be set when MLF_ENV=production")
    return _local_key(settings.home / "jwt_secret")


def _local_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_token(username: str, role: str, key: str, lifetime: timedelta) -> tuple[str, int]:
    """A signed token and its lifetime in seconds."""
    expires = datetime.now(UTC) + lifetime
    token = jwt.encode({"sub": username, "role": role, "exp": expires}, key, algorithm=ALGORITHM)
    return token, int(lifetime.total_seconds())


def decode_token(token: str, key: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("the token's signature is not valid") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"the token is not valid: {exc}") from None
    return TokenClaims(claims["sub"], claims["role"], datetime.fromtimestamp(claims["exp"], UTC))
