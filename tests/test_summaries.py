"""Article summaries on real arXiv rows: through a real local OpenAI-compatible server (retries,
failures left pending, the key kept secret), locally without a key, and shared by two workers."""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from fake_llm import FakeChatServer, Hang, Received, Reply, Status
from mlfactory.enrich.chat import Backoff
from mlfactory.enrich.extractive import EXTRACTIVE_VERSION, extractive_summary, split_sentences
from mlfactory.enrich.prompts import PROMPT_VERSION, summary_word_limit
from mlfactory.enrich.summaries import SummariesFailed, SummaryResult, summarize_pending
from mlfactory.ingest.csv_reader import SourceRow, read_csv_rows
from mlfactory.ingest.loader import Record, load_batch, records_from_csv
from mlfactory.settings import Settings
from mlfactory.store import Annotation, Item, session_factory

DATASET = "arxiv"
KEY = "sk-test-0123456789abcdef"
FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.01, retry_after_max=5.0)
on_postgresql = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def flat(text: str) -> str:
    return " ".join(text.split())


def csv_rows(datasets_dir: Path, count: int) -> list[SourceRow]:
    rows = read_csv_rows(datasets_dir / "arxiv" / "arxiv_data.csv")
    good = (row for row in rows if isinstance(row, SourceRow))
    return [next(good) for _ in range(count)]


def load_articles(sessions: sessionmaker[Session], settings: Settings, count: int) -> int:
    """``count`` real papers, shaped like the arXiv source's items (title, abstract, terms)."""
    assert settings.datasets_dir is not None
    records = [
        Record(
            key=hashlib.sha256(
                f"{row.fields['titles']}\n{row.fields['summaries']}".encode()
            ).hexdigest()[:16],
            data={
                "title": row.fields["titles"],
                "abstract": row.fields["summaries"],
                "terms": row.fields["terms"],
            },
            line=row.line,
        )
        for row in csv_rows(settings.datasets_dir, count)
    ]
    return load_batch(sessions, DATASET, records).rows_inserted


def articles(sessions: sessionmaker[Session]) -> dict[int, dict[str, Any]]:
    with sessions() as session:
        rows = session.execute(select(Item.id, Item.data).where(Item.dataset == DATASET))
        return {item_id: data for item_id, data in rows}


def summaries(sessions: sessionmaker[Session]) -> dict[int, list[Annotation]]:
    by_item: dict[int, list[Annotation]] = {}
    with sessions() as session:
        for annotation in session.scalars(select(Annotation).where(Annotation.kind == "summary")):
            by_item.setdefault(annotation.item_id, []).append(annotation)
    return by_item


def requests_for(server: FakeChatServer, article: dict[str, Any]) -> list[Received]:
    """The requests that asked for a summary of ``article``."""
    return [
        request
        for request in server.requests
        if flat(article["title"]) in request.body["messages"][-1]["content"]
    ]


@pytest.fixture
def llm() -> Iterator[FakeChatServer]:
    server = FakeChatServer()
    yield server
    server.close()


@pytest.fixture
def llm_settings(settings: Settings, llm: FakeChatServer) -> Settings:
    return settings.model_copy(
        update={
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr(KEY),
            "llm_timeout": 0.5,
            "llm_retries": 4,
        }
    )


def test_every_article_gets_one_llm_summary_from_its_title_and_abstract(
    llm_settings: Settings, sessions, llm: FakeChatServer
) -> None:
    assert load_articles(sessions, llm_settings, 12) == 12

    result = summarize_pending(sessions, llm_settings, DATASET, batch_size=5, backoff=FAST)

    model = llm_settings.llm_model
    assert result == SummaryResult(
        producer=f"llm:{model}", summarised=12, failed=0, failures={}, batches=3
    )
    assert len(llm.requests) == 12
    words = summary_word_limit(llm_settings.llm_max_tokens)
    for request in llm.requests:
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == model
        assert request.body["temperature"] == 0.3
        assert request.body["max_tokens"] == llm_settings.llm_max_tokens
        prompt = request.body["messages"][-1]["content"]
        assert f'"{llm_settings.summary_language}"' in prompt
        assert f"at most {words} words" in prompt
    done = summaries(sessions)
    for item_id, article in articles(sessions).items():
        [request] = requests_for(llm, article)
        assert flat(article["abstract"]) in request.body["messages"][-1]["content"]
        [summary] = done[item_id]
        assert summary.content == request.answer
        assert (summary.producer, summary.producer_version) == (f"llm:{model}", PROMPT_VERSION)
        assert summary.data["language"] == "fr"
        assert summary.data["model"] == f"{model}-2511"  # the model that answered

    again = summarize_pending(sessions, llm_settings, DATASET, batch_size=5, backoff=FAST)
    assert (again.summarised, again.failed, again.batches) == (0, 0, 0)
    assert len(llm.requests) == 12
    assert sum(len(rows) for rows in summaries(sessions).values()) == 12


