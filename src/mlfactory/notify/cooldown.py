"""One cause, one message: the cooldown, kept in the store so that every process shares it.

Before sending, a process claims the (cause, channel) pair by inserting a ``sending`` row in
``notifications``. When a row of the same pair is ``sending`` or ``sent`` within the cooldown,
the claim becomes ``skipped`` and nothing goes out. Claims of one pair are serialised: on
PostgreSQL by a transaction-scoped advisory lock, on SQLite by its single writer (the claim's
INSERT is the transaction's first statement, so it waits for a concurrent claim to commit and
then sees it). A failed attempt does not hold the cause back, the next one tries again; a
process that dies while sending leaves its ``sending`` row, which holds the cause for one
cooldown.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Literal

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.store.tables import Notification, utcnow

Outcome = Literal["sent", "failed"]


def claim(
    sessions: sessionmaker[Session], cause: str, channel: str, cooldown: timedelta
) -> int | None:
    """The id of a new ``sending`` row for (cause, channel), or None when the cause went out
    (or is going out) on that channel within ``cooldown``."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(cause, channel)}
            )
        now = utcnow()
        row = Notification(cause=cause, channel=channel, sent_at=now, status="sending")
        session.add(row)
        session.flush()
        if cooldown <= timedelta(0):
            return row.id
        earlier = session.scalar(
            select(Notification.id)
            .where(
                Notification.cause == cause,
                Notification.channel == channel,
                Notification.status.in_(("sending", "sent")),
                Notification.sent_at >= now - cooldown,
                Notification.id != row.id,
            )
            .limit(1)
        )
        if earlier is None:
            return row.id
        row.status = "skipped"
        return None


def settle(
    sessions: sessionmaker[Session], claim_id: int, status: Outcome, error: str | None = None
) -> None:
    """Record how the claimed attempt ended (``error`` must hold no secret)."""
    with sessions.begin() as session:
        session.execute(
            update(Notification)
            .where(Notification.id == claim_id)
            .values(status=status, error=error)
        )


def _lock_key(cause: str, channel: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory lock of one (cause, channel)."""
    digest = hashlib.blake2b(f"notify\0{channel}\0{cause}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
