"""``arxiv_backfill``: a large historical load of papers to train on. By hand.

``source=api`` fetches the newest ``max_results`` papers of the configured query from the arXiv
API; ``source=snapshot`` (the default, offline) loads the labelled CSV snapshot of the data set
registry (1,000 papers here). Either way one ``full`` batch: papers already stored are updated
when they changed, and the ingest watermark is left alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.arxiv.articles import DATASET


class BackfillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["snapshot", "api"] = Field(
        "snapshot", description="The labelled CSV snapshot (offline) or the arXiv API."
    )
    max_results: int = Field(5000, gt=0, description="Most papers fetched from the API.")


def load(ctx: Context) -> dict[str, Any]:
    """Read the papers, then load them as one batch named ``backfill``."""
    from mlfactory.ingest.arxiv_replay import read_snapshot
    from mlfactory.ingest.arxiv_source import fetch_papers
    from mlfactory.ingest.loader import load_batch

    params = ctx.params
    assert isinstance(params, BackfillParams)
    if params.source == "api":
        settings = ctx.settings.model_copy(update={"arxiv_max_results": params.max_results})
        rows = fetch_papers(settings).rows
        source = f"{settings.arxiv_api_url}?search_query={settings.arxiv_query}"
    else:
        rows, source = list(read_snapshot(ctx.settings)), "arxiv snapshot (CSV)"
    result = load_batch(
        ctx.sessions, DATASET, rows, name="backfill", source=source, run_id=ctx.run_id
    )
    return result.as_dict() | {"source": params.source}


pipeline = Pipeline(
    name="arxiv_backfill",
    description=__doc__ or "",
    params=BackfillParams,
    retries=1,
    retry_delay=60.0,
    tags=("arxiv", "ingest"),
    steps=(Step("load", load),),
)
