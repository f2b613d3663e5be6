"""Limits that keep one caller from starving the others: requests per user, request body size.

Both answer with problem details: 429 with ``Retry-After``, 413.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlfactory.api.problems import problem


class RateLimit:
    """At most ``per_minute`` requests per user in any minute, counted in this process.

    A sliding-window counter: two counters per user, no burst of twice the limit at a window's
    edge (as a fixed window allows). The storage is this process's memory, so with N server
    processes a user may reach N times the limit; a keep-alive client talks to one process.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def hit(self, username: str) -> None:
        """Count one request of ``username``; 429 when it is one too many."""
        if self._limiter.hit(self._item, username):
            return
        reset_at = self._limiter.get_window_stats(self._item, username).reset_time
        wait = max(1, math.ceil(reset_at - time.time()))
        raise HTTPException(
            429,
            f"more than {self.per_minute} requests in a minute; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` (413), whether declared or streamed.

    A declared ``Content-Length`` is refused before anything is read; a chunked body is counted
    as the route reads it, and reading stops at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await problem(413, self._message, instance=scope["path"])(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message)
            return message

        await self.app(scope, counted, send)

    @property
    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"
