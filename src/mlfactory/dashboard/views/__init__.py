"""The dashboard's pages: scripts that ``st.navigation`` runs, one per page."""
