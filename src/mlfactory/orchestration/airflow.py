"""The Airflow adapter: one Airflow 3 DAG per registered pipeline, running the same steps.

Each task runs its step through :func:`run_step_attempt`, the path the local runner takes, so
``pipeline_runs`` / ``task_runs`` read the same whichever engine ran a pipeline (``engine`` says
which). Upstream outputs travel as XComs; Airflow retries a step as the pipeline says, except a
mistake to fix (a ``UserError``: wrong columns, bad parameters), which fails it at once; the
pipeline's success and failure hooks become the DAG's callbacks.

Building DAGs touches neither the store nor the network: Airflow imports the DAG file often.
Airflow itself is imported only here, so the rest of mlfactory runs without it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowFailException

from mlfactory.errors import UserError
from mlfactory.orchestration import records
from mlfactory.orchestration.announce import announce_run
from mlfactory.orchestration.context import Context, run_artifact_dir
from mlfactory.orchestration.history import get_run
from mlfactory.orchestration.params import validate_params
from mlfactory.orchestration.pipeline import Pipeline
from mlfactory.orchestration.registry import all_pipelines, get_pipeline
from mlfactory.orchestration.runner import RunOutcome, run_step_attempt
from mlfactory.settings import get_settings
from mlfactory.store import session_factory

ENGINE = "airflow"
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
"""DAGs start in the past with catchup off: the first scheduled run is the next one due."""


def build_dags() -> dict[str, DAG]:
    """Every registered pipeline as a DAG, keyed by DAG id (the pipeline's name)."""
    return {pipeline.name: build_dag(pipeline) for pipeline in all_pipelines()}


def build_dag(pipeline: Pipeline) -> DAG:
    with DAG(
        dag_id=pipeline.name,
        schedule=pipeline.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        tags=["mlfactory", *pipeline.tags],
        doc_md=pipeline.description or None,
        params=dag_params(pipeline),
        on_success_callback=_finish_run,
        on_failure_callback=_finish_run,
    ) as dag:
        tasks = {}
        for step in pipeline.steps:
            retries, delay = pipeline.retry_policy(step)
            tasks[step.name] = PythonOperator(
                task_id=step.name,
                python_callable=run_task,
                op_kwargs={"pipeline_name": pipeline.name, "step_name": step.name},
                retries=retries,
                retry_delay=timedelta(seconds=delay),
                doc_md=step.description or (step.fn.__doc__ or None),
            )
        for step in pipeline.steps:
            for need in step.needs:
                tasks[need] >> tasks[step.name]
    return dag


def dag_params(pipeline: Pipeline) -> dict[str, Param]:
    """The pipeline's parameters as DAG params, with their JSON schema, so "trigger with config"
    shows and checks them; the task validates them again with the pipeline's own model."""
    schema = pipeline.params.model_json_schema()
    params = {}
    for name, field in pipeline.params.model_fields.items():
        prop = {
            k: v for k, v in schema["properties"][name].items() if k not in ("title", "default")
        }
        default = field.get_default(call_default_factory=True)
        params[name] = Param(default, **prop)
    return params


def run_task(pipeline_name: str, step_name: str, **context: Any) -> dict[str, Any]:
    """The callable of every task: one attempt of one step, recorded like a local one."""
    pipeline = get_pipeline(pipeline_name)
    step = pipeline.step(step_name)
    settings = get_settings()
    settings.ensure_dirs()
    sessions = session_factory(settings.database_url)
    params = validate_params(pipeline.params, dict(context["params"]))
    run_id = records.start_or_get_run(
        sessions, pipeline.name, params.model_dump(mode="json"), ENGINE, _external_id(context)
    )
    ti = context["ti"]
    step_context = Context(
        run_id=run_id,
        pipeline=pipeline.name,
        step=step.name,
        attempt=ti.try_number,
        engine=ENGINE,
        params=params,
        settings=settings,
        upstream={need: ti.xcom_pull(task_ids=need) or {} for need in step.needs},
        sessions=sessions,
        artifact_dir=run_artifact_dir(settings, pipeline.name, run_id),
        log=logging.getLogger(f"mlfactory.{pipeline.name}.{step.name}"),
    )
    try:
        return run_step_attempt(step, step_context)
    except UserError as exc:  # a mistake to fix, not a transient failure: no retry
        raise AirflowFailException(str(exc)) from exc


def _external_id(context: dict[str, Any]) -> str:
    return f"{ENGINE}:{context['dag'].dag_id}:{context['run_id']}"


def _finish_run(context: dict[str, Any]) -> None:
    """DAG callback: close the run record and call the pipeline's hooks."""
    pipeline = get_pipeline(context["dag"].dag_id)
    settings = get_settings()
    sessions = session_factory(settings.database_url)
    run_id = records.find_run(sessions, _external_id(context))
    if run_id is None:  # no task started (e.g. the run was failed before any ran)
        return
    outcome = _outcome(sessions, run_id, pipeline.name, success=_succeeded(context))
    records.finish_run(sessions, run_id, outcome.status, outcome.error)
    announce_run(pipeline, outcome, settings, sessions)


def _outcome(sessions: Any, run_id: int, pipeline: str, success: bool) -> RunOutcome:
    """The run's outcome read back from its attempts (Airflow ran them in other processes)."""
    attempts = (get_run(sessions, run_id) or {}).get("attempts", [])
    outputs = {a["step"]: a["output"] or {} for a in attempts if a["status"] == "success"}
    if success:
        return RunOutcome(run_id=run_id, pipeline=pipeline, outputs=outputs)
    failed = [a for a in attempts if a["status"] == "failed"]
    step = failed[-1]["step"] if failed else None
    error = f"step {step!r} failed: {failed[-1]['error']}" if failed else "the Airflow run failed"
    return RunOutcome(
        run_id=run_id,
        pipeline=pipeline,
        status="failed",
        error=error,
        failed_step=step,
        outputs=outputs,
    )


def _succeeded(context: dict[str, Any]) -> bool:
    return str(getattr(context["dag_run"], "state", "")) in ("success", "DagRunState.SUCCESS")
