"""Mail over SMTP: one multipart/alternative message (plain text and HTML) per notification.

``smtp_security`` chooses how the connection is protected: ``starttls`` (upgrade a plain
connection, port 587), ``ssl`` (TLS from the first byte, port 465) or ``none``. Certificates
are verified against the system's trust store; point ``SSL_CERT_FILE`` at a CA bundle to trust
a private CA. The password only ever goes to ``SMTP.login``: it is never logged.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mlfactory.notify.messages import Message
from mlfactory.settings import Settings


def recipients(settings: Settings, own: Sequence[str] = ()) -> list[str]:
    """Who receives a pipeline's mail: its own recipients, else everyone in ``notify_to``."""
    chosen = [address.strip() for address in (own or settings.notify_to) if address.strip()]
    return list(dict.fromkeys(chosen))


def build_email(settings: Settings, message: Message, to: Sequence[str]) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = settings.mail_from
    email["To"] = ", ".join(to)
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email


def send_mail(settings: Settings, message: Message, to: Sequence[str]) -> None:
    """Deliver ``message`` to ``to`` through the configured SMTP server; raises on failure."""
    if not settings.smtp_host:
        raise ValueError("no SMTP server: set MLF_SMTP_HOST")
    if not to:
        raise ValueError("no recipients: set MLF_NOTIFY_TO or the pipeline's own recipients")
    email = build_email(settings, message, to)
    with _connect(settings) as smtp:
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(email)


def _connect(settings: Settings) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host or "", settings.smtp_port, settings.smtp_timeout
    if settings.smtp_security == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    if settings.smtp_security == "starttls":
        try:
            smtp.starttls(context=ssl.create_default_context())
        except BaseException:
            smtp.close()
            raise
    return smtp