def test_timeouts_429_and_5xx_are_retried_with_backoff_then_succeed(
    llm_settings: Settings, sessions, llm: FakeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    load_articles(sessions, llm_settings, 3)
    llm.then(Hang(2.0), Status(429, retry_after="1"), Status(503), Status(500))

    with caplog.at_level(logging.DEBUG):
        result = summarize_pending(sessions, llm_settings, DATASET, batch_size=5, backoff=FAST)

    assert (result.summarised, result.failed) == (3, 0)
    first = llm.requests[:5]  # the first article: four failures, then the answer
    assert [r.answer is not None for r in first] == [False] * 4 + [True]
    assert len({r.body["messages"][-1]["content"] for r in first}) == 1  # the same request
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(first)]
    assert gaps[0] >= llm_settings.llm_timeout  # the client gave up on the hung request
    assert gaps[1] >= 0.95  # Retry-After: 1 honoured, although the backoff is far shorter
    assert max(gaps[2:]) < gaps[1]  # 5xx: the (tiny) exponential backoff, not Retry-After
    assert len(llm.requests) == 7 and len(summaries(sessions)) == 3
    assert "retrying" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("status", "attempts"), [(401, 1), (503, 3)], ids=["4xx-not-retried", "5xx-retried"]
)
def test_when_everything_fails_nothing_is_written_and_the_call_says_why(
    llm_settings: Settings,
    sessions,
    llm: FakeChatServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    attempts: int,
) -> None:
    settings = llm_settings.model_copy(update={"llm_retries": 2})
    load_articles(sessions, settings, 8)
    llm.rule = lambda _body: Status(status)

    with caplog.at_level(logging.DEBUG), pytest.raises(SummariesFailed) as failed:
        summarize_pending(
            sessions, settings, DATASET, batch_size=2, max_consecutive_failures=3, backoff=FAST
        )

    result = failed.value.result
    assert (result.summarised, result.failed, result.stopped_early) == (0, 3, True)
    [reason] = result.failures
    assert reason.startswith(f"HTTP {status} ")
    assert reason in str(failed.value)
    assert len(llm.requests) == 3 * attempts  # three articles tried, then the call stopped
    assert set(Counter(r.body["messages"][-1]["content"] for r in llm.requests).values()) == {
        attempts
    }
    assert summaries(sessions) == {}
    assert KEY not in str(failed.value) and KEY not in caplog.text


def test_a_failed_article_stays_pending_without_a_summary_and_a_later_run_completes_it(
    llm_settings: Settings, sessions, llm: FakeChatServer
) -> None:
    settings = llm_settings.model_copy(update={"llm_retries": 2})
    load_articles(sessions, settings, 10)
    items = articles(sessions)
    ids = sorted(items)
    down, cut = flat(items[ids[1]]["title"]), flat(items[ids[6]]["title"])
    filtered = flat(items[ids[8]]["title"])

    def failing(body: dict[str, Any]) -> Status | Reply | None:
        prompt = body["messages"][-1]["content"]
        if down in prompt:
            return Status(500)
        if filtered in prompt:
            return Reply(finish_reason="content_filter")
        return Reply(finish_reason="length") if cut in prompt else None

    llm.rule = failing
    result = summarize_pending(sessions, settings, DATASET, batch_size=4, backoff=FAST)

    assert (result.summarised, result.failed, result.stopped_early) == (7, 3, False)
    assert result.failures == {
        "HTTP 500 Internal Server Error (gave up after 3 attempts)": 1,
        f"the answer was cut at max_tokens={settings.llm_max_tokens}: raise MLF_LLM_MAX_TOKENS": 1,
        "the answer is not complete (finish_reason 'content_filter')": 1,
    }
    assert len(requests_for(llm, items[ids[1]])) == 3  # retried, but not claimed again
    assert len(requests_for(llm, items[ids[6]])) == 1  # not retried: the same cut would come
    done = summaries(sessions)
    assert set(done) == set(ids) - {ids[1], ids[6], ids[8]}

    llm.rule = lambda _body: None  # the service recovers
    later = summarize_pending(sessions, settings, DATASET, batch_size=4, backoff=FAST)

    assert (later.summarised, later.failed) == (3, 0)
    done = summaries(sessions)
    assert set(done) == set(ids) and {len(rows) for rows in done.values()} == {1}
    assert done[ids[1]][0].content == requests_for(llm, items[ids[1]])[-1].answer


