"""The arXiv source: the real ``arxiv`` client against a local server replaying real recorded
arXiv API exchanges, the watermark kept in a real store, the replay and snapshot sources.

The recorded ``testing`` exchanges are relevance-ordered pages of one 100-paper result set.
The live source asks for papers newest first (``sortBy=lastUpdatedDate``) and relies on the
API sorting them, so the server, like arXiv, answers a sorted request with the recorded result
set sorted by that field; a request that matches a recording exactly gets it verbatim.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select

from http_server import QuietHandler, serving
from mlfactory.datasets.project import get_dataset
from mlfactory.ingest.arxiv_papers import subject
from mlfactory.ingest.arxiv_replay import read_recorded, read_snapshot
from mlfactory.ingest.arxiv_source import RETRIES, ArxivUnavailable, fetch_new, fetch_papers
from mlfactory.ingest.csv_reader import BadRow, SourceFileError
from mlfactory.ingest.declared import read_declared
from mlfactory.ingest.loader import Record, current_watermark, load_batch
from mlfactory.settings import Settings
from mlfactory.store import DataLoad, Item, Rejection

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
API_PATH = "/api/query"
SORT_FIELDS = {"lastUpdatedDate": "updated", "submittedDate": "published"}
TESTING = "q_testing_s0_m100_cfe7536492ca"  # the whole 100-paper result set of "testing"
ERROR = "id_abc_s0_m100_b79c8dcf6bc3"  # HTTP 400, an error feed
EMPTY = "id_0000.0000_s0_m100_8b51d9633a68"  # no results


@dataclass(frozen=True)
class Exchange:
    params: dict[str, str]
    status: int
    body: str


@dataclass
class ArxivServer:
    """A local stand-in for export.arxiv.org that replays recorded exchanges."""

    recordings: dict[str, Exchange]
    url: str = ""
    answers: dict[str, Exchange] = field(default_factory=dict)
    """Exchanges that answer every request for a search query, whatever its other parameters."""
    shift: int = 0
    """Papers that "arrive" after the first page: later pages of a sorted list start this many
    places earlier, as they do on arXiv when new papers push the list down."""
    requests: list[dict[str, str]] = field(default_factory=list)

    def answer(self, params: dict[str, str]) -> tuple[int, bytes]:
        self.requests.append(params)
        if params.get("search_query") in self.answers:
            exchange = self.answers[params["search_query"]]
            return exchange.status, exchange.body.encode()
        for exchange in self.recordings.values():
            if exchange.params == params:
                return exchange.status, exchange.body.encode()
        if params.get("sortBy") in SORT_FIELDS:
            return 200, self._sorted_page(params)
        return 404, b"no recording for this request"

    def starts(self) -> list[int]:
        return [int(params["start"]) for params in self.requests]

    def _sorted_page(self, params: dict[str, str]) -> bytes:
        recorded = max(
            (
                exchange
                for exchange in self.recordings.values()
                if exchange.status == 200
                and exchange.params["start"] == "0"
                and all(exchange.params[n] == params[n] for n in ("search_query", "id_list"))
            ),
            key=lambda exchange: int(exchange.params["max_results"]),
        )
        feed = ET.fromstring(recorded.body)
        result_set = feed.findall(f"{ATOM}entry")
        by = SORT_FIELDS[params["sortBy"]]
        result_set.sort(
            key=lambda e: e.findtext(f"{ATOM}{by}"), reverse=params["sortOrder"] == "descending"
        )
        start = int(params["start"])
        start = max(start - self.shift, 0) if start else 0
        page = result_set[start : start + int(params["max_results"])]
        for entry in result_set:
            feed.remove(entry)
        feed.extend(page)
        for name, value in (
            ("totalResults", len(result_set)),
            ("startIndex", start),
            ("itemsPerPage", len(page)),
        ):
            feed.find(f"{OPENSEARCH}{name}").text = str(value)
        return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def query_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


@pytest.fixture(scope="session")
def recorded_dir(datasets_dir: Path) -> Path:
    return datasets_dir / "arxiv" / "api_responses" / "recorded_json"


@pytest.fixture(scope="session")
def recordings(recorded_dir: Path) -> dict[str, Exchange]:
    exchanges = {}
    for path in sorted(recorded_dir.glob("*.json")):
        recorded = json.loads(path.read_text())
        exchanges[path.stem] = Exchange(
            query_params(recorded["url"]), recorded["status_code"], recorded["body"]
        )
    return exchanges


@pytest.fixture
def arxiv_server(recordings: dict[str, Exchange]) -> Iterator[ArxivServer]:
    state = ArxivServer(recordings)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == API_PATH:
                status, body = state.answer(query_params(self.path))
            else:
                status, body = 404, b"not the API path"
            self.send_response(status)
            self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base_url:
        state.url = f"{base_url}{API_PATH}"
        yield state


Configure = Callable[..., Settings]


@pytest.fixture
def configure(
    arxiv_server: ArxivServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, datasets_dir: Path
) -> Configure:
    """Settings read from MLF_ARXIV_* variables that point the client at the local server
    (``env`` overrides them), on top of ``base`` (default: settings without a test store)."""

    def make(base: Settings | None = None, **env: object) -> Settings:
        defaults = {"api_url": arxiv_server.url, "query": "testing", "page_size": 10}
        for name, value in {**defaults, "delay_seconds": 0, **env}.items():
            monkeypatch.setenv(f"MLF_ARXIV_{name.upper()}", str(value))
        base = base or Settings(home=tmp_path / "home", datasets_dir=datasets_dir)
        return Settings(
            home=base.home,
            database_url=base.database_url,
            mlflow_tracking_uri=base.mlflow_tracking_uri,
            datasets_dir=base.datasets_dir,
            max_field_bytes=base.max_field_bytes,
        )

    return make


def entries(body: str) -> list[ET.Element]:
    return ET.fromstring(body).findall(f"{ATOM}entry")


def bare_id(entry: ET.Element) -> str:
    """The arXiv id of an entry without its version: .../abs/2202.12139v1 -> 2202.12139."""
    return re.sub(r"v\d+$", "", entry.findtext(f"{ATOM}id").split("/abs/")[1])


def newest_first(recording: Exchange) -> list[ET.Element]:
    return sorted(entries(recording.body), key=lambda e: e.findtext(f"{ATOM}updated"), reverse=True)


def keys(rows: list[Record | BadRow]) -> list[str]:
    return [row.key for row in rows if isinstance(row, Record)]


def stored(sessions, dataset: str = "arxiv") -> dict[str, Item]:
    with sessions() as session:
        return {
            item.key: item for item in session.scalars(select(Item).where(Item.dataset == dataset))
        }


def count(sessions, table) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("cs.LG", "cs"),
        ("astro-ph.CO", "astro-ph"),
        ("math.AG", "math"),
        ("hep-th", "hep-th"),
        ("cond-mat.str-el", "cond-mat"),
    ],
)
def test_subject_is_the_archive_of_a_category(category: str, expected: str) -> None:
    assert subject(category) == expected


@pytest.mark.parametrize("category", ["I.2.6", "68T05", "", "CS.LG", "cs."])
def test_subject_refuses_what_is_no_arxiv_category(category: str) -> None:
    with pytest.raises(ValueError, match="not an arXiv category"):
        subject(category)


def test_fetch_pages_through_the_result_set_newest_first(
    configure: Configure, arxiv_server: ArxivServer, recordings: dict[str, Exchange]
) -> None:
    fetch = fetch_papers(configure())

    expected = [bare_id(entry) for entry in newest_first(recordings[TESTING])]
    assert len(expected) == 100
    assert keys(fetch.rows) == expected
    assert fetch.stopped_by == "end"
    assert arxiv_server.starts() == list(range(0, 100, 10))
    assert {(p["sortBy"], p["sortOrder"], p["max_results"]) for p in arxiv_server.requests} == {
        ("lastUpdatedDate", "descending", "10")
    }


def test_relevance_pages_replay_verbatim(
    arxiv_server: ArxivServer, recordings: dict[str, Exchange]
) -> None:
    """The server's verbatim path: a request equal to a recorded one gets the recorded page."""
    status, body = arxiv_server.answer(recordings["q_testing_s10_m10_34e56e15aaac"].params)
    assert status == 200
    assert [bare_id(e) for e in entries(body.decode())] == [
        bare_id(e) for e in entries(recordings[TESTING].body)[10:20]
    ]


