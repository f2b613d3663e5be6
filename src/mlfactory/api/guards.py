"""Limits that keep one caller from starving the others: requests per user, login attempts per
address and name, request body size.

All answer with problem details: 429 with ``Retry-After``, 413.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
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


class LoginThrottle:
    """Login attempts, per client address and user name, with growing delays.

    A name's first ``FREE_FAILURES`` failed attempts from an address cost nothing; each further
    one makes that address wait twice as long before it may try the name again (1 s, 2 s, 4 s,
    ... up to ``MAX_DELAY``); a success clears the count. Every address may try at most
    ``per_minute`` logins a minute, whatever the names. Nothing here touches tokens already
    issued: a stranger's failures can slow the stranger, never lock a user out of the API.
    Counted in this process's memory (at most ``MAX_TRACKED`` address and name pairs).
    """

    FREE_FAILURES = 5
    MAX_DELAY = 900.0
    MAX_TRACKED = 100_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._per_address = MovingWindowRateLimiter(MemoryStorage())  # exact: a few per address
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()

    def check(self, address: str, name: str) -> None:
        """Count an attempt; 429 when the address must wait (for this name, or at all)."""
        if not self._per_address.hit(self._item, address):
            reset_at = self._per_address.get_window_stats(self._item, address).reset_time
            _too_many(
                f"more than {self.per_minute} login attempts in a minute from this address",
                reset_at - time.time(),
            )
        _, allowed_at = self._failures.get((address, name), (0, 0.0))
        if time.monotonic() < allowed_at:
            _too_many(
                "too many failed logins for this name from this address",
                allowed_at - time.monotonic(),
            )

    def failed(self, address: str, name: str) -> None:
        failures = self._failures.pop((address, name), (0, 0.0))[0] + 1
        extra = failures - self.FREE_FAILURES
        delay = min(2.0 ** (extra - 1), self.MAX_DELAY) if extra > 0 else 0.0
        self._failures[(address, name)] = (failures, time.monotonic() + delay)
        while len(self._failures) > self.MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, address: str, name: str) -> None:
        self._failures.pop((address, name), None)


def _too_many(message: str, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    raise HTTPException(
        429, f"{message}; retry in {seconds} s", headers={"Retry-After": str(seconds)}
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
