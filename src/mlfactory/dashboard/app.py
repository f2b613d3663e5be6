"""The dashboard's entry script (``streamlit run``): sign in, then the pages under ``views/``.

Every page reads the API through :mod:`mlfactory.dashboard.client`; an API error stops the page
with the API's own explanation, and a refused token (expired, or its user disabled) signs the
user out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from mlfactory.dashboard import session
from mlfactory.dashboard.client import ApiError, ApiUnreachable

VIEWS = Path(__file__).with_name("views")
PAGES = (
    ("overview.py", "Overview", ":material/monitoring:"),
    ("data.py", "Data", ":material/database:"),
    ("models.py", "Models", ":material/model_training:"),
    ("predict.py", "Predict", ":material/online_prediction:"),
    ("articles.py", "Articles", ":material/article:"),
    ("runs.py", "Runs", ":material/play_circle:"),
    ("audit.py", "Audit", ":material/policy:"),
)


def main() -> None:
    st.set_page_config(page_title="mlfactory", page_icon=":material/factory:", layout="wide")
    if not session.signed_in():
        page = st.navigation([st.Page(session.sign_in_page, title="Sign in")])
        _shown(page.run)
        return
    page = st.navigation(
        [
            st.Page(VIEWS / file, title=title, icon=icon, default=index == 0)
            for index, (file, title, icon) in enumerate(PAGES)
        ]
    )
    session.account_sidebar()
    _shown(page.run)


def _shown(render: Callable[[], None]) -> None:
    """Run a page, turning what the API refused into a message on it."""
    try:
        render()
    except ApiUnreachable as exc:
        st.error(str(exc))
    except ApiError as exc:
        if exc.status != 401:
            st.error(f"The API refused: {exc.detail} (HTTP {exc.status})")
            return
        session.sign_out()
        st.warning(f"Signed out: {exc.detail}. Sign in again.")
        st.button("Sign in")


if __name__ == "__main__":
    main()