def test_max_results_caps_the_fetch(
    configure: Configure, arxiv_server: ArxivServer, recordings: dict[str, Exchange]
) -> None:
    fetch = fetch_papers(configure(max_results=25))

    assert keys(fetch.rows) == [bare_id(e) for e in newest_first(recordings[TESTING])[:25]]
    assert fetch.stopped_by == "max_results"
    assert arxiv_server.starts() == [0, 10, 20]


def test_a_paper_seen_twice_while_paging_is_kept_once(
    configure: Configure, arxiv_server: ArxivServer, recordings: dict[str, Exchange]
) -> None:
    arxiv_server.shift = 3  # three new papers arrive after the first page

    fetch = fetch_papers(configure(max_results=30))

    newest = [bare_id(e) for e in newest_first(recordings[TESTING])]
    # 30 entries read: places 0-9, then 7-16 and 17-26 of the list; 27 different papers.
    assert keys(fetch.rows) == newest[:27]


def test_first_fetch_loads_every_paper_with_its_data(
    settings: Settings, sessions, configure: Configure, recordings: dict[str, Exchange]
) -> None:
    result = fetch_new(configure(settings), sessions)

    ordered = newest_first(recordings[TESTING])
    items = stored(sessions)
    assert (result.rows_inserted, result.rows_rejected) == (100, 0)
    assert set(items) == {bare_id(e) for e in ordered}
    assert result.watermark == items[bare_id(ordered[0])].data["updated"]
    newest = ordered[0]
    data = items[bare_id(newest)].data
    assert data["title"] == " ".join(newest.findtext(f"{ATOM}title").split())
    assert data["authors"] == [a.findtext(f"{ATOM}name") for a in newest.iter(f"{ATOM}author")]
    assert f"{data['id']}v{data['version']}" == newest.findtext(f"{ATOM}id").split("/abs/")[1]
    assert data["categories"] == [c.get("term") for c in newest.iter(f"{ATOM}category")]
    labels = {
        bare_id(e): e.find(f"{ARXIV}primary_category").get("term").split(".")[0] for e in ordered
    }
    assert {key: item.label for key, item in items.items()} == labels
    with sessions() as session:
        batch = session.get_one(DataLoad, result.batch_id)
    assert (batch.mode, batch.meta["stopped_by"], batch.meta["query"]) == (
        "watermark",
        "end",
        "testing",
    )


