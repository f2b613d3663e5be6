"""One input check for every route, before any route sees the request: no NUL byte, unpaired
surrogate or non-finite number anywhere a request can carry one (path, query string, a form or
JSON body). Such values are nothing any route can use, and further in they surface as database
errors (PostgreSQL refuses NUL in text) or overflows; here they are a 422 naming the field.

JSON bodies are parsed with orjson, which refuses numbers that overflow a double (``1e400``, an
integer of 400 digits), ``NaN`` and unpaired surrogates; what it refuses is read again to name
the field. The body then goes on to the route unchanged.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlfactory.api.problems import problem

Location = list[str | int]
MAX_DOUBLE = sys.float_info.max


class InputGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problems = list(_text_problems(["path"], scope["path"]))
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            problems += _text_problems(["query", name], value)
        kind = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        body = b""
        if kind in ("application/json", "application/x-www-form-urlencoded"):
            try:
                body = await _read(receive)
            except HTTPException as exc:  # the body size limit, around this guard
                response = problem(exc.status_code, exc.detail, instance=scope["path"])
                await response(scope, receive, send)
                return
            problems += _body_problems(kind, body)
        if problems:
            detail = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems[:5])
            errors = [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in problems]
            await problem(422, detail, instance=scope["path"], errors=errors)(scope, receive, send)
            return
        if body or kind in ("application/json", "application/x-www-form-urlencoded"):
            receive = _replay(body)
        await self.app(scope, receive, send)


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _body_problems(kind: str, body: bytes) -> list[tuple[Location, str]]:
    if not body:
        return []
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return [(["body"], "the form is not UTF-8")]
        return [p for name, value in pairs for p in _text_problems(["body", name], value)]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses what no route can use but says not where: read it again, slowly, to
        # name the field (or leave the malformed JSON to the route's own 422).
        try:
            document = json.loads(body, parse_constant=lambda name: float(name))
        except (ValueError, RecursionError):
            return []
        return list(_json_problems(["body"], document)) or [(["body"], str(exc))]
    if b"\\u0000" not in body:  # a JSON string holds a NUL only as this escape
        return []
    return list(_json_problems(["body"], document))


def _json_problems(loc: Location, value: Any) -> Iterator[tuple[Location, str]]:
    if isinstance(value, str):
        yield from _text_problems(loc, value)
    elif isinstance(value, float) and not math.isfinite(value):
        yield loc, f"{value} is not a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_DOUBLE:
        yield loc, f"a {len(str(abs(value)))}-digit integer is beyond any number a model takes"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _text_problems([*loc, key], key)
            yield from _json_problems([*loc, key], item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_problems([*loc, index], item)


def _text_problems(loc: Location, text: str) -> list[tuple[Location, str]]:
    if "\x00" in text:
        return [(loc, "contains a NUL character")]
    try:
        text.encode()
    except UnicodeEncodeError:
        return [(loc, "contains an unpaired surrogate (not Unicode text)")]
    return []
