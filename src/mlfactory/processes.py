"""Whether the process that claimed some work still lives, so work left by a crash is found."""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()


def owner() -> tuple[str, int]:
    """This process, as recorded on the rows it claims."""
    return HOST, os.getpid()


def is_dead(host: str | None, pid: int | None) -> bool:
    """True only when the owner ran on this host and that process is gone.

    Work claimed on another host is never judged from here: its engine (Airflow) owns it.
    """
    if host != HOST or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
