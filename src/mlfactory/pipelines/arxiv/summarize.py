"""``arxiv_summarize``: a plain-language summary of every article without one, every 30 minutes.

Through an OpenAI-compatible chat API (Mistral by default; ``MLF_LLM_*`` settings), in
``MLF_SUMMARY_LANGUAGE`` (French by default); with no API key, a local extractive summary,
marked as such. An article whose summary fails stays pending for the next run: never a
half-written summary. Independent of classification: every article gets both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.arxiv.articles import DATASET
from mlfactory.store.claims import MAX_CLAIMS_PER_BATCH


class SummarizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(
        2,
        gt=0,
        le=MAX_CLAIMS_PER_BATCH,
        description="Articles claimed per batch: summarised one after the other, written together.",
    )
    limit: int | None = Field(None, gt=0, description="Most articles summarised by one run.")


def summarize(ctx: Context) -> dict[str, Any]:
    """Summarise the pending articles; fails only when the chat API failed for every one."""
    from mlfactory.enrich.summaries import summarize_pending

    params = ctx.params
    assert isinstance(params, SummarizeParams)
    result = summarize_pending(
        ctx.sessions, ctx.settings, DATASET, batch_size=params.batch_size, limit=params.limit
    )
    return result.as_dict()


pipeline = Pipeline(
    name="arxiv_summarize",
    description=__doc__ or "",
    schedule=timedelta(minutes=30),
    params=SummarizeParams,
    retries=1,
    retry_delay=60.0,
    tags=("arxiv", "enrich", "llm"),
    notify_success=False,  # runs many times a day: only failures are mailed
    steps=(Step("summarize", summarize),),
)
