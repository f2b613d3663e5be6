"""Summaries of articles: one ``summary`` annotation for every item of a data set that has none.

With a chat API key (``MLF_LLM_API_KEY``) a plain-language summary in ``summary_language`` comes
from the LLM (producer ``llm:<model>``, producer_version the prompt's version); without one, a
local extractive summary in the abstract's own language (producer ``extractive``). The
annotation's ``data`` says the language (None for an extractive summary: the source's) and the
model (None for an extractive summary).

Work selection (:mod:`mlfactory.store.claims`): items are claimed in batches, so several workers
share the work and a crash loses nothing; a batch's summaries are written together when the
batch ends, so an article has its whole summary or none. On PostgreSQL the claims are advisory
locks (``claim`` of :func:`~mlfactory.store.claims.work_through`): no transaction stays open while
the API answers, and a batch holds at most ``MAX_CLAIMS_PER_BATCH`` articles.

Failures. An article whose summary fails (the API's retries exhausted, a refused request, a
malformed answer, no title or abstract in the item) stays pending; the call goes on with the
others and reports how many failed and why; the next call tries them again. Two exceptions:

- after ``max_consecutive_failures`` API failures in a row the call stops claiming (the service
  is down or the key refused: trying every article would only take the retries' time again and
  again);
- when no summary was written and the API failed on an article, the call raises
  :class:`SummariesFailed` (so the pipeline step fails and says why) rather than returning
  counts. Articles with no title or abstract are only reported: they fail the same way on every
  run, and would otherwise fail every run of the pipeline.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy import Row, Select, exists, insert, select
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.enrich.chat import Backoff, ChatClient, ChatError
from mlfactory.enrich.extractive import EXTRACTIVE_VERSION, extractive_summary
from mlfactory.enrich.prompts import PROMPT_VERSION, summary_messages
from mlfactory.settings import Settings
from mlfactory.store import Annotation, Item
from mlfactory.store.claims import work_through

Sessions = sessionmaker[Session]
KIND = "summary"
EXTRACTIVE = "extractive"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    content: str
    producer: str
    producer_version: str
    data: dict[str, Any] = field(default_factory=dict)


class Summarizer(Protocol):
    producer: str

    def summarize(self, title: str, abstract: str) -> Summary: ...


class LLMSummarizer:
    """Summaries from the chat API, in ``language``."""

    def __init__(self, client: ChatClient, language: str) -> None:
        self.client = client
        self.language = language
        self.producer = f"llm:{client.model}"

    def summarize(self, title: str, abstract: str) -> Summary:
        messages = summary_messages(title, abstract, self.language, self.client.max_tokens)
        answer = self.client.complete(messages)
        return Summary(
            content=answer.text,
            producer=self.producer,
            producer_version=PROMPT_VERSION,
            data={"language": self.language, "model": answer.model, "usage": answer.usage},
        )


class ExtractiveSummarizer:
    """Local summaries: the abstract's most central sentences, in its own language."""

    producer = EXTRACTIVE

    def summarize(self, title: str, abstract: str) -> Summary:
        return Summary(
            content=extractive_summary(title, abstract),
            producer=self.producer,
            producer_version=EXTRACTIVE_VERSION,
            data={"language": None, "model": None, "method": "tf-idf centrality"},
        )


@contextmanager
def open_summarizer(settings: Settings, backoff: Backoff | None = None) -> Iterator[Summarizer]:
    """The LLM summariser when a chat API key is configured, else the extractive one."""
    if settings.llm_api_key is None:
        yield ExtractiveSummarizer()
        return
    with ChatClient.from_settings(settings, backoff) as client:
        yield LLMSummarizer(client, settings.summary_language)


@dataclass(frozen=True)
class SummaryResult:
    producer: str
    summarised: int  # summaries written by this call
    failed: int  # articles left pending after a failure
    failures: dict[str, int]  # why, with how many articles each
    batches: int
    stopped_early: bool = False  # max_consecutive_failures reached

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SummariesFailed(RuntimeError):
    """No summary was written, and the chat API failed."""

    def __init__(self, result: SummaryResult) -> None:
        reasons = "; ".join(f"{reason} ({count})" for reason, count in result.failures.items())
        super().__init__(f"no summary written, {result.failed} articles failed: {reasons}")
        self.result = result