def test_with_a_watermark_only_newer_papers_are_fetched_and_loaded(
    settings: Settings,
    sessions,
    configure: Configure,
    arxiv_server: ArxivServer,
    recorded_dir: Path,
    recordings: dict[str, Exchange],
) -> None:
    settings = configure(settings)
    ordered = [bare_id(e) for e in newest_first(recordings[TESTING])]
    older, newer = ordered[30:], ordered[:30]
    replayed = read_recorded(settings, recorded_dir / f"{TESTING}.json")
    first = load_batch(
        sessions,
        "arxiv",
        (row for row in replayed if row.key in older),
        mode="watermark",
        watermark_field="updated",
    )
    assert first.rows_inserted == 70

    second = fetch_new(settings, sessions)

    assert (second.rows_seen, second.rows_inserted, second.rows_updated) == (30, 30, 0)
    with sessions() as session:
        loaded = session.scalars(
            select(Item.key).where(Item.first_batch_id == second.batch_id)
        ).all()
        assert current_watermark(session, "arxiv") == stored(sessions)[newer[0]].data["updated"]
    assert set(loaded) == set(newer)
    # Paging stopped at the page holding the first paper already loaded (the 31st).
    assert arxiv_server.starts() == [0, 10, 20, 30]

    arxiv_server.requests.clear()
    third = fetch_new(settings, sessions)

    assert (third.rows_seen, third.rows_inserted, third.rows_updated) == (0, 0, 0)
    assert third.watermark == second.watermark
    assert arxiv_server.starts() == [0]
    assert len(stored(sessions)) == 100


