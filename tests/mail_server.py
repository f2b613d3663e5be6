"""A real local SMTP server for tests (aiosmtpd), and what tests do with the mail it keeps."""

from __future__ import annotations

import email
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from mlfactory.settings import Settings


@dataclass
class Inbox:
    """An aiosmtpd handler keeping every message it accepts, and whether it came over TLS."""

    messages: list[tuple[list[str], EmailMessage, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=default_policy)
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append((list(envelope.rcpt_tos), parsed, over_tls))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smtp_servers() -> Iterator[Callable[..., tuple[int, Inbox]]]:
    """Start local SMTP servers with the given aiosmtpd options, each giving (port, inbox);
    all are stopped when the generator closes (the ``smtp_server`` fixture of conftest)."""
    controllers: list[Controller] = []

    def start(**options: Any) -> tuple[int, Inbox]:
        inbox, port = Inbox(), free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return port, inbox

    yield start
    for controller in controllers:
        controller.stop()


def with_mail(settings: Settings, port: int, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "smtp_timeout": 5.0,
            "mail_from": "mlfactory@example.org",
            "notify_to": ["team@example.org"],
            **overrides,
        }
    )


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()
