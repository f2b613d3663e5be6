"""A Slack-compatible webhook: ``{"text": ..., "blocks": [...]}`` posted as JSON.

``text`` is the subject (what the notification pop-up shows); the blocks hold a header, the
plain-text body in a code block (so its columns stay aligned) and the status page's link.
A webhook URL carries its own secret token: treat it as a password.
"""

from __future__ import annotations

from typing import Any

import httpx

from mlfactory.notify.messages import Message

TIMEOUT_SECONDS = 10.0
HEADER_CHARS = 150  # Slack's limit for a header block
SECTION_CHARS = 3000  # Slack's limit for a section's text


def payload(message: Message) -> dict[str, Any]:
    fence = "```"
    body = _shorten(_escape(message.text.strip()), SECTION_CHARS - 2 * len(fence))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _shorten(message.subject, HEADER_CHARS)},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{fence}{body}{fence}"}},
    ]
    if message.link:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<{message.link}|Open the status page>"},
            }
        )
    return {"text": message.subject, "blocks": blocks}


def post(url: str, message: Message) -> None:
    """Post ``message`` to the webhook at ``url``; raises on a network error or an HTTP error."""
    response = httpx.post(url, json=payload(message), timeout=TIMEOUT_SECONDS)
    response.raise_for_status()


def _escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup; everything else in mrkdwn text is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
