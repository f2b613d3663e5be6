"""Audit rows for what people do through the API: logins, run triggers, model reloads."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store.audit import record

log = logging.getLogger(__name__)


def audit(
    sessions: sessionmaker[Session],
    actor: str,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> None:
    """Append one row to the audit trail, in a transaction of its own. The action it records has
    happened already: a failure to record it is logged, never turned into an error answer."""
    try:
        with sessions.begin() as session:
            record(session, actor, action, target, before=before, after=after, detail=detail)
    except Exception:
        log.exception("audit row %s of %s on %s not recorded", action, actor, target)