def test_an_error_feed_is_a_clear_error_and_writes_nothing(
    settings: Settings,
    sessions,
    configure: Configure,
    arxiv_server: ArxivServer,
    recordings: dict[str, Exchange],
) -> None:
    arxiv_server.answers["id:abc"] = recordings[ERROR]

    with pytest.raises(ArxivUnavailable) as excinfo:
        fetch_new(configure(settings, query="id:abc"), sessions)

    message = str(excinfo.value)
    assert "answered HTTP 400" in message
    assert "check MLF_ARXIV_QUERY ('id:abc')" in message
    assert f"({RETRIES + 1} attempts)" in message
    assert len(arxiv_server.requests) == RETRIES + 1
    assert count(sessions, DataLoad) == count(sessions, Item) == 0


def test_a_wrong_api_url_is_a_clear_error(configure: Configure, arxiv_server: ArxivServer) -> None:
    settings = configure(api_url=arxiv_server.url.replace(API_PATH, "/elsewhere"))

    with pytest.raises(
        ArxivUnavailable, match=r"answered HTTP 404 to http://127\.0\.0\.1:\d+/elsewhere\?"
    ):
        fetch_papers(settings)


def test_an_unreachable_api_is_a_clear_error(configure: Configure) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}{API_PATH}"
    settings = configure(api_url=url)

    with pytest.raises(
        ArxivUnavailable, match=rf"cannot read the arXiv API at {re.escape(url)}: .*refused"
    ):
        fetch_papers(settings)


def test_an_empty_feed_loads_nothing(
    settings: Settings,
    sessions,
    configure: Configure,
    arxiv_server: ArxivServer,
    recordings: dict[str, Exchange],
) -> None:
    arxiv_server.answers["nothing"] = recordings[EMPTY]

    result = fetch_new(configure(settings, query="nothing"), sessions)

    assert (result.rows_seen, result.rows_inserted, result.watermark) == (0, 0, None)
    assert len(arxiv_server.requests) == 1
    assert count(sessions, Item) == 0


def test_bad_entries_are_rejected_with_a_reason(
    settings: Settings,
    sessions,
    configure: Configure,
    arxiv_server: ArxivServer,
    recordings: dict[str, Exchange],
) -> None:
    recorded = recordings["q_testing_s0_m10_bc5a6c384fe9"]
    feed = ET.fromstring(recorded.body)
    untitled, huge, unidentified, summaryless = feed.findall(f"{ATOM}entry")[:4]
    untitled.find(f"{ATOM}title").text = "  "
    huge.find(f"{ATOM}summary").text = "word " * 1000
    unidentified.find(f"{ATOM}id").text = "http://arxiv.org/abs/not-an-id"
    summaryless.remove(summaryless.find(f"{ATOM}summary"))
    feed.find(f"{OPENSEARCH}totalResults").text = "10"  # the whole result set: one page
    body = ET.tostring(feed, encoding="unicode")
    arxiv_server.answers["mutated"] = Exchange(recorded.params, 200, body)
    base = Settings(home=settings.home, database_url=settings.database_url, max_field_bytes=4000)

    result = fetch_new(configure(base, query="mutated"), sessions)

    assert (result.rows_inserted, result.rows_rejected) == (6, 4)
    with sessions() as session:
        reasons = session.scalars(select(Rejection.reason).order_by(Rejection.line)).all()
    assert reasons == [
        "no title",
        "field 'abstract' is 4,999 bytes, over the limit of 4,000",
        "entry id 'http://arxiv.org/abs/not-an-id' holds no arXiv identifier",
        "no abstract",
    ]
    assert set(stored(sessions)) == {bare_id(e) for e in entries(recorded.body)[4:]}


def test_replay_loads_the_recorded_papers_once(
    settings: Settings, sessions, recordings: dict[str, Exchange], datasets_dir: Path
) -> None:
    papers = {
        bare_id(e): e.find(f"{ARXIV}primary_category").get("term").split(".")[0]
        for recording in recordings.values()
        if recording.status == 200
        for e in entries(recording.body)
    }

    first = fetch_new(settings, sessions, replay=True)
    second = fetch_new(settings, sessions, replay=True)

    assert (first.rows_inserted, first.rows_rejected) == (len(papers), 0)
    assert {key: item.label for key, item in stored(sessions).items()} == papers
    assert (second.rows_inserted, second.rows_updated) == (0, 0)
    declared = get_dataset(settings, "arxiv")  # a load of the data set from a path replays
    replayed, _ = read_declared(
        settings, declared, datasets_dir / "arxiv" / "api_responses" / "recorded_json"
    )
    assert {row.key for row in replayed if isinstance(row, Record)} == set(papers)


