"""Articles through the API, on SQLite and PostgreSQL: real arXiv papers (a recorded API
response) stored as the arxiv pipeline stores them, paged newest first with counts per subject,
filtered by subject and predicted subject, searched, and one paper with its abstract, latest
summary and predicted subject with its confidence."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mlfactory.accounts import add_user
from mlfactory.api.article_queries import ARXIV as PAPERS
from mlfactory.api.article_queries import ArticleFilter, article_page, newest_first
from mlfactory.api.main import create_app
from mlfactory.api.queries import item_conditions
from mlfactory.ingest.loader import Record, load_batch
from mlfactory.settings import Settings
from mlfactory.store import Annotation, Item, Prediction

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
MODEL = "subjects"
WORD = re.compile(r"[^\W_]+")


def paper_records(datasets_dir: Path) -> list[Record]:
    """The 100 papers of a recorded arXiv API response, as the arxiv pipeline stores papers:
    keyed by identifier without version, labelled with the archive of the primary category."""
    (feed,) = (datasets_dir / "arxiv" / "api_responses" / "extracted_xml").glob("q_testing_s0*")
    records = []
    for line, entry in enumerate(ET.parse(feed).getroot().iter(f"{ATOM}entry"), start=1):
        identifier, _, version = (
            entry.findtext(f"{ATOM}id", "").rsplit("/abs/", 1)[1].rpartition("v")
        )
        primary = entry.find(f"{ARXIV}primary_category")
        assert primary is not None
        data = {
            "id": identifier,
            "version": int(version),
            "title": " ".join(entry.findtext(f"{ATOM}title", "").split()),
            "abstract": " ".join(entry.findtext(f"{ATOM}summary", "").split()),
            "authors": [a.findtext(f"{ATOM}name", "") for a in entry.iter(f"{ATOM}author")],
            "primary_category": primary.get("term"),
            "categories": [c.get("term") for c in entry.iter(f"{ATOM}category")],
            "published": _iso(entry.findtext(f"{ATOM}published", "")),
            "updated": _iso(entry.findtext(f"{ATOM}updated", "")),
            "link": next(
                link.get("href")
                for link in entry.iter(f"{ATOM}link")
                if link.get("rel") == "alternate"
            ),
        }
        label = str(primary.get("term")).split(".")[0]
        records.append(Record(key=identifier, data=data, label=label, line=line))
    return records


def _iso(text: str) -> str:
    return datetime.fromisoformat(text).isoformat()


def store_papers(sessions: sessionmaker[Session], records: list[Record]) -> dict[str, int]:
    """Load the papers as one batch of ``arxiv``; their item ids by key."""
    load_batch(sessions, "arxiv", records, source="recorded arXiv response")
    with sessions() as session:
        rows = session.execute(select(Item.key, Item.id).where(Item.dataset == "arxiv")).all()
    return {key: item_id for key, item_id in rows}


def predict_and_summarise(sessions: sessionmaker[Session], ids: list[int]) -> None:
    """Predictions of model ``subjects`` for the first 30 papers (v1; v2 again for the first 5,
    with another subject) and summaries for the first 10 (two for the first)."""
    with sessions.begin() as session:
        labels = dict(session.execute(select(Item.id, Item.label).where(Item.id.in_(ids))).all())
        for index, item_id in enumerate(ids[:30]):
            label = labels[item_id] if index % 3 else "math"
            confidence = 0.55 + (index % 4) / 10
            session.add(_prediction(item_id, "1", label, confidence))
        session.flush()
        for item_id in ids[:5]:
            session.add(_prediction(item_id, "2", "physics", 0.9))
        for index, item_id in enumerate(ids[:10]):
            session.add(_summary(item_id, f"Summary {index} of paper {item_id}."))
        session.flush()
        session.add(_summary(ids[0], "A newer summary of the first paper."))


def _prediction(item_id: int, version: str, label: str, confidence: float) -> Prediction:
    return Prediction(
        item_id=item_id,
        dataset="arxiv",
        model_name=MODEL,
        model_version=version,
        label=label,
        scores={label: confidence, "other": round(1 - confidence, 6)},
    )


def _summary(item_id: int, content: str) -> Annotation:
    return Annotation(
        item_id=item_id,
        kind="summary",
        producer="extractive",
        producer_version="1",
        content=content,
        data={"language": None, "model": None},
    )


@dataclass(frozen=True)
class Papers:
    client: TestClient
    viewer: dict[str, str]
    records: list[Record]
    ids: dict[str, int]  # item id by key

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.viewer)
        assert response.status_code == 200, response.text
        return response.json()


def viewer_client(settings: Settings, sessions: sessionmaker[Session]) -> Papers:
    client = TestClient(create_app(settings))
    add_user(sessions, "viewer", "viewer-password", "viewer")
    login = client.post("/token", data={"username": "viewer", "password": "viewer-password"})
    return Papers(client, {"Authorization": f"Bearer {login.json()['access_token']}"}, [], {})


@pytest.fixture
def papers(
    settings: Settings, sessions: sessionmaker[Session], datasets_dir: Path
) -> Iterator[Papers]:
    records = paper_records(datasets_dir)
    ids = store_papers(sessions, records)
    load_batch(sessions, "other", [Record(key="x", data={"title": "not a paper"})])
    predict_and_summarise(sessions, sorted(ids.values()))
    api = viewer_client(settings, sessions)
    yield Papers(api.client, api.viewer, records, ids)


def test_the_real_response_gives_papers_of_several_subjects(papers: Papers) -> None:
    assert len(papers.records) == 100
    assert len({r.label for r in papers.records}) >= 3


def test_pages_come_newest_first_with_counts_per_subject(papers: Papers) -> None:
    pages = [papers.get("/v1/articles", limit=40, offset=offset) for offset in (0, 40, 80)]
    assert [p["total"] for p in pages] == [100] * 3
    assert [len(p["articles"]) for p in pages] == [40, 40, 20]
    newest = sorted(
        papers.records, key=lambda r: (r.data["published"], papers.ids[r.key]), reverse=True
    )
    assert [a["id"] for p in pages for a in p["articles"]] == [papers.ids[r.key] for r in newest]
    expected = Counter(r.label for r in papers.records)
    assert pages[0]["subjects"] == dict(expected)
    counts = list(pages[0]["subjects"].values())
    assert counts == sorted(counts, reverse=True)


def test_a_listed_paper_carries_its_source_fields(papers: Papers) -> None:
    record = papers.records[7]
    (article,) = [
        a
        for a in papers.get("/v1/articles", limit=100)["articles"]
        if a["id"] == papers.ids[record.key]
    ]
    assert article["arxiv_id"] == record.key
    assert article["title"] == record.data["title"]
    assert article["authors"] == record.data["authors"]
    assert article["subject"] == record.label
    assert article["primary_category"] == record.data["primary_category"]
    assert article["categories"] == record.data["categories"]
    assert article["link"] == record.data["link"]
    assert datetime.fromisoformat(article["published"]) == datetime.fromisoformat(
        record.data["published"]
    )


def test_subject_and_predicted_subject_filters(papers: Papers) -> None:
    subject = papers.records[0].label
    page = papers.get("/v1/articles", subject=subject, limit=200)
    assert page["total"] == sum(1 for r in papers.records if r.label == subject)
    assert {a["subject"] for a in page["articles"]} == {subject}
    assert page["subjects"] == {subject: page["total"]}

    ordered = sorted(papers.ids.values())
    physics = papers.get("/v1/articles", predicted="physics", limit=200)
    assert sorted(a["id"] for a in physics["articles"]) == ordered[:5]
    for article in physics["articles"]:
        assert article["prediction"]["label"] == "physics"
        assert article["prediction"]["model_version"] == "2"
        assert article["prediction"]["confidence"] == pytest.approx(0.9)
    # v1 predicted "math" for every third of the first 30 papers and the true subject for the
    # others; v2 replaced that on the first 5.
    math = papers.get("/v1/articles", predicted="math", limit=200)
    subject_of = {papers.ids[r.key]: r.label for r in papers.records}
    expected = [
        item_id
        for i, item_id in enumerate(ordered[:30])
        if i >= 5 and (i % 3 == 0 or subject_of[item_id] == "math")
    ]
    assert sorted(a["id"] for a in math["articles"]) == expected


def test_search_matches_every_word_of_the_query(papers: Papers) -> None:
    def words(record: Record) -> set[str]:
        strings = [v for v in record.data.values() if isinstance(v, str)]
        strings += [s for v in record.data.values() if isinstance(v, list) for s in v]
        return set(WORD.findall(" ".join(strings).lower()))

    for query in ("neural networks", "Software"):
        wanted = set(WORD.findall(query.lower()))
        expected = {r.key for r in papers.records if wanted <= words(r)}
        assert expected, query  # the query names something the papers hold
        page = papers.get("/v1/articles", q=query, limit=200)
        assert page["total"] == len(expected), query
        assert {a["arxiv_id"] for a in page["articles"]} == expected


def test_an_article_has_its_abstract_latest_summary_and_prediction(papers: Papers) -> None:
    ordered = sorted(papers.ids.values())
    record = next(r for r in papers.records if papers.ids[r.key] == ordered[0])
    article = papers.get(f"/v1/articles/{ordered[0]}")
    assert article["abstract"] == record.data["abstract"]
    assert article["title"] == record.data["title"]
    assert article["summary"]["content"] == "A newer summary of the first paper."
    assert (article["summary"]["producer"], article["summary"]["language"]) == (
        "extractive",
        None,
    )
    assert article["prediction"]["label"] == "physics"
    assert article["prediction"]["scores"] == pytest.approx({"physics": 0.9, "other": 0.1})

    plain = papers.get(f"/v1/articles/{ordered[50]}")
    assert (plain["summary"], plain["prediction"]) == (None, None)
    listed = papers.get("/v1/articles", limit=100)["articles"]
    assert sum(a["summarised"] for a in listed) == 10


def test_unknown_articles_and_other_data_sets_items_are_404(
    papers: Papers, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        other = session.scalar(select(Item.id).where(Item.dataset == "other"))
    for item_id in (other, 999_999):
        response = papers.client.get(f"/v1/articles/{item_id}", headers=papers.viewer)
        assert response.status_code == 404
        assert f"no article {item_id}" in response.json()["detail"]


def test_no_articles_before_the_first_load(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    api = viewer_client(settings, sessions)
    assert api.get("/v1/articles") == {
        "total": 0,
        "limit": 20,
        "offset": 0,
        "subjects": {},
        "articles": [],
    }


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgresql_reads_pages_of_articles_from_the_published_index(
    settings: Settings, sessions: sessionmaker[Session], datasets_dir: Path
) -> None:
    """The index of migration 0005 serves the page query the route runs (same statement, same
    bound parameters) over 3000 papers beside 3000 items of another data set, without a sort;
    the order stays newest first, undated papers last."""
    records = []
    for copy in range(30):
        for paper in paper_records(datasets_dir):
            data = dict(paper.data)
            if (copy + paper.line) % 40 == 0:
                del data["published"]
            else:
                moment = datetime.fromisoformat(data["published"]) - timedelta(days=copy)
                data["published"] = moment.isoformat()
            key = f"{paper.key}/{copy}"
            records.append(Record(key=key, data=data, label=paper.label, line=len(records) + 1))
    ids = store_papers(sessions, records)
    others = [
        Record(key=str(n), data={"published": "2099-01-01T00:00:00+00:00"}) for n in range(3000)
    ]
    load_batch(sessions, "other", others)
    subject = Counter(r.label for r in records).most_common(1)[0][0]
    with sessions() as session:
        session.execute(text("ANALYZE items"))  # statistics as autovacuum would gather them
        for where in (ArticleFilter(), ArticleFilter(subject=subject)):
            page = newest_first(item_conditions(session, PAPERS, where.items()), 20, 40)
            query = page.compile(dialect=session.get_bind().dialect)
            plan = "\n".join(
                session.connection().exec_driver_sql(f"EXPLAIN {query}", query.params).scalars()
            )
            # The planner picks the index on its own here: no enable_seqscan = off needed.
            assert "Index Scan using ix_items_arxiv_published on items" in plan, plan
            assert "Sort" not in plan, plan

    published = {ids[r.key]: r.data.get("published") for r in records}
    expected = sorted(
        published, key=lambda i: (published[i] is not None, published[i] or "", i), reverse=True
    )
    listed = article_page(sessions, ArticleFilter(), len(records), 0)["articles"]
    assert [a["id"] for a in listed] == expected
    undated = sum(1 for moment in published.values() if moment is None)
    assert undated > 0
    assert {a["published"] for a in listed[-undated:]} == {None}
