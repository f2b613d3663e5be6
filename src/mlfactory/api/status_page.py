"""The HTML status page of a pipeline: its latest run as a success or a failure view.

A failure view leads with the failing step, its error and traceback, then says what to check;
both views show the run's facts, every step's outcome and the metrics. Plain HTML with every
value escaped, no template engine and no script.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any

from mlfactory.api.schemas import RunDetail, RunSummary
from mlfactory.orchestration import Pipeline

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
.badge { display: inline-block; padding: .2rem .7rem; border-radius: .3rem; color: #fff; }
.success { background: #2e7d32; } .failed { background: #c62828; }
.running { background: #f9a825; } .never_run { background: #757575; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
td, th { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
pre { background: #f5f5f5; padding: .8rem; overflow-x: auto; }
.error { border-left: .3rem solid #c62828; padding: .2rem 1rem; background: #fdecea; }
"""


def render(pipeline: Pipeline, run: RunDetail | None, last_success: RunSummary | None) -> str:
    state = run.status if run else "never_run"
    title = f"{pipeline.name}: {state.replace('_', ' ')}"
    parts = [
        f"<h1>{_e(pipeline.name)} <span class='badge {_e(state)}'>{_e(state.upper())}</span></h1>"
    ]
    if run is None:
        parts.append(
            f"<p>No run yet. Start one with <code>mlfactory run {_e(pipeline.name)}</code>.</p>"
        )
    else:
        if run.status == "failed":
            parts.append(_failure(pipeline, run, last_success))
        parts += [
            "<h2>Run</h2>",
            _facts(run, last_success),
            "<h2>Steps</h2>",
            _steps(pipeline, run),
        ]
        if run.metrics:
            parts += ["<h2>Metrics</h2>", _table(("metric", "value"), run.metrics.items())]
        if run.summary:
            parts += ["<h2>Summary</h2>", f"<pre>{_e(_json(run.summary))}</pre>"]
    body = "\n".join(parts)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>"
    )


def _failure(pipeline: Pipeline, run: RunDetail, last_success: RunSummary | None) -> str:
    step = run.failed_step
    tries = [a for a in run.attempts if a.step == step and a.status == "failed"]
    last = tries[-1] if tries else None
    parts = ["<div class='error'>"]
    if step:
        parts.append(f"<h2>Step <code>{_e(step)}</code> failed</h2>")
    parts.append(
        f"<p>{_e(last.error if last and last.error else run.error or 'unknown error')}</p>"
    )
    if last and last.traceback:
        parts.append(f"<details open><summary>Traceback</summary><pre>{_e(last.traceback)}</pre>")
        parts.append("</details>")
    parts.append("</div><h2>What to check</h2><ul>")
    parts += [f"<li>{hint}</li>" for hint in _hints(pipeline, run, len(tries), last_success)]
    parts.append("</ul>")
    return "\n".join(parts)


def _hints(
    pipeline: Pipeline, run: RunDetail, attempts: int, last_success: RunSummary | None
) -> list[str]:
    name, step = _e(pipeline.name), _e(run.failed_step or "")
    hints = []
    if (run.error or "").startswith("interrupted"):
        hints.append(
            "The process running the run ended before it finished: check that machine's logs "
            "(out of memory, a restart), then start the run again."
        )
    if run.failed_step:
        hints.append(
            f"The error and traceback of <code>{step}</code> above"
            + (
                f": it failed on each of its {attempts} attempts, so the cause is not transient."
                if attempts > 1
                else "."
            )
        )
        needs = pipeline.step(run.failed_step).needs if _has_step(pipeline, run.failed_step) else ()
        if needs:
            hints.append(
                "What the steps it needs produced ("
                + ", ".join(f"<code>{_e(n)}</code>" for n in needs)
                + f"): their outputs are in <code>/v1/runs/{run.id}</code>."
            )
    skipped = [s.step for s in run.steps if s.status == "upstream_failed"]
    if skipped:
        hints.append(
            "Not run because a step they need failed: "
            + ", ".join(f"<code>{_e(s)}</code>" for s in skipped)
            + "."
        )
    if last_success is None:
        hints.append("No run of this pipeline has succeeded yet: check its data and settings.")
    else:
        changed = sorted(
            key
            for key in run.params.keys() | last_success.params.keys()
            if run.params.get(key) != last_success.params.get(key)
        )
        hints.append(
            f"The last success was run {last_success.id}"
            + (
                "; parameters that differ since: "
                + ", ".join(f"<code>{_e(key)}</code>" for key in changed)
                if changed
                else ", with the same parameters: look at what changed in the data or the code"
            )
            + "."
        )
    hints.append(
        f"The run's artefacts, under <code>runs/{name}/{run.id}</code> in the artefacts "
        f"directory, and every attempt with <code>mlfactory runs --id {run.id}</code>."
    )
    hints.append(
        f"Once fixed, start a run: <code>mlfactory run {name}</code> or "
        f"<code>POST /v1/pipelines/{name}/runs</code>."
    )
    return hints


def _facts(run: RunDetail, last_success: RunSummary | None) -> str:
    model = f"{run.model_name} v{run.model_version}" if run.model_version else "-"
    rows: list[tuple[str, Any]] = [
        ("run", run.id),
        ("status", run.status),
        ("engine", run.engine),
        ("started", _time(run.started_at)),
        ("ended", _time(run.ended_at)),
        ("duration", _seconds(run.duration_s)),
        ("model", model),
        ("MLflow run", run.mlflow_run_id or "-"),
        ("parameters", json.dumps(run.params, sort_keys=True, default=str)),
    ]
    if run.status != "success":
        rows.append(
            ("last success", f"run {last_success.id}, {_time(last_success.ended_at)}")
            if last_success
            else ("last success", "never")
        )
    return _table(("", ""), rows)


def _steps(pipeline: Pipeline, run: RunDetail) -> str:
    states = {state.step: state for state in run.steps}
    rows = []
    for step in pipeline.ordered_steps():
        state = states.pop(step.name, None)
        rows.append(
            (step.name, "not run", "", "", "")
            if state is None
            else (
                step.name,
                state.status,
                state.attempts,
                _seconds(state.duration_s),
                state.error or "",
            )
        )
    rows += [  # steps the pipeline no longer has
        (s.step, s.status, s.attempts, _seconds(s.duration_s), s.error or "")
        for s in states.values()
    ]
    return _table(("step", "status", "attempts", "duration", "error"), rows)


def _has_step(pipeline: Pipeline, name: str) -> bool:
    return any(step.name == name for step in pipeline.steps)


def _table(header: tuple[str, ...], rows: Any) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header) if any(header) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(value)}</td>" for value in row) + "</tr>" for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _e(value: Any) -> str:
    return escape(str(value))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _time(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"
