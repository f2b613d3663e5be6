"""A real HTTP server in a thread that speaks the OpenAI chat-completions protocol, for tests.

It records every request it gets (path, headers, JSON body, arrival time) and answers each one
as told: by a script of behaviours used in order, then by ``rule`` (a function of the request
body), then with a completion. Behaviours: :class:`Reply` (200 with a completion), :class:`Status`
(an HTTP error, optionally with ``Retry-After``), :class:`Hang` (answer only after the client
has given up).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    delay: float = 0.0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Hang:
    seconds: float


Behaviour = Reply | Status | Hang


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    answer: str | None = None  # the completion's text, when it answered with one
    status: int | None = None


@dataclass
class FakeChatServer:
    script: deque[Behaviour] = field(default_factory=deque)
    rule: Callable[[dict[str, Any]], Behaviour | None] = lambda _body: None
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def then(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def answered(self) -> list[Received]:
        """The requests answered with a completion, in order."""
        with self._lock:
            return [request for request in self.requests if request.answer is not None]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _receive(self, request: Received) -> tuple[Behaviour, int]:
        with self._lock:
            self.requests.append(request)
            behaviour = self.script.popleft() if self.script else self.rule(request.body)
            return behaviour or Reply(), len(self.requests)


def _handler(server: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = Received(
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=json.loads(self.rfile.read(length)),
                at=time.monotonic(),
            )
            behaviour, number = server._receive(request)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(request, behaviour, number)  # raises if the client gave up (Hang)

        def _answer(self, request: Received, behaviour: Behaviour, number: int) -> None:
            if isinstance(behaviour, Hang):
                time.sleep(behaviour.seconds)
                self._send(504, {"error": "too late"})
                return
            if isinstance(behaviour, Status):
                request.status = behaviour.code
                headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
                self._send(behaviour.code, {"message": "scripted failure"}, headers)
                return
            time.sleep(behaviour.delay)
            text = f"Résumé n°{number} : une explication simple de l'article."
            request.status, request.answer = 200, text
            self._send(200, _completion(request.body, text, behaviour.finish_reason))

        def _send(
            self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


def _completion(body: dict[str, Any], text: str, finish_reason: str) -> dict[str, Any]:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "model": f"{body['model']}-2511",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360},
    }
