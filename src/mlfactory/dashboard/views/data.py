"""Data: per data set, its size across load batches, its class distribution and the rows it
rejected, with the reason of each."""

from __future__ import annotations

import streamlit as st

from mlfactory.dashboard import charts, session

REJECTIONS = 200  # newest rejected rows listed


def main() -> None:
    st.title("Data")
    api = session.client()
    datasets = {dataset["name"]: dataset for dataset in api.datasets()}
    if not datasets:
        st.info("No data loaded yet: run `mlfactory run advertising` to load a data set.")
        return
    dataset = datasets[st.selectbox("Data set", list(datasets))]
    name = dataset["name"]
    batches = api.loads(name)
    first, second, third = st.columns(3)
    first.metric("Items", dataset["items"])
    second.metric("Labelled", dataset["labelled"])
    third.metric("Load batches", len(batches))

    st.subheader("Size across load batches")
    st.altair_chart(charts.data_size(batches), width="stretch")
    st.dataframe(
        [
            {
                "batch": batch["id"],
                "name": batch["name"],
                "mode": batch["mode"],
                "status": batch["status"],
                "seen": batch["rows_seen"],
                "inserted": batch["rows_inserted"],
                "updated": batch["rows_updated"],
                "unchanged": batch["rows_unchanged"],
                "rejected": batch["rows_rejected"],
                "items after": batch["items_after"],
                "started": batch["started_at"],
                "error": batch["error"],
            }
            for batch in reversed(batches)
        ],
        hide_index=True,
    )

    st.subheader("Class distribution")
    if dataset["classes"]:
        st.altair_chart(charts.counts(dataset["classes"], "label", "items"), width="stretch")
    else:
        st.info(f"The items of {name} have no labels.")

    st.subheader("Rejected rows")
    _rejections(api.rejections(name, limit=REJECTIONS))


def _rejections(page: dict) -> None:
    if not page["total"]:
        st.success("No row was rejected.")
        return
    columns = st.columns(len(page["by_stage"]) + 1)
    columns[0].metric("Rejected rows", page["total"])
    for column, (stage, count) in zip(columns[1:], page["by_stage"].items(), strict=True):
        column.metric(f"at {stage}", count)
    st.dataframe(
        [
            {
                "batch": row["batch_id"],
                "stage": row["stage"],
                "line": row["line"],
                "key": row["key"],
                "reason": row["reason"],
                "row": row["raw"],
            }
            for row in page["rejections"]
        ],
        hide_index=True,
    )
    if page["total"] > len(page["rejections"]):
        st.caption(f"The newest {len(page['rejections'])} of {page['total']} rejected rows.")


if __name__ == "__main__":
    main()
