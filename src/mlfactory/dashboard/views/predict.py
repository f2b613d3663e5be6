"""Predict: a form per pipeline, built from the input schema of its champion model; the answer
with each class's probability and the model's confidence."""

from __future__ import annotations

from typing import Any

import streamlit as st

from mlfactory.dashboard import charts, session
from mlfactory.dashboard.client import ApiError

INTEGERS = {"long", "integer"}
NUMBERS = {"double", "float"}
ANSWER = "mlf_prediction"  # session key: the last answer, per pipeline


def main() -> None:
    st.title("Predict")
    api = session.client()
    serving = {p["name"]: p["model_name"] for p in api.pipelines() if p["model_name"]}
    if not serving:
        st.info("No pipeline serves predictions.")
        return
    pipeline = st.selectbox("Pipeline", list(serving))
    try:
        schema = api.inputs(serving[pipeline])
    except ApiError as exc:
        if exc.status != 404:
            raise
        st.info(f"No champion model yet: run `mlfactory run {pipeline}` to train one.")
        return
    st.caption(f"Model {schema['model_name']} version {schema['version']} (the champion).")
    allowed = session.role() in ("user", "admin")
    if not allowed:
        st.warning("Predictions need the role user or admin; this account is a viewer.")
    with st.form(f"predict-{pipeline}"):
        fields = {
            column["name"]: _field(pipeline, column, (schema["example"] or {}).get(column["name"]))
            for column in schema["columns"]
        }
        # An optional field left empty is left out, for the model to treat as missing.
        record = {name: value for name, value in fields.items() if value is not None}
        submitted = st.form_submit_button("Predict", disabled=not allowed)
    answers = st.session_state.setdefault(ANSWER, {})
    if submitted:
        answers[pipeline] = api.predict(pipeline, [record])
    if pipeline in answers:
        _answer(answers[pipeline])


def _field(pipeline: str, column: dict[str, Any], example: Any) -> Any:
    """The input widget of one column, starting at the model's logged example (empty, for an
    optional number without a usable example)."""
    name, kind, key = column["name"], column["type"], f"{pipeline}:{column['name']}"
    required = column["required"]
    label = name if required else f"{name} (optional)"
    if kind in INTEGERS:
        start = _number(example, int, 0 if required else None)
        return st.number_input(label, value=start, step=1, key=key)
    if kind in NUMBERS:
        start = _number(example, float, 0.0 if required else None)
        return st.number_input(label, value=start, key=key)
    if kind == "boolean":
        return st.checkbox(label, value=bool(example), key=key)
    return st.text_input(label, value="" if example is None else str(example), key=key)


def _number(example: Any, kind: type[int] | type[float], default: Any) -> Any:
    try:
        return default if example is None else kind(example)
    except (TypeError, ValueError):  # an example the widget cannot start from
        return default


def _answer(response: dict[str, Any]) -> None:
    (prediction,) = response["predictions"]
    probabilities = prediction["probabilities"] or {}
    label = prediction["label"]
    st.subheader(f"Answer: {label}")
    st.caption(f"Model {response['model_name']} version {response['model_version']}")
    if not probabilities:
        st.info("This model gives no probabilities.")
        return
    confidence = max(probabilities.values())  # the answer is the most probable class
    left, right = st.columns([1, 2])
    with left:
        st.metric("Confidence", f"{confidence:.1%}")
        st.altair_chart(charts.confidence_gauge(confidence))
    with right:
        st.altair_chart(charts.counts(probabilities, "class", "probability"), width="stretch")


if __name__ == "__main__":
    main()
