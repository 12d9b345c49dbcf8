"""Incidents the operations layer itself finds, and the incident history.

A running server raises its own incidents (d3hb.servers.status.Incidents:
once per incident, once when it is over).  What only the supervisor can see
— a server that terminated abnormally — goes the same ways from here: the
server's status and permanent logs, the errors file (``dm,errors``), and
every entry of the server's notify list through D3's ``msg``.
"""

from __future__ import annotations

import contextlib

from d3hb.ops.serverdefs import ServerDef
from d3hb.servers import status as st
from d3hb.store import messages
from d3hb.store.system import System

PREFIX = "INCIDENT "


def report(system: System, d: ServerDef, text: str) -> None:
    """Send one incident everywhere it must go; a failing destination is skipped."""
    line = f"{PREFIX}server '{d.name}': {text}"
    files = st.ServerFiles(system.path, d.name)
    with contextlib.suppress(OSError):
        st.log_message(files, line)
    with contextlib.suppress(Exception):
        system.error_log(line, "hot-backup")
    for target in d.notify:
        with contextlib.suppress(Exception):
            messages.send(system.path, target, line, sender=f"hot-backup {d.name}")


def history(system: System, name: str, limit: int = 50) -> list[str]:
    """The incidents in a server's permanent log, newest first."""
    files = st.ServerFiles(system.path, name)
    return [ln for ln in st.recent_messages(files, 0, permanent=True) if PREFIX in ln][:limit]
