"""The dashboard's charts (Altair), built from what the API returns."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

STATUS_COLOURS = alt.Scale(
    domain=["success", "failed", "running", "upstream_failed"],
    range=["#2e7d32", "#c62828", "#1565c0", "#9e9e9e"],
)
STATUS_SHAPES = alt.Scale(
    domain=["success", "failed", "running"], range=["circle", "cross", "triangle-up"]
)


def counts(values: dict[str, int | float], category: str, measure: str) -> alt.Chart:
    """Horizontal bars, one per key, largest first (classes, subjects, probabilities)."""
    frame = pd.DataFrame({category: list(values), measure: list(values.values())})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(f"{measure}:Q", title=measure),
            y=alt.Y(f"{category}:N", sort="-x", title=category),
            tooltip=[category, measure],
        )
    )


def run_durations(runs: list[dict[str, Any]]) -> alt.Chart:
    """Each finished run's duration at its start time: a line per pipeline, a mark per run
    shaped by its outcome."""
    frame = pd.DataFrame(
        [
            {
                "pipeline": run["pipeline"],
                "run": run["id"],
                "started": pd.Timestamp(run["started_at"]).tz_convert(None),  # UTC
                "seconds": run["duration_s"],
                "status": run["status"],
            }
            for run in runs
            if run["duration_s"] is not None
        ],
        columns=["pipeline", "run", "started", "seconds", "status"],
    )
    base = alt.Chart(frame).encode(
        x=alt.X("started:T", title="started (UTC)", axis=alt.Axis(format="%d %b %H:%M")),
        y=alt.Y("seconds:Q", title="duration (s)"),
        color=alt.Color("pipeline:N"),
        tooltip=["pipeline", "run", "status", "seconds", "started"],
    )
    points = base.mark_point(filled=True, size=80).encode(
        shape=alt.Shape("status:N", scale=STATUS_SHAPES)
    )
    return base.mark_line() + points


def data_size(batches: list[dict[str, Any]]) -> alt.Chart:
    """Items in the data set after each completed batch, over the rows each batch inserted,
    updated and rejected."""
    done = [batch for batch in batches if batch["items_after"] is not None]
    rows = pd.DataFrame(
        [
            {
                "batch": batch["name"],
                "order": batch["id"],
                "rows": batch[f"rows_{kind}"],
                "kind": kind,
            }
            for batch in done
            for kind in ("inserted", "updated", "rejected")
        ],
        columns=["batch", "order", "rows", "kind"],
    )
    size = pd.DataFrame(
        [{"batch": b["name"], "order": b["id"], "items": b["items_after"]} for b in done],
        columns=["batch", "order", "items"],
    )
    x = alt.X("batch:N", sort=alt.SortField("order"), title="load batch")
    bars = (
        alt.Chart(rows)
        .mark_bar(opacity=0.6)
        .encode(x=x, y=alt.Y("rows:Q", title="rows"), color="kind:N", xOffset="kind:N")
    )
    line = (
        alt.Chart(size)
        .mark_line(point=True, color="black")
        .encode(x=x, y=alt.Y("items:Q", title="items after the batch"), tooltip=["batch", "items"])
    )
    return alt.layer(bars, line).resolve_scale(y="independent")


def metric_by_version(versions: list[dict[str, Any]], metric: str) -> alt.Chart:
    """One metric of each model version, the champion marked."""
    frame = pd.DataFrame(
        [
            {
                "version": int(v["version"]),
                metric: v["metrics"][metric],
                "champion": "champion" if v["champion"] else "other",
            }
            for v in versions
            if metric in v["metrics"]
        ]
    )
    return alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=80, filled=True)).encode(
        x=alt.X("version:O", title="version"),
        y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)),
        tooltip=["version", metric, "champion"],
    ) + alt.Chart(frame[frame["champion"] == "champion"]).mark_point(
        shape="diamond", size=250, color="#f9a825", filled=True
    ).encode(x="version:O", y=f"{metric}:Q")


def step_durations(steps: list[dict[str, Any]]) -> alt.Chart:
    """Seconds each step took, in the order they ran, coloured by outcome."""
    frame = pd.DataFrame(
        [
            {
                "step": step["step"],
                "order": index,
                "seconds": step["duration_s"] or 0.0,
                "status": step["status"],
            }
            for index, step in enumerate(steps)
        ]
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("seconds:Q", title="seconds"),
            y=alt.Y("step:N", sort=alt.SortField("order"), title="step"),
            color=alt.Color("status:N", scale=STATUS_COLOURS),
            tooltip=["step", "status", "seconds"],
        )
    )


def confidence_gauge(confidence: float) -> alt.Chart:
    """The model's confidence in its answer: a ring filled in proportion."""
    frame = pd.DataFrame(
        {"part": ["confidence", "rest"], "value": [confidence, max(0.0, 1 - confidence)]}
    )
    return (
        alt.Chart(frame)
        .mark_arc(innerRadius=55, outerRadius=85)
        .encode(
            theta=alt.Theta("value:Q", stack=True),
            color=alt.Color(
                "part:N",
                scale=alt.Scale(domain=["confidence", "rest"], range=["#2e7d32", "#e0e0e0"]),
                legend=None,
            ),
            tooltip=["part", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(width=200, height=200)
    )
