"""API tokens: HS256 JWTs carrying the user name (``sub``), ``role`` and expiry (``exp``).

The signing key comes from ``MLF_JWT_SECRET``. On a laptop, when it is unset, a random key is
generated once and kept in ``MLF_HOME/jwt_secret`` (mode 0600) so tokens survive restarts; with
``MLF_ENV=production`` the API refuses to start without the variable. The key is never logged.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from mlfactory.errors import UserError
from mlfactory.settings import Settings

ALGORITHM = "HS256"
MIN_KEY_CHARS = 32
"""RFC 7518 wants an HS256 key of at least 256 bits; shorter ones are refused."""


class ConfigurationError(UserError):
    """The API cannot start as configured; the message says what to set."""


class InvalidToken(Exception):
    """The token is missing, malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class TokenClaims:
    username: str
    role: str
    expires_at: datetime


def signing_key(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        key, origin = settings.jwt_secret.get_secret_value(), "MLF_JWT_SECRET"
    elif settings.env == "production":
        raise ConfigurationError("MLF_JWT_SECRET must be set when MLF_ENV=production")
    else:
        path = settings.home / "jwt_secret"
        key, origin = _local_key(path), str(path)
    if len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"the JWT key in {origin} is shorter than {MIN_KEY_CHARS} characters; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return key


def _local_key(path: Path) -> str:
    """The key kept at ``path``, generated first if there is none.

    It is written to a private temporary file (mkstemp: mode 0600) that is then hard-linked into
    place, so processes starting together agree on one key and never read a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jwt_secret.")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48))
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            os.unlink(temporary)
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
