"""The Streamlit dashboard: a client of the API only, never of the store."""
