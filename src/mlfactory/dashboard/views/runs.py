"""Runs: a pipeline's runs; one run's steps with their durations and errors; starting a run
(admins)."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from mlfactory.dashboard import charts, session
from mlfactory.dashboard.client import Api

HISTORY = 50


def main() -> None:
    st.title("Runs")
    api = session.client()
    pipelines = [p["name"] for p in api.pipelines()]
    if not pipelines:
        st.info("No pipelines are registered: install mlfactory with its built-in pipelines.")
        return
    pipeline = st.selectbox("Pipeline", pipelines)
    if session.role() == "admin":
        _start_form(api, pipeline)
    page = api.runs(pipeline, limit=HISTORY)
    if not page["total"]:
        st.info(f"No runs yet: run `mlfactory run {pipeline}`.")
        return
    runs = page["runs"]
    st.dataframe([_row(run) for run in runs], hide_index=True)
    labels = {f"run {run['id']}: {run['status']} ({run['started_at']})": run["id"] for run in runs}
    _detail(api.run(labels[st.selectbox("Run", list(labels))]))


def _start_form(api: Api, pipeline: str) -> None:
    with st.expander("Start a run"), st.form(f"start-{pipeline}"):
        text = st.text_area("Parameters (JSON object)", value="{}")
        if not st.form_submit_button("Start run"):
            return
        try:
            params = json.loads(text)
        except ValueError as exc:
            st.error(f"The parameters are not JSON: {exc}")
            return
        if not isinstance(params, dict):
            st.error('The parameters must be a JSON object, such as {"c": 0.5}.')
            return
        started = api.start_run(pipeline, params)
        st.success(f"Run {started['run_id']} of {pipeline} started.")


def _row(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run["id"],
        "status": run["status"],
        "engine": run["engine"],
        "started": run["started_at"],
        "duration (s)": run["duration_s"],
        "failed step": run["failed_step"],
        "model version": run["model_version"],
        "error": run["error"],
    }


def _detail(run: dict[str, Any]) -> None:
    st.subheader(f"Run {run['id']} of {run['pipeline']}")
    first, second, third = st.columns(3)
    first.metric("Status", run["status"])
    duration = run["duration_s"]
    second.metric("Duration", "running" if duration is None else f"{duration:.1f} s")
    third.metric("Steps", len(run["steps"]))
    if run["error"]:
        st.error(run["error"])
    st.dataframe(
        [
            {
                "step": step["step"],
                "status": step["status"],
                "attempts": step["attempts"],
                "duration (s)": step["duration_s"],
                "error": step["error"],
            }
            for step in run["steps"]
        ],
        hide_index=True,
    )
    if run["steps"]:
        st.altair_chart(charts.step_durations(run["steps"]), width="stretch")
    for attempt in run["attempts"]:
        if attempt["error"]:
            with st.expander(
                f"{attempt['step']}, attempt {attempt['attempt']}: {attempt['error']}"
            ):
                st.code(attempt["traceback"] or attempt["error"])
    if run["metrics"]:
        st.markdown("**Metrics**")
        st.dataframe(
            [{"metric": name, "value": value} for name, value in run["metrics"].items()],
            hide_index=True,
        )


if __name__ == "__main__":
    main()