def test_without_a_key_extractive_summaries_are_written_and_marked(
    llm_settings: Settings, sessions, llm: FakeChatServer
) -> None:
    """Items loaded from the CSV as they are (columns titles, summaries, terms); one has no
    abstract."""
    settings = llm_settings.model_copy(update={"llm_api_key": None})
    assert settings.datasets_dir is not None
    rows = [*csv_rows(settings.datasets_dir, 15)]
    records = list(records_from_csv(rows, label_field=None))
    records.append(Record(key="empty", data={"titles": "No abstract", "summaries": " \n"}))
    load_batch(sessions, DATASET, records)

    def run() -> SummaryResult:
        return summarize_pending(
            sessions, settings, DATASET, title_field="titles", abstract_field="summaries"
        )

    result = run()

    assert (result.producer, result.summarised, result.failed) == ("extractive", 15, 1)
    assert result.failures == {"no text in field 'summaries'": 1}
    assert llm.requests == []  # no key: the API is never called
    done = summaries(sessions)
    assert len(done) == 15
    for item_id, data in articles(sessions).items():
        if data["titles"] == "No abstract":
            assert item_id not in done
            continue
        [summary] = done[item_id]
        assert (summary.producer, summary.producer_version) == ("extractive", EXTRACTIVE_VERSION)
        assert summary.data["language"] is None and summary.data["model"] is None
        sentences = split_sentences(data["summaries"])
        picked = split_sentences(summary.content)
        assert picked and set(picked) <= set(sentences)  # sentences of the abstract, verbatim
        assert picked == sorted(picked, key=sentences.index)  # in the abstract's order
        assert len(picked) <= min(3, len(sentences)) and len(picked) < len(sentences)
        assert summary.content == extractive_summary(data["titles"], data["summaries"])

    again = run()
    assert (again.summarised, again.failed) == (0, 1)
    assert len(summaries(sessions)) == 15


@on_postgresql
def test_two_concurrent_workers_summarise_every_article_exactly_once(
    llm_settings: Settings, llm: FakeChatServer
) -> None:
    # A worker never waits for another's batch, it skips it: any lock wait fails the worker.
    no_waiting = make_url(llm_settings.database_url).update_query_dict(
        {"options": "-c lock_timeout=5ms"}
    )
    sessions = session_factory(no_waiting.render_as_string(hide_password=False))
    count = load_articles(sessions, llm_settings, 30)
    llm.rule = lambda _body: Reply(delay=0.02)  # each batch holds its claim for a while
    # Time enough for an answer on a loaded machine: a timed-out request retried would be
    # counted below as an article asked for twice.
    llm_settings = llm_settings.model_copy(update={"llm_timeout": 10.0})
    start = threading.Barrier(2)
    results: list[SummaryResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(timeout=10)
            results.append(
                summarize_pending(sessions, llm_settings, DATASET, batch_size=3, backoff=FAST)
            )
        except BaseException as exc:  # reported below, with the other worker's outcome
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert sum(result.summarised for result in results) == count == 30
    assert all(result.summarised > 0 for result in results), results  # both did some work
    done = summaries(sessions)
    assert len(done) == 30 and {len(rows) for rows in done.values()} == {1}
    assert len(llm.requests) == 30  # no article asked for twice: no API call wasted


@on_postgresql
def test_no_transaction_is_open_while_the_chat_api_answers(
    llm_settings: Settings, llm: FakeChatServer, sessions
) -> None:
    """A claim is no transaction: while the API answers, the worker's connection is idle, not
    idle in a transaction, and a load that updates the article being summarised goes through
    at once instead of waiting for the answer."""
    load_articles(sessions, llm_settings, 2)
    seen: list[tuple[int, int]] = []  # (transactions left open, rows the load updated)

    def meanwhile(body: dict[str, Any]) -> Reply:
        if not seen:
            with sessions.begin() as session:
                session.connection().exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                open_transactions = session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                )
                item = session.execute(
                    select(Item.key, Item.data).where(Item.dataset == DATASET)
                ).first()
                assert item is not None
            revised = Record(item.key, {**item.data, "terms": "['cs.LG']"})
            seen.append((open_transactions, load_batch(sessions, DATASET, [revised]).rows_updated))
        return Reply()

    llm.rule = meanwhile
    result = summarize_pending(sessions, llm_settings, DATASET, batch_size=2, backoff=FAST)

    assert result.summarised == 2
    assert seen == [(0, 1)]
