"""Give Prometheus a bearer token for the API's ``/metrics``, which only signed-in viewers read.

The cluster's ``mlfactory-init`` job runs this on every ``docker compose up``, before the API and
the Airflow workers start. Opening the store migrates it to the latest schema, so that happens
once, here, instead of in several starting processes at the same time. Then it makes sure the
viewer account ``prometheus`` exists and writes a new token for it to ``PATH``, the file that
Prometheus sends as its credential (``authorization.credentials_file``). Nobody logs in as
``prometheus``: its password is random and forgotten at once. ``mlfactory users disable
prometheus`` stops the scrapes; the next ``up`` does not enable the account again.

The token is signed with ``MLF_JWT_SECRET`` like any other; it is never printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from mlfactory.accounts import add_user, get_user
from mlfactory.api.security import create_token, signing_key
from mlfactory.errors import UserError
from mlfactory.settings import get_settings
from mlfactory.store import session_factory

USERNAME = "prometheus"
ROLE = "viewer"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="File to write the token to.")
    parser.add_argument("--days", type=int, default=365, help="Lifetime of the token (days).")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    try:
        settings = get_settings()
        key = signing_key(settings)
        sessions = session_factory(settings.database_url)
        if get_user(sessions, USERNAME) is None:
            add_user(sessions, USERNAME, secrets.token_urlsafe(32), ROLE)
    except UserError as exc:
        print(f"scrape_token: {exc}", file=sys.stderr)
        return 2
    token, _ = create_token(USERNAME, ROLE, key, timedelta(days=args.days))
    write_readable(args.path, token)
    print(f"scrape_token: wrote a {args.days}-day token of {USERNAME!r} to {args.path}")
    return 0


def write_readable(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so Prometheus never reads half a token.

    Mode 0644: Prometheus runs as another user (nobody). Only the volume holding this file is
    shared with it, and only Prometheus and this job mount that volume.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


if __name__ == "__main__":
    sys.exit(main())
