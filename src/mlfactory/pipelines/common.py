"""The building blocks of pipeline steps: the MLflow run of a pipeline run, snapshots, the
registered version, the champion decision, drift reports and the closing summary. None of them
depends on the names of a pipeline's steps: each takes what it works on.

Heavy libraries are imported inside the functions, as in the pipeline modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlfactory.orchestration import Context

if TYPE_CHECKING:
    from mlfactory.monitoring import DriftReport
    from mlfactory.training.promote import Promotion
    from mlfactory.training.registry import RegisteredModel


@contextmanager
def training_run(ctx: Context, candidate: str | None = None) -> Iterator[None]:
    """An active MLflow run in the pipeline's experiment, named and tagged after this run (and
    after the ``candidate`` model it trains, when a run trains several)."""
    import mlflow

    from mlfactory.training.tracking import experiment_id

    tags = {"mlfactory.run_id": str(ctx.run_id), "mlfactory.pipeline": ctx.pipeline}
    name = f"{ctx.pipeline}-{ctx.run_id}"
    if candidate:
        tags["mlfactory.candidate"], name = candidate, f"{name}-{candidate}"
    with mlflow.start_run(
        experiment_id=experiment_id(ctx.pipeline, ctx.settings), run_name=name, tags=tags
    ):
        yield


def take_snapshots(
    ctx: Context, dataset: str, *, evaluation_fraction: float, balance: bool, seed: int
) -> dict[str, dict[str, Any]]:
    """The data set's fixed evaluation set (carved the first time) and this run's training
    snapshot (class-balanced when ``balance``): the output of a snapshot step."""
    from dataclasses import asdict

    from mlfactory.datasets.snapshots import carve_evaluation_set, training_snapshot

    evaluation = carve_evaluation_set(
        ctx.sessions,
        dataset,
        ctx.artifact_dir,
        fraction=evaluation_fraction,
        seed=seed,
        run_id=ctx.run_id,
    )
    training = training_snapshot(
        ctx.sessions, dataset, ctx.artifact_dir, balance=balance, seed=seed, run_id=ctx.run_id
    )
    return {
        "training": asdict(training) | {"path": str(training.path)},
        "evaluation": asdict(evaluation) | {"path": str(evaluation.path)},
    }


def log_snapshots(dataset: str, snapshots: dict[str, dict[str, Any]]) -> None:
    """Log the ``training`` and ``evaluation`` snapshots (the outputs of a snapshot step) as
    dataset inputs of the active MLflow run, with their class counts and a bar plot."""
    import pandas as pd

    from mlfactory.datasets.snapshots import class_count_figure
    from mlfactory.training.datasets import log_training_data

    for kind in ("training", "evaluation"):
        info = snapshots[kind]
        log_training_data(
            pd.read_parquet(info["path"]),
            name=f"{dataset}-{kind}-{info['digest'][:12]}",
            digest=info["digest"],
            targets="label",
            class_counts=info["class_counts"],
            balanced_counts=info["balanced_counts"],
            figure=class_count_figure(
                info["class_counts"], info["balanced_counts"], f"{dataset} {kind} set"
            ),
            context=kind,
            source=info["path"],
        )


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


def promote_version(
    ctx: Context,
    model_name: str,
    version: str,
    *,
    metric: str,
    score: float,
    score_model: Callable[[Any], float],
) -> dict[str, Any]:
    """Apply the champion rule to ``version`` of ``model_name``: its ``score`` on ``metric``
    against the champion's, which ``score_model`` computes on the same held-out set. The alias
    move is audited and a new champion announced; the decision goes on the run record."""
    from mlfactory.training.promote import promote
    from mlfactory.training.tracking import use_tracking

    promotion = promote(
        use_tracking(ctx.settings),
        model_name,
        version,
        metric=metric,
        score=score,
        score_model=score_model,
    )
    ctx.update_run(summary={"promotion": promotion.as_dict()})
    try:
        _record_promotion(ctx, promotion)
    except Exception:  # the alias has moved: a retry would see no move and record nothing
        ctx.log.exception("the alias move of %s was not audited or announced", model_name)
    return promotion.as_dict()


def _record_promotion(ctx: Context, decision: Promotion) -> None:
    """The alias change as an audit row; a new champion also as a message (mail, webhook)."""
    from mlfactory.notify import Promotion as PromotionNews
    from mlfactory.notify import promotion, send
    from mlfactory.store.audit import record

    moved = decision.alias != "champion" or decision.champion_version != decision.version
    if moved:
        with ctx.sessions.begin() as session:
            record(
                session,
                actor=f"pipeline:{ctx.pipeline} run {ctx.run_id}",
                action="alias.set",
                target=f"model:{decision.model_name}@{decision.alias}",
                before={"champion": decision.champion_version},
                after={decision.alias: decision.version},
                detail=decision.reason,
            )
    if decision.alias != "champion" or not moved:
        return
    news = PromotionNews(
        model_name=decision.model_name,
        new_version=decision.version,
        new_metrics={decision.metric: decision.score},
        old_version=decision.champion_version,
        old_metrics=(
            {} if decision.champion_score is None else {decision.metric: decision.champion_score}
        ),
        pipeline=ctx.pipeline,
        run_id=ctx.run_id,
    )
    send(
        ctx.settings,
        ctx.sessions,
        promotion(news, ctx.settings.api_public_url),
        recipients(ctx),
    )


def recipients(ctx: Context) -> tuple[str, ...]:
    """The mail recipients the running pipeline declares (none for one not registered, such as
    a pipeline run straight from Python: then ``MLF_NOTIFY_TO`` applies)."""
    from mlfactory.orchestration.registry import UnknownPipeline, get_pipeline

    try:
        return get_pipeline(ctx.pipeline).notify_to
    except UnknownPipeline:
        return ()


def publish_summary(
    ctx: Context, report: dict[str, Any], mlflow_run_id: str | None = None
) -> dict[str, Any]:
    """The summary as an artefact of the run and on its run record, and of the MLflow run
    ``mlflow_run_id`` when given."""
    from mlfactory.training.tracking import log_to_run

    if mlflow_run_id is not None:
        log_to_run(ctx.settings, mlflow_run_id, dicts={"summary.json": report})
    ctx.write_json("summary.json", report)
    ctx.update_run(summary=report)
    return report


def record_drift(
    ctx: Context,
    report: DriftReport,
    *,
    dataset: str,
    snapshot_id: int | None,
    model_name: str,
    title: str,
) -> dict[str, Any]:
    """A drift report as files (JSON and HTML) logged to a new MLflow run of the pipeline, a
    ``drift_reports`` row (``GET /v1/drift``, the Prometheus gauges) and, at severity alert or
    above, a message; the verdict, which also goes on the run record."""
    import mlflow

    from mlfactory.monitoring import Severity, write_report
    from mlfactory.store.tables import DriftCheck

    json_path, html_path = write_report(report, ctx.artifact_dir, title=title)
    with training_run(ctx, candidate="drift"):
        mlflow.log_metrics(
            {f"psi_{group.group.replace(' ', '_')}": group.psi for group in report.groups}
        )
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(html_path))
    with ctx.sessions.begin() as session:
        check = DriftCheck(
            dataset=dataset,
            pipeline=ctx.pipeline,
            run_id=ctx.run_id,
            snapshot_id=snapshot_id,
            model_name=model_name,
            severity=str(report.severity),
            dataset_drift=report.dataset_drift,
            report=report.to_dict(),
            html_path=str(html_path),
        )
        session.add(check)
        session.flush()
        check_id = check.id
    verdict = {
        "checked": True,
        "drift_report_id": check_id,
        "severity": str(report.severity),
        "dataset_drift": report.dataset_drift,
        "psi": {group.group: round(group.psi, 4) for group in report.groups},
        "drifted_columns": report.drifted_columns,
    }
    ctx.update_run(summary={"drift": verdict})
    if report.severity.level >= Severity.ALERT.level:
        try:
            _alert(ctx, report, model_name)
        except Exception:  # the report is stored: a retry of the step would store it twice
            ctx.log.exception("the drift alert of report %s was not sent", check_id)
    return verdict


def _alert(ctx: Context, report: DriftReport, model_name: str) -> None:
    """A drift alert message for the groups over the alert threshold (one per severity within
    the notification cooldown)."""
    from mlfactory.monitoring import DriftOptions
    from mlfactory.notify import DriftAlert, DriftGroup, drift_alert, send

    threshold = DriftOptions().psi_alert
    alert = DriftAlert(
        pipeline=ctx.pipeline,
        severity=str(report.severity),  # type: ignore[arg-type]
        groups=tuple(
            DriftGroup(group.group, group.psi, threshold)
            for group in report.groups
            if group.psi >= threshold
        ),
        model_name=model_name,
    )
    send(
        ctx.settings,
        ctx.sessions,
        drift_alert(alert, ctx.settings.api_public_url),
        recipients(ctx),
    )