def test_snapshot_loads_each_paper_once_with_its_subject(
    settings: Settings, sessions, datasets_dir: Path
) -> None:
    with (datasets_dir / "arxiv" / "arxiv_data.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    distinct = {(row["titles"], row["summaries"]): ast.literal_eval(row["terms"]) for row in rows}

    result = load_batch(sessions, "arxiv_backfill", read_snapshot(settings))

    assert len(rows) == 1000
    assert (result.rows_seen, result.rows_inserted, result.rows_rejected) == (
        len(distinct),
        len(distinct),
        0,
    )
    items = stored(sessions, "arxiv_backfill").values()
    by_title = {item.data["title"]: (item.label, item.data["categories"]) for item in items}
    assert by_title == {
        " ".join(title.split()): (terms[0].split(".")[0], terms)
        for (title, _), terms in distinct.items()
    }


def test_an_html_page_answered_with_200_is_an_error_and_writes_nothing(
    settings: Settings, sessions, configure: Configure, arxiv_server: ArxivServer
) -> None:
    html = "<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>"
    arxiv_server.answers["html"] = Exchange({}, 200, html)

    with pytest.raises(ArxivUnavailable, match=r"answered no feed: (.*not XML|.*is a <html>)"):
        fetch_new(configure(settings, query="html"), sessions)
    assert len(arxiv_server.requests) == RETRIES + 1
    assert count(sessions, DataLoad) == count(sessions, Item) == 0


def test_a_page_cut_short_keeps_its_whole_entries_and_says_how_many_it_lost(
    settings: Settings,
    sessions,
    configure: Configure,
    arxiv_server: ArxivServer,
    recordings: dict[str, Exchange],
) -> None:
    recorded = recordings["q_testing_s0_m10_bc5a6c384fe9"]
    feed = ET.fromstring(recorded.body)
    feed.find(f"{OPENSEARCH}totalResults").text = "10"  # the whole result set: one page
    body = ET.tostring(feed, encoding="unicode")
    starts = [match.start() for match in re.finditer(r"<(?:\w+:)?entry\b", body)]
    cut = body[: starts[6] + 200]  # six whole entries, a seventh cut in its middle
    arxiv_server.answers["cut"] = Exchange(recorded.params, 200, cut)

    result = fetch_new(configure(settings, query="cut"), sessions)

    assert len(arxiv_server.requests) == RETRIES + 1  # asked again: the cut may pass
    assert (result.rows_inserted, result.rows_rejected) == (6, 1)
    with sessions() as session:
        (reason,) = session.scalars(select(Rejection.reason)).all()
    assert reason.startswith("the answer was cut after 6 entries: 4 entries lost")
    for item in stored(sessions).values():  # every paper stored whole
        assert item.label and item.data["authors"] and item.data["categories"]


def test_replayed_answers_cut_anywhere_never_store_half_a_paper(
    settings: Settings, sessions, recordings: dict[str, Exchange], tmp_path: Path
) -> None:
    from mlfactory.ingest.arxiv_replay import read_recorded

    body = recordings[TESTING].body.encode()
    whole = len(entries(recordings[TESTING].body))
    offsets = random.Random(20261208).sample(range(len(body)), 20)
    for offset in offsets:
        path = tmp_path / f"cut_{offset}.xml"
        path.write_bytes(body[:offset])
        try:
            rows = list(read_recorded(settings, path))
        except SourceFileError as exc:  # cut before the feed began: the whole file refused
            assert "not XML" in str(exc) or "empty" in str(exc), exc
            continue
        papers = [row for row in rows if isinstance(row, Record)]
        for paper in papers:
            assert paper.label and paper.data["title"] and paper.data["abstract"]
            assert paper.data["authors"] and paper.data["categories"]
        (cut,) = [row for row in rows if isinstance(row, BadRow) and "was cut" in row.reason]
        lost = re.search(
            r"cut after (\d+) entries: (\d+|an unknown number of) entries lost", cut.reason
        )
        assert lost is not None, cut.reason
        if lost[2].isdigit():
            assert int(lost[1]) + int(lost[2]) == whole
        else:  # the header, which says how many the page holds, was itself cut off
            assert body[:offset].find(b"itemsPerPage") == -1 or b"</opensearch" not in body[:offset]
