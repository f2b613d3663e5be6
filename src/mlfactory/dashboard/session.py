"""Who is signed in: the API token, user name and role kept in ``st.session_state``.

The password is sent once, to ``POST /token``, and never kept; the token lives only in the
browser session's state on the Streamlit server, and is dropped when the API refuses it.
"""

from __future__ import annotations

import streamlit as st

from mlfactory.dashboard.client import Api, ApiError, api_url, login

TOKEN, USERNAME, ROLE = "mlf_token", "mlf_username", "mlf_role"


def signed_in() -> bool:
    return bool(st.session_state.get(TOKEN))


def client() -> Api:
    return Api(api_url(), st.session_state[TOKEN])


def role() -> str:
    return st.session_state.get(ROLE, "viewer")


def sign_in_page() -> None:
    st.title("mlfactory")
    st.caption(f"Sign in with an account of the API at {api_url()}.")
    with st.form("sign-in"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    try:
        token = login(api_url(), username, password)
    except ApiError as exc:
        st.error(f"Not signed in: {exc.detail}")
        return
    account = Api(api_url(), token).me()
    st.session_state.update({TOKEN: token, USERNAME: account["username"], ROLE: account["role"]})
    st.rerun()


def sign_out() -> None:
    for key in (TOKEN, USERNAME, ROLE):
        st.session_state.pop(key, None)


def account_sidebar() -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{st.session_state[USERNAME]}** ({role()})")
        if st.button("Sign out"):
            sign_out()
            st.rerun()
