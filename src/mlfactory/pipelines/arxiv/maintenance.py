"""``arxiv_maintenance``: purge predictions, summaries and run records of the arXiv pipelines
older than N days (or all of them), with a dry run that reports what would go. By hand only.

Articles and their audit trail are never purged. Purged articles become pending again, so the
next ``arxiv_classify`` and ``arxiv_summarize`` runs redo them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.arxiv.articles import DATASET

ARXIV_PIPELINES = (
    "arxiv_backfill",
    "arxiv_train",
    "arxiv_ingest",
    "arxiv_classify",
    "arxiv_summarize",
    "arxiv_monitor",
    "arxiv_maintenance",
)


class MaintenanceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_days: float | None = Field(
        30.0,
        ge=0,
        le=36500,
        allow_inf_nan=False,
        description="Purge what is older than this; null with everything=true: all.",
    )
    everything: bool = Field(False, description="Purge regardless of age.")
    dry_run: bool = Field(True, description="Only report what would be purged.")

    @model_validator(mode="after")
    def _age_or_everything(self) -> MaintenanceParams:
        if self.older_than_days is None and not self.everything:
            raise ValueError("give older_than_days, or everything=true to purge regardless of age")
        return self


def purge(ctx: Context) -> dict[str, Any]:
    """Count (dry run) or delete the old rows, in one transaction."""
    from mlfactory.store import utcnow
    from mlfactory.store.retention import Purge
    from mlfactory.store.retention import purge as purge_rows

    params = ctx.params
    assert isinstance(params, MaintenanceParams)
    before = None
    if not params.everything:
        assert params.older_than_days is not None
        before = utcnow() - timedelta(days=params.older_than_days)
    what = Purge(
        datasets=(DATASET,), pipelines=ARXIV_PIPELINES, before=before, keep_run_id=ctx.run_id
    )
    with ctx.sessions.begin() as session:
        counts = purge_rows(session, what, dry_run=params.dry_run)
    verb = "would purge" if params.dry_run else "purged"
    ctx.log.info("%s %s", verb, ", ".join(f"{count} {table}" for table, count in counts.items()))
    return {
        "dry_run": params.dry_run,
        "before": before.isoformat() if before else None,
        "counts": counts,
    }


pipeline = Pipeline(
    name="arxiv_maintenance",
    description=__doc__ or "",
    schedule=None,
    params=MaintenanceParams,
    tags=("arxiv", "maintenance"),
    steps=(Step("purge", purge),),
)
