"""``arxiv_monitor``: do recent articles still look like the ones the champion was trained on?

Daily. The articles loaded or updated within the window are compared with the latest training
snapshot: text lengths of title and abstract, sentence-embedding projections (with the
``embeddings`` extra), and the champion's predicted-subject mix against the training subjects.
PSI per feature group with severity (>= 0.1 warning, >= 0.2 alert, >= 0.3 critical), a test
per column with Evidently's defaults, and a JSON + HTML report, logged to MLflow, stored, served
at ``GET /v1/drift`` and exported as Prometheus gauges by the API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mlfactory.orchestration import Context, Pipeline, Step
from mlfactory.pipelines.arxiv.articles import DATASET, MODEL_NAME, TEXT_COLUMNS
from mlfactory.pipelines.common import record_drift

if TYPE_CHECKING:
    import pandas as pd


SUBJECT = "subject"


class MonitorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_days: float = Field(
        7.0,
        gt=0,
        le=3650,
        allow_inf_nan=False,
        description="Articles loaded within this many days.",
    )
    min_articles: int = Field(20, gt=0, description="Fewer recent articles: no check.")
    model_name: str = Field(MODEL_NAME, min_length=1, description="Model whose inputs to watch.")
    embeddings: bool = Field(True, description="Compare sentence-embedding projections too.")
    components: int = Field(5, gt=0, le=50, description="Principal components compared.")


def drift(ctx: Context) -> dict[str, Any]:
    """Compare the recent articles with the training snapshot; store and log the report."""
    from mlfactory.datasets.recent import recent_items
    from mlfactory.datasets.snapshots import latest_training_snapshot, load_snapshot
    from mlfactory.monitoring import compare
    from mlfactory.store import utcnow

    params = ctx.params
    assert isinstance(params, MonitorParams)
    snapshot = latest_training_snapshot(ctx.sessions, DATASET)
    if snapshot is None:
        return {"checked": False, "reason": "no training snapshot yet: run arxiv_train first"}
    since = utcnow() - timedelta(days=params.window_days)
    current = recent_items(ctx.sessions, DATASET, since, params.model_name)
    if len(current) < params.min_articles:
        reason = f"{len(current)} articles in the last {params.window_days:g} days, fewer than {params.min_articles}"
        return {"checked": False, "reason": reason}
    reference = load_snapshot(snapshot).drop_duplicates("key")  # undo the oversampling
    reference_frame, current_frame, groups = _features(reference, current, params)
    report = compare(
        reference_frame,
        current_frame,
        columns=[column for columns in groups.values() for column in columns],
        categorical=[SUBJECT] if SUBJECT in reference_frame else [],
        groups=groups,
        context={
            "dataset": DATASET,
            "snapshot": snapshot.digest[:12],
            "since": since.isoformat(timespec="seconds"),
        },
    )
    verdict = record_drift(
        ctx,
        report,
        dataset=DATASET,
        snapshot_id=snapshot.id,
        model_name=params.model_name,
        title="arXiv drift report",
    )
    summary = {**verdict, "reference_rows": len(reference), "current_rows": len(current)}
    ctx.update_run(summary=summary)
    return summary


def _features(
    reference: pd.DataFrame, current: pd.DataFrame, params: MonitorParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """Both sides' compared columns, and the feature groups they form. Sides may differ in
    rows per group (the embedding reference is half the snapshot): shorter columns are padded
    with missing values, which every test leaves out."""
    import pandas as pd

    from mlfactory.monitoring import embedding_projection, text_length_features
    from mlfactory.pipelines.arxiv.articles import article_features
    from mlfactory.training.embeddings import SentenceEmbedder, embeddings_available

    sides = [
        [
            text_length_features(article_features(frame), TEXT_COLUMNS).reset_index(drop=True),
            frame[labels].rename(SUBJECT).reset_index(drop=True).to_frame(),
        ]
        for frame, labels in ((reference, "label"), (current, "predicted_label"))
    ]
    groups = {"text length": list(sides[0][0].columns), "predicted subject": [SUBJECT]}
    if current["predicted_label"].isna().all():
        del groups["predicted subject"]  # nothing classified yet
        for side in sides:
            side.pop()
    if params.embeddings and embeddings_available():
        embedder = SentenceEmbedder(TEXT_COLUMNS)
        projected = embedding_projection(
            embedder.transform(article_features(reference)),
            embedder.transform(article_features(current)),
            components=params.components,
        )
        for side, frame in zip(sides, projected, strict=True):
            side.append(frame)
        groups["embedding"] = list(projected[0].columns)
    reference_frame, current_frame = (pd.concat(side, axis=1) for side in sides)
    return reference_frame, current_frame, groups


pipeline = Pipeline(
    name="arxiv_monitor",
    description=__doc__ or "",
    schedule="@daily",
    params=MonitorParams,
    retries=1,
    retry_delay=60.0,
    tags=("arxiv", "monitoring"),
    steps=(Step("drift", drift),),
)
