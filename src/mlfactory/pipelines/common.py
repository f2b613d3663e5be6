"""What the model-training steps of every pipeline do alike: the MLflow run of a pipeline run,
recording the registered version, the champion decision and the closing summary.

Heavy libraries are imported inside the functions, as in the pipeline modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlfactory.orchestration import Context

if TYPE_CHECKING:
    from mlfactory.training.registry import RegisteredModel


@contextmanager
def training_run(ctx: Context) -> Iterator[None]:
    """An active MLflow run in the pipeline's experiment, named and tagged after this run."""
    import mlflow

    from mlfactory.training.tracking import experiment_id

    with mlflow.start_run(
        experiment_id=experiment_id(ctx.pipeline, ctx.settings),
        run_name=f"{ctx.pipeline}-{ctx.run_id}",
        tags={"mlfactory.run_id": str(ctx.run_id), "mlfactory.pipeline": ctx.pipeline},
    ):
        yield


def registered_output(ctx: Context, registered: RegisteredModel, **extra: Any) -> dict[str, Any]:
    """Link the run record to the MLflow run and model version; the train step's output."""
    ctx.update_run(
        mlflow_run_id=registered.run_id,
        model_name=registered.name,
        model_version=registered.version,
    )
    return {
        "mlflow_run_id": registered.run_id,
        "model_uri": registered.model_uri,
        "model_version": registered.version,
        **extra,
    }


def promote_trained(
    ctx: Context, model_name: str, metric: str, score_model: Callable[[Any], float]
) -> dict[str, Any]:
    """Apply the champion rule to the version the ``train`` step registered, comparing its
    ``evaluate`` score on ``metric`` with the champion's, scored by ``score_model``."""
    from mlfactory.training.promote import promote
    from mlfactory.training.tracking import use_tracking

    promotion = promote(
        use_tracking(ctx.settings),
        model_name,
        ctx.output_of("train")["model_version"],
        metric=metric,
        score=ctx.output_of("evaluate")[metric],
        score_model=score_model,
    )
    ctx.update_run(summary={"promotion": promotion.as_dict()})
    return promotion.as_dict()


def publish_summary(ctx: Context, report: dict[str, Any]) -> dict[str, Any]:
    """The summary as an artefact of the run, of its MLflow run, and on its run record."""
    from mlfactory.training.tracking import log_to_run

    log_to_run(
        ctx.settings, ctx.output_of("train")["mlflow_run_id"], dicts={"summary.json": report}
    )
    ctx.write_json("summary.json", report)
    ctx.update_run(summary=report)
    return report
