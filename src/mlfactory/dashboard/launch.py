"""``mlfactory dashboard``: Streamlit serving the dashboard's app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def dashboard_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line of the dashboard on ``host:port``: headless (no
    browser opened, no e-mail prompt), without usage statistics nor developer menus."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def run_dashboard(host: str = "127.0.0.1", port: int = 8501) -> None:
    """Replace this process with Streamlit serving the dashboard, so that signals (Ctrl-C,
    SIGTERM) reach Streamlit itself. The API it reads is ``MLF_API_URL``."""
    command = dashboard_command(host, port)
    os.execv(command[0], command)
