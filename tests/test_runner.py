"""The local runner: order, retries, run records, hooks, parameters and output checks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from mlfactory.orchestration import (
    Context,
    InvalidParams,
    Pipeline,
    RunOutcome,
    Step,
    parse_pairs,
    run_pipeline,
    validate_params,
)
from mlfactory.orchestration.history import get_run
from mlfactory.orchestration.records import fail_interrupted_runs
from mlfactory.processes import HOST
from mlfactory.settings import Settings
from mlfactory.store import PipelineRun, TaskRun


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(0.5, gt=0, lt=1)
    names: list[str] = ["a"]
    flag: bool = False


def test_steps_run_in_dependency_order_with_upstream_outputs(settings: Settings) -> None:
    seen: list[str] = []

    def make(name: str):
        def step(ctx: Context) -> dict[str, Any]:
            seen.append(name)
            return {"name": name, "inputs": sorted(ctx.upstream), "rate": ctx.params.rate}

        return step

    pipeline = Pipeline(
        name="diamond",
        params=Params,
        steps=(
            Step("join", make("join"), needs=("left", "right")),
            Step("right", make("right"), needs=("start",)),
            Step("left", make("left"), needs=("start",)),
            Step("start", make("start")),
        ),
    )
    outcome = run_pipeline(pipeline, {"rate": "0.25"}, settings=settings)
    assert outcome.status == "success"
    assert seen[0] == "start" and seen[-1] == "join"
    assert outcome.outputs["join"] == {"name": "join", "inputs": ["left", "right"], "rate": 0.25}


def test_failing_step_is_retried_then_fails_the_run_and_calls_the_failure_hook(
    settings: Settings, sessions
) -> None:
    calls: list[int] = []
    hooks: list[RunOutcome] = []

    def flaky(ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError(f"boom on attempt {ctx.attempt}")

    pipeline = Pipeline(
        name="failing",
        retries=2,
        retry_delay=0.05,
        steps=(
            Step("first", lambda ctx: {"ok": True}),
            Step("flaky", flaky, needs=("first",)),
            Step("after", lambda ctx: None, needs=("flaky",)),
        ),
        on_success=(lambda outcome: pytest.fail("success hook called on a failure"),),
        on_failure=(hooks.append,),
    )
    outcome = run_pipeline(pipeline, settings=settings)

    assert calls == [1, 2, 3]
    assert outcome.status == "failed" and outcome.failed_step == "flaky"
    assert "boom on attempt 3" in (outcome.error or "")
    assert [hook.run_id for hook in hooks] == [outcome.run_id]
    with sessions() as session:
        run = session.get_one(PipelineRun, outcome.run_id)
        assert run.status == "failed" and "boom on attempt 3" in (run.error or "")
        attempts = session.execute(
            select(TaskRun.step, TaskRun.attempt, TaskRun.status, TaskRun.traceback)
            .where(TaskRun.run_id == outcome.run_id)
            .order_by(TaskRun.id)
        ).all()
    assert [(a.step, a.attempt, a.status) for a in attempts] == [
        ("first", 1, "success"),
        ("flaky", 1, "failed"),
        ("flaky", 2, "failed"),
        ("flaky", 3, "failed"),
        ("after", 0, "upstream_failed"),
    ]
    assert "RuntimeError: boom on attempt 1" in attempts[1].traceback


def test_a_step_that_recovers_on_retry_succeeds(settings: Settings, sessions) -> None:
    def second_time_lucky(ctx: Context) -> dict[str, int]:
        if ctx.attempt == 1:
            raise ConnectionError("transient")
        return {"attempt": ctx.attempt}

    pipeline = Pipeline(name="recovers", steps=(Step("s", second_time_lucky, retries=1),))
    outcome = run_pipeline(pipeline, settings=settings)
    assert outcome.status == "success"
    record = get_run(sessions, outcome.run_id)
    assert [(a["attempt"], a["status"]) for a in record["attempts"]] == [
        (1, "failed"),
        (2, "success"),
    ]
    assert record["attempts"][1]["output"] == {"attempt": 2}


def test_a_failing_hook_does_not_fail_the_run(settings: Settings) -> None:
    def broken_hook(outcome: RunOutcome) -> None:
        raise OSError("mail server down")

    pipeline = Pipeline(
        name="hooked", steps=(Step("s", lambda ctx: None),), on_success=(broken_hook,)
    )
    assert run_pipeline(pipeline, settings=settings).status == "success"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"when": object()}, "not JSON"),
        ("text", "returned str"),
        ({"big": "x" * 70_000}, "limit"),
    ],
)
def test_outputs_that_cannot_travel_fail_the_step_with_a_clear_error(
    settings: Settings, output: object, message: str
) -> None:
    pipeline = Pipeline(name="bad-output", steps=(Step("s", lambda ctx: output),))
    outcome = run_pipeline(pipeline, settings=settings)
    assert outcome.status == "failed"
    assert message in (outcome.error or "")


def test_each_step_writes_its_context_artefacts_in_the_run_folder(settings: Settings) -> None:
    def write(ctx: Context) -> dict[str, str]:
        path = ctx.artifact_dir / "out.txt"
        path.write_text(ctx.step)
        return {"path": str(path)}

    outcome = run_pipeline(Pipeline(name="files", steps=(Step("w", write),)), settings=settings)
    path = outcome.outputs["w"]["path"]
    assert path.startswith(str(settings.artifacts_dir / "runs" / "files" / str(outcome.run_id)))
    assert Path(path).read_text() == "w"


def test_parameters_are_typed_and_checked() -> None:
    typed = validate_params(Params, parse_pairs(Params, ["rate=0.1", "names=x, y", "flag=true"]))
    assert typed == Params(rate=0.1, names=["x", "y"], flag=True)
    assert parse_pairs(Params, ['names=["p","q"]'])["names"] == ["p", "q"]
    with pytest.raises(InvalidParams, match=r"rate: Input should be less than 1 \(got '3'\)"):
        validate_params(Params, parse_pairs(Params, ["rate=3"]))
    with pytest.raises(
        InvalidParams, match=r"unknown parameter.*nope.*declared: rate, names, flag"
    ):
        validate_params(Params, parse_pairs(Params, ["nope=1"]))
    with pytest.raises(InvalidParams, match="not of the form key=value"):
        parse_pairs(Params, ["rate"])


def test_invalid_graphs_are_refused_when_defined() -> None:
    noop = lambda ctx: None  # noqa: E731
    with pytest.raises(ValueError, match="needs unknown"):
        Pipeline(name="p", steps=(Step("a", noop, needs=("ghost",)),))
    with pytest.raises(ValueError, match="cycle"):
        Pipeline(name="p", steps=(Step("a", noop, needs=("b",)), Step("b", noop, needs=("a",))))
    with pytest.raises(ValueError, match="unique"):
        Pipeline(name="p", steps=(Step("a", noop), Step("a", noop)))


def test_runs_of_a_dead_process_are_marked_failed(settings: Settings, sessions) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sessions.begin() as session:
        run = PipelineRun(pipeline="p", status="running", engine="local", host=HOST, pid=dead.pid)
        alive = PipelineRun(
            pipeline="p", status="running", engine="local", host=HOST, pid=os.getpid()
        )
        session.add_all([run, alive])
        session.flush()
        session.add(TaskRun(run_id=run.id, step="s", attempt=1, status="running", engine="local"))
    assert fail_interrupted_runs(sessions) == [run.id]
    with sessions() as session:
        assert session.get_one(PipelineRun, run.id).status == "failed"
        assert "interrupted" in (session.get_one(PipelineRun, run.id).error or "")
        assert session.get_one(PipelineRun, alive.id).status == "running"
        assert session.scalar(select(TaskRun.status).where(TaskRun.run_id == run.id)) == "failed"
