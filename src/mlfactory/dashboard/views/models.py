"""Models: each registered model's versions with their metrics, its champion, the history of
champion decisions, and a link to MLflow."""

from __future__ import annotations

import streamlit as st

from mlfactory.dashboard import charts, session


def main() -> None:
    st.title("Models")
    api = session.client()
    models = {model["name"]: model for model in api.models()}
    if not models:
        st.info(
            "No registered models yet: run `mlfactory run advertising` to train and register one."
        )
        return
    model = api.model(st.selectbox("Model", list(models)))
    champion, versions = model["champion_version"], model["versions"]
    first, second, third = st.columns(3)
    first.metric("Champion", f"v{champion}" if champion else "none")
    second.metric("Latest version", f"v{model['latest_version']}" if versions else "none")
    third.metric("Pipelines", ", ".join(model["pipelines"]) or "none")
    if model["mlflow_url"]:
        st.link_button("Open in MLflow", model["mlflow_url"])
    else:
        st.caption(
            "Tracking is a local store, which has no MLflow UI here; each version's MLflow "
            "run id is listed below."
        )
    if champion is None:
        st.warning(f"No version of {model['name']} is champion: promote one to serve it.")

    st.subheader("Versions")
    st.dataframe([_version_row(version) for version in versions], hide_index=True)
    metrics = sorted({name for version in versions for name in version["metrics"]})
    if metrics:
        default = next((m for m in ("test_roc_auc", "test_accuracy") if m in metrics), metrics[0])
        metric = st.selectbox("Metric", metrics, index=metrics.index(default))
        st.altair_chart(charts.metric_by_version(versions, metric), width="stretch")

    st.subheader("Promotion history")
    if not model["promotions"]:
        st.info("No champion decision recorded yet.")
        return
    st.dataframe(
        [
            {
                "version": event["version"],
                "decided": event["decided_at"],
                "alias": event["alias"],
                "metric": event["metric"],
                "score": event["score"],
                "compared with": event["previous_champion"],
                "their score": event["previous_score"],
                "reason": event["reason"],
                "run": event["pipeline_run_id"],
            }
            for event in reversed(model["promotions"])
        ],
        hide_index=True,
    )


def _version_row(version: dict) -> dict:
    return {
        "version": version["version"],
        "champion": "★" if version["champion"] else "",
        "aliases": ", ".join(version["aliases"]),
        "registered": version["created_at"],
        **{name: round(value, 4) for name, value in sorted(version["metrics"].items())},
        "verdict": version["promotion"],
        "pipeline run": version["pipeline_run_id"],
        "MLflow run": version["mlflow_url"] or version["mlflow_run_id"],
    }


if __name__ == "__main__":
    main()
