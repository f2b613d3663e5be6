"""``arxiv_ingest``: the papers updated on arXiv since the last fetch, every 8 minutes.

One watermark batch per run: the watermark (the highest ``updated`` seen) lives in the store,
so any worker can run the next fetch. With ``replay=true`` the recorded API responses of the
data set stand in for the API (offline use and demos).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Step


class IngestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replay: bool = Field(False, description="Read the recorded API responses, not the API.")


def fetch(ctx: Context) -> dict[str, Any]:
    """Load what is new since the watermark as one batch."""
    from mlfactory.ingest.arxiv_source import fetch_new

    params = ctx.params
    assert isinstance(params, IngestParams)
    result = fetch_new(ctx.settings, ctx.sessions, replay=params.replay, run_id=ctx.run_id)
    return result.as_dict()


pipeline = Pipeline(
    name="arxiv_ingest",
    description=__doc__ or "",
    schedule=timedelta(minutes=8),
    params=IngestParams,
    retries=2,
    retry_delay=60.0,
    tags=("arxiv", "ingest"),
    notify_success=False,  # runs many times a day: only failures are mailed
    steps=(Step("fetch", fetch),),
)
