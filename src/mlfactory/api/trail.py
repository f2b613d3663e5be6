"""Audit rows for what people do through the API: logins, run triggers, model reloads."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store.audit import record


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
    """Append one row to the audit trail, in a transaction of its own."""
    with sessions.begin() as session:
        record(session, actor, action, target, before=before, after=after, detail=detail)
