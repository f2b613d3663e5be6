"""The audit trail: who did what to what and when, with the state before and after.

``record`` adds an entry to the caller's session, so the entry commits or rolls back together
with the change it describes. The trail is append-only: nothing here updates or deletes an
entry, and database triggers (migration 0003) reject UPDATE and DELETE on SQLite and
PostgreSQL, so not even a direct SQL session can rewrite history.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlfactory.store.tables import AuditLog

ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
"""An action names what was done, dotted from the general to the particular: ``alias.set``,
``run.trigger``, ``model.reload``, ``login``."""

MAX_PAGE = 1000


def record(
    session: Session,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditLog:
    """Add one entry to the trail in ``session`` (flushed, so it has its id)."""
    _check_text("actor", actor, AuditLog.actor.type.length)
    _check_text("target", target, AuditLog.target.type.length)
    if not ACTION.fullmatch(action) or len(action) > AuditLog.action.type.length:
        raise ValueError(
            f"bad audit action {action!r}: lower-case words joined by dots, such as 'alias.set'"
        )
    for name, state in (("before", before), ("after", after)):
        _check_json(name, state)
    entry = AuditLog(
        actor=actor, action=action, target=target, before=before, after=after, detail=detail
    )
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> tuple[int, list[AuditLog]]:
    """One page of the trail, newest first (optionally only one actor's, action's or target's
    entries), and how many entries match in all."""
    if not 0 < limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    filters = {"actor": actor, "action": action, "target": target}
    where = [getattr(AuditLog, name) == value for name, value in filters.items() if value]
    total = session.scalar(select(func.count()).select_from(AuditLog).where(*where)) or 0
    entries = session.scalars(
        select(AuditLog).where(*where).order_by(AuditLog.id.desc()).limit(limit).offset(offset)
    ).all()
    return total, list(entries)


def _check_text(name: str, value: str, max_chars: int | None) -> None:
    if not value or not value.strip():
        raise ValueError(f"an audit entry needs a non-empty {name}")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"audit {name} is {len(value)} characters long, at most {max_chars}")


def _check_json(name: str, state: dict[str, Any] | None) -> None:
    """Refuse here, naming the field, what the JSON column would refuse at commit."""
    if state is None:
        return
    if not isinstance(state, dict):
        raise ValueError(f"audit {name} must be a JSON object (dict), got {type(state).__name__}")
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit {name} is not JSON-serialisable: {exc}") from None
