"""Articles: the papers of the ``arxiv`` data set, newest first, with their subject, predicted
subject, confidence and summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from mlfactory.api.article_queries import ARXIV, ArticleFilter, article_detail, article_page
from mlfactory.api.deps import SessionsDep, Viewer
from mlfactory.api.schemas import MAX_ID, NO_NUL

router = APIRouter(tags=["articles"])


def _text(description: str) -> Any:
    return Query(max_length=200, pattern=NO_NUL, description=description)


class PredictedSubject(BaseModel):
    label: str
    confidence: float | None = Field(description="The model's probability for the label.")
    model_name: str
    model_version: str
    created_at: datetime


class PredictedScores(PredictedSubject):
    scores: dict[str, float] = Field(description="Probability of each subject.")


class ArticleSummary(BaseModel):
    id: int = Field(description="Item id in the store.")
    arxiv_id: str
    title: str
    authors: list[str]
    subject: str | None = Field(description="Top-level subject (archive) of its category.")
    primary_category: str | None
    categories: list[str]
    published: datetime | None
    updated: datetime | None
    link: str | None
    prediction: PredictedSubject | None = Field(description="Its latest predicted subject.")
    summarised: bool


class ArticlePage(BaseModel):
    total: int = Field(description="Articles matching, over all pages.")
    limit: int
    offset: int
    subjects: dict[str, int] = Field(description="Matching articles per subject, most first.")
    articles: list[ArticleSummary] = Field(description="Newest published first.")


class Summary(BaseModel):
    content: str | None
    producer: str = Field(description="llm | extractive | …")
    producer_version: str
    language: str | None = Field(description="None: the language of the abstract.")
    created_at: datetime


class ArticleDetail(BaseModel):
    id: int
    arxiv_id: str
    title: str
    authors: list[str]
    subject: str | None
    primary_category: str | None
    categories: list[str]
    published: datetime | None
    updated: datetime | None
    link: str | None
    abstract: str
    summary: Summary | None = Field(description="Its latest summary, if any.")
    prediction: PredictedScores | None


@router.get("/v1/articles", response_model=ArticlePage)
def articles(
    _: Viewer,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    subject: Annotated[str | None, _text("Only articles of this subject (e.g. cs).")] = None,
    predicted: Annotated[
        str | None, _text("Only articles whose latest predicted subject is this one.")
    ] = None,
    model: Annotated[str | None, _text("Registered model the prediction filter uses.")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=500,
            pattern=NO_NUL,
            description="Articles whose fields contain every word, as whole words.",
        ),
    ] = None,
) -> ArticlePage:
    """A page of articles, newest published first, with counts per subject. Empty until the
    ``arxiv`` pipeline has loaded papers."""
    where = ArticleFilter(subject=subject, predicted=predicted, model=model, q=q)
    page = article_page(sessions, where, limit, offset)
    return ArticlePage.model_validate(page | {"limit": limit, "offset": offset})


@router.get(
    "/v1/articles/{article_id}",
    response_model=ArticleDetail,
    responses={404: {"description": "No article with this id."}},
)
def article(
    _: Viewer, sessions: SessionsDep, article_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> ArticleDetail:
    """One article: abstract, latest summary, predicted subject with every score, link."""
    found = article_detail(sessions, article_id)
    if found is None:
        raise HTTPException(404, f"no article {article_id} (no item {article_id} of {ARXIV!r})")
    return ArticleDetail.model_validate(found)