def summarize_pending(
    sessions: Sessions,
    settings: Settings,
    dataset: str,
    *,
    batch_size: int = 10,
    limit: int | None = None,
    title_field: str = "title",
    abstract_field: str = "abstract",
    max_consecutive_failures: int = 5,
    backoff: Backoff | None = None,
) -> SummaryResult:
    """Write a summary annotation for every item of ``dataset`` that has none (or for ``limit``
    of them), from the item's ``title_field`` and ``abstract_field``.

    ``backoff`` sets the waits between the chat API's retries (tests make them tiny).
    """
    if max_consecutive_failures < 1:
        raise ValueError(
            f"max_consecutive_failures must be at least 1, got {max_consecutive_failures}"
        )
    with open_summarizer(settings, backoff) as summarizer:
        batches = _Batches(
            summarizer, dataset, (title_field, abstract_field), max_consecutive_failures
        )
        progress = work_through(
            sessions,
            pending_summaries(dataset),
            batches.summarize,
            _write,
            claim=f"{KIND}:{dataset}",
            batch_size=batch_size,
            limit=limit,
            stop=lambda: batches.tripped,
        )
    result = SummaryResult(
        producer=summarizer.producer,
        summarised=progress.written,
        failed=sum(batches.failures.values()),
        failures=dict(batches.failures.most_common()),
        batches=progress.batches,
        stopped_early=batches.tripped,
    )
    logger.info(
        "%d items of %r summarised by %s, %d failed",
        result.summarised,
        dataset,
        result.producer,
        result.failed,
    )
    if batches.api_failed and not result.summarised:
        raise SummariesFailed(result)
    return result


@dataclass
class _Batches:
    """Summarises claimed batches, counting the failures and why as they come."""

    summarizer: Summarizer
    dataset: str
    fields: tuple[str, str]  # title, abstract
    max_in_a_row: int
    failures: Counter[str] = field(default_factory=Counter)
    api_failed: int = 0
    in_a_row: int = 0  # API failures since the last success

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.max_in_a_row

    def summarize(self, claimed: Sequence[Row[Any]]) -> dict[int, Summary]:
        done: dict[int, Summary] = {}
        for item in claimed:
            if self.tripped:
                break  # the rest stays pending, and the call stops after this batch
            summary = self._one(item)
            if summary is not None:
                done[item.id] = summary
        return done

    def _one(self, item: Row[Any]) -> Summary | None:
        try:
            title, abstract = _texts(item.data, *self.fields)
        except ValueError as exc:
            self._failed(item, exc)
            return None
        try:
            summary = self.summarizer.summarize(title, abstract)
        except ChatError as exc:
            self._failed(item, exc)
            self.api_failed += 1
            self.in_a_row += 1
            return None
        self.in_a_row = 0
        return summary

    def _failed(self, item: Row[Any], error: Exception) -> None:
        self.failures[str(error)] += 1
        logger.warning("item %s of %r not summarised: %s", item.key, self.dataset, error)


def pending_summaries(dataset: str) -> Select[Any]:
    """Id, key and data of the items of ``dataset`` with no summary annotation, in id order."""
    summarised = exists().where(Annotation.item_id == Item.id, Annotation.kind == KIND)
    return (
        select(Item.id, Item.key, Item.data)
        .where(Item.dataset == dataset, Item.deleted_batch_id.is_(None), ~summarised)
        .order_by(Item.id)
    )


def _texts(data: dict[str, Any], title_field: str, abstract_field: str) -> tuple[str, str]:
    """The item's title and abstract, whitespace normalised; ValueError when one is missing."""
    texts = []
    for name in (title_field, abstract_field):
        value = data.get(name)
        text = " ".join(value.split()) if isinstance(value, str) else ""
        if not text:
            raise ValueError(f"no text in field {name!r}")
        texts.append(text)
    return texts[0], texts[1]


def _write(session: Session, summaries: Mapping[int, Summary]) -> int:
    rows = [
        {"item_id": item_id, "kind": KIND, **asdict(summary)}
        for item_id, summary in summaries.items()
    ]
    session.execute(insert(Annotation), rows)
    return len(rows)
