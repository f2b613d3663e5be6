"""``arxiv_classify``: a predicted subject, from the champion, for every article without one.

Every 45 minutes. Articles are claimed in batches, so several workers can share the work and a
crash loses nothing. Before the first champion exists (run ``arxiv_train``) there is nothing to
classify with: the run completes and says so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.arxiv.articles import DATASET, MODEL_NAME, article_features


class ClassifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(MODEL_NAME, min_length=1, description="Registered model to use.")
    batch_size: int = Field(500, gt=0, description="Articles claimed per batch.")


def classify(ctx: Context) -> dict[str, Any]:
    """Predict every pending article with the current champion."""
    from dataclasses import asdict

    from mlfactory.inference.batch import predict_pending
    from mlfactory.inference.champion import NoChampionError

    params = ctx.params
    assert isinstance(params, ClassifyParams)
    try:
        result = predict_pending(
            ctx.sessions,
            ctx.settings,
            DATASET,
            params.model_name,
            to_features=article_features,
            batch_size=params.batch_size,
            run_id=ctx.run_id,
        )
    except NoChampionError as exc:
        ctx.log.warning("nothing classified: %s", exc)
        return {"predicted": 0, "skipped": str(exc)}
    return asdict(result)


pipeline = Pipeline(
    name="arxiv_classify",
    description=__doc__ or "",
    schedule=timedelta(minutes=45),
    params=ClassifyParams,
    retries=2,
    retry_delay=30.0,
    tags=("arxiv", "inference"),
    notify_success=False,  # runs many times a day: only failures are mailed
    steps=(Step("classify", classify),),
)
