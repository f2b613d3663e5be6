"""A client of an OpenAI-compatible ``/chat/completions`` API (Mistral's by default).

What is retried, with exponential backoff and jitter (``Backoff``): timeouts, connection errors,
HTTP 429 (waiting what ``Retry-After`` asks, when it says) and 5xx. Any other 4xx is a mistake in
the request or the key that a retry would only repeat, so it fails at once. The key is sent as
a Bearer token and appears in no log line and no error message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Self

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from mlfactory.settings import Settings

logger = logging.getLogger(__name__)


class ChatError(Exception):
    """The API gave no usable answer (after the retries, for what is retried). The message is a
    short reason, the same for every request that failed the same way."""


class _Transient(ChatError):
    """A failure worth another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``initial`` seconds doubling up to ``maximum``, plus a random
    jitter up to ``jitter`` seconds (so that workers do not retry in step). A ``Retry-After``
    of a 429 is waited instead, up to ``retry_after_max`` seconds."""

    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 1.0
    retry_after_max: float = 120.0


@dataclass(frozen=True)
class Completion:
    text: str
    model: str  # the model that answered, as the API names it
    usage: dict[str, Any] = field(default_factory=dict)


class ChatClient:
    """One connection pool to the chat API; use it as a context manager, or call ``close``."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        temperature: float = 0.3,
        max_tokens: int = 400,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: Backoff | None = None,
    ) -> None:
        if not api_key.get_secret_value().strip():
            raise ValueError("the chat API key is empty")
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff = backoff or Backoff()
        self._exponential = wait_exponential(
            multiplier=self.backoff.initial, max=self.backoff.maximum
        ) + wait_random(0, self.backoff.jitter)
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings, backoff: Backoff | None = None) -> Self:
        if settings.llm_api_key is None:
            raise ValueError("no chat API key: set MLF_LLM_API_KEY")
        return cls(
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_model,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            timeout=settings.llm_timeout,
            retries=settings.llm_retries,
            backoff=backoff,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """The model's answer to ``messages``, or :class:`ChatError` saying why there is none."""
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        attempts = self.retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(self._post, payload)
        except _Transient as exc:
            raise ChatError(f"{exc} (gave up after {attempts} attempts)") from exc

    def _post(self, payload: dict[str, Any]) -> Completion:
        try:
            response = self._http.post("/chat/completions", json=payload)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out ({type(exc).__name__})") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # proxy, decoding, protocol misuse: not worth a retry
            raise ChatError(f"request failed ({type(exc).__name__})") from exc
        status = response.status_code
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise _Transient(_http_reason(status), retry_after)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise _Transient(_http_reason(status))
        if status >= HTTPStatus.BAD_REQUEST:
            raise ChatError(_http_reason(status))
        return self._completion(response)

    def _completion(self, response: httpx.Response) -> Completion:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = _content_text(choice["message"]["content"])
        except (ValueError, LookupError, TypeError) as exc:
            raise ChatError("malformed answer: no choices[0].message.content") from exc
        finish = choice.get("finish_reason")
        if finish == "length":
            raise ChatError(
                f"the answer was cut at max_tokens={self.max_tokens}: raise MLF_LLM_MAX_TOKENS"
            )
        if finish == "error":  # Mistral: generation stopped partway; worth another try
            raise _Transient("the model stopped with an error")
        if finish not in ("stop", None):  # model_length, content_filter, ...: not a whole answer
            raise ChatError(f"the answer is not complete (finish_reason {finish!r})")
        if not text.strip():
            raise ChatError("empty answer")
        usage = body.get("usage")
        return Completion(
            text=text.strip(),
            model=str(body.get("model") or self.model),
            usage=usage if isinstance(usage, dict) else {},
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, self.backoff.retry_after_max)
        return self._exponential(state)


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or (Mistral's reasoning models) a list of
    chunks of which the ``text`` ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            chunk["text"]
            for chunk in content
            if isinstance(chunk, dict) and chunk.get("type") == "text"
        )
    raise TypeError(f"unexpected content of type {type(content).__name__}")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _http_reason(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.warning(
        "chat API attempt %d failed (%s); retrying in %.2fs", state.attempt_number, error, wait
    )
