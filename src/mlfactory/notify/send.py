"""The one way to notify: ``send`` a message through every configured channel.

``send`` never raises. A notification reports on something else (a run, a promotion, drift);
its own failure (SMTP down, webhook refused, even the store unreachable) is logged without
secrets, recorded in ``notifications`` when the store answers, and returned in the Delivery,
but never fails the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from mlfactory.notify import cooldown, mail, webhook
from mlfactory.notify.messages import Message
from mlfactory.settings import Settings

log = logging.getLogger(__name__)

Channel = Literal["mail", "webhook"]
Status = Literal["sent", "failed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    channel: Channel
    status: Status
    error: str | None = None  # secrets removed


@dataclass(frozen=True)
class Delivery:
    """What happened to one message on each configured channel (none configured: empty)."""

    cause: str
    outcomes: tuple[Outcome, ...]

    def status(self, channel: Channel) -> Status | None:
        """The channel's outcome, None when the channel is not configured."""
        return next((o.status for o in self.outcomes if o.channel == channel), None)


def send(
    settings: Settings,
    sessions: sessionmaker[Session],
    message: Message,
    recipients: Sequence[str] = (),
) -> Delivery:
    """Send ``message`` by mail (to ``recipients``, else ``notify_to``) when an SMTP server is
    set, and to the webhook when one is set; a channel skips a cause it sent within
    ``notify_cooldown_minutes``."""
    channels: list[tuple[Channel, Callable[[], None]]] = []
    if settings.smtp_host:
        to = mail.recipients(settings, recipients)
        channels.append(("mail", lambda: mail.send_mail(settings, message, to)))
    if settings.notify_webhook_url:
        url = settings.notify_webhook_url
        channels.append(("webhook", lambda: webhook.post(url, message)))
    window = timedelta(minutes=settings.notify_cooldown_minutes)
    secrets = _secrets(settings)
    outcomes = tuple(
        _deliver(sessions, message.cause, channel, deliver, window, secrets)
        for channel, deliver in channels
    )
    return Delivery(message.cause, outcomes)


def _deliver(
    sessions: sessionmaker[Session],
    cause: str,
    channel: Channel,
    deliver: Callable[[], None],
    window: timedelta,
    secrets: list[str],
) -> Outcome:
    go, claim_id = _claim(sessions, cause, channel, window, secrets)
    if not go:
        log.info("notification %s by %s skipped: sent within the cooldown", cause, channel)
        return Outcome(channel, "skipped")
    status: cooldown.Outcome = "sent"
    error = None
    try:
        deliver()
        log.info("notification %s sent by %s", cause, channel)
    except Exception as exc:
        status, error = "failed", _describe(exc, secrets)
        log.warning("notification %s by %s failed: %s", cause, channel, error)
    if claim_id is not None:
        try:
            cooldown.settle(sessions, claim_id, status, error)
        except Exception as exc:
            log.warning("notification %s: outcome not recorded: %s", cause, _describe(exc, secrets))
    return Outcome(channel, status, error)


def _claim(
    sessions: sessionmaker[Session],
    cause: str,
    channel: Channel,
    window: timedelta,
    secrets: list[str],
) -> tuple[bool, int | None]:
    """Whether to send, and the claim to settle afterwards (None when the store did not answer:
    without it there is no cooldown, and a repeated message beats a lost one)."""
    try:
        claim_id = cooldown.claim(sessions, cause, channel, window)
    except Exception as exc:
        log.warning(
            "notification %s: cooldown unknown, sending anyway: %s", cause, _describe(exc, secrets)
        )
        return True, None
    return claim_id is not None, claim_id


def _secrets(settings: Settings) -> list[str]:
    """What must never reach a log or the store: the SMTP password and the webhook URL (its path
    is the webhook's token, and some services put it in the query string instead)."""
    found = []
    if settings.smtp_password is not None and settings.smtp_password.get_secret_value():
        found.append(settings.smtp_password.get_secret_value())
    if settings.notify_webhook_url:
        found.append(settings.notify_webhook_url)
        parts = urlsplit(settings.notify_webhook_url)
        found += [part for part in (parts.path, parts.query) if part.strip("/")]
    return found


def _describe(exc: BaseException, secrets: Iterable[str]) -> str:
    """``Type: message`` with every secret replaced by ``***``."""
    described = f"{type(exc).__name__}: {exc}"
    for secret in sorted(secrets, key=len, reverse=True):
        described = described.replace(secret, "***")
    return described
