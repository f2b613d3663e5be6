"""Overview: every pipeline with its last run, and how long runs took over time."""

from __future__ import annotations

import streamlit as st

from mlfactory.dashboard import charts, session

HISTORY = 50  # runs per pipeline in the durations chart


def main() -> None:
    st.title("Overview")
    api = session.client()
    pipelines = api.pipelines()
    if not pipelines:
        st.info("No pipelines are registered: install mlfactory with its built-in pipelines.")
        return
    ran = [p for p in pipelines if p["last_run"]]
    failing = [p["name"] for p in ran if p["last_run"]["status"] == "failed"]
    first, second, third = st.columns(3)
    first.metric("Pipelines", len(pipelines))
    second.metric("Pipelines that ran", len(ran))
    third.metric("Last run failed", len(failing))
    st.dataframe([_row(pipeline) for pipeline in pipelines], hide_index=True)
    if not ran:
        st.info(f"No runs yet: run `mlfactory run {pipelines[0]['name']}`.")
        return
    if failing:
        st.error(f"The last run failed for: {', '.join(failing)}. See the Runs page.")
    st.subheader("Run durations")
    runs = [run for p in ran for run in api.runs(p["name"], limit=HISTORY)["runs"]]
    st.altair_chart(charts.run_durations(runs), width="stretch")


def _row(pipeline: dict) -> dict:
    run = pipeline["last_run"] or {}
    return {
        "pipeline": pipeline["name"],
        "schedule": pipeline["schedule"],
        "last run": run.get("id"),
        "status": run.get("status", "never run"),
        "started": run.get("started_at"),
        "duration (s)": run.get("duration_s"),
        "failed step": run.get("failed_step"),
        "model": pipeline["model_name"],
    }


if __name__ == "__main__":
    main()
