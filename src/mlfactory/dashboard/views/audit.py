"""Audit: the append-only trail of alias changes, run triggers, model reloads and sign-ins
(admins only, as in the API)."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from mlfactory.dashboard import session

ACTIONS = ("alias.set", "run.trigger", "model.reload", "login", "login.failed")
SHOWN = 200


def main() -> None:
    st.title("Audit")
    if session.role() != "admin":
        st.info("The audit trail is for admins.")
        return
    action = st.selectbox("Action", ("all", *ACTIONS))
    page = session.client().audit(limit=SHOWN, action=None if action == "all" else action)
    if not page["total"]:
        st.info(
            "No audit entries yet: sign-ins, run triggers, model reloads and champion changes appear here."
        )
        return
    st.caption(f"{page['total']} entries, newest first (the latest {SHOWN} shown).")
    st.dataframe([_row(entry) for entry in page["entries"]], hide_index=True)


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": entry["at"],
        "actor": entry["actor"],
        "action": entry["action"],
        "target": entry["target"],
        "before": _json(entry["before"]),
        "after": _json(entry["after"]),
        "detail": entry["detail"] or "",
    }


def _json(state: dict[str, Any] | None) -> str:
    return "" if state is None else json.dumps(state, sort_keys=True)


if __name__ == "__main__":
    main()
