"""The tape-socket logs: ``ts.log`` (recent messages) and ``ts.log,log`` (permanent).

Both are files of the dm account, as in D3.  A message is an item
``date^time^server^message`` numbered from a counter in the system's meta
table; the recent log keeps the last :data:`RECENT`, the permanent log all.
The servers write here, and the tape-socket Status command reads here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from d3hb.store import control
from d3hb.store.system import FileInfo, System

TS_LOG = "ts.log"
PERMANENT = "log"  # the data section ts.log,log
RECENT = 500


def _log_file(system: System, section: str) -> FileInfo:
    f = system.find_file(control.SYSTEM_ACCOUNT, TS_LOG, section)
    if f is None:
        # ts.log,log does not come with a new system: create it on first use, as D3 does.
        f = system.create_file(control.SYSTEM_ACCOUNT, TS_LOG, section, 7, "D", log=False, guard=False)
    return f


@dataclass(frozen=True)
class Message:
    seq: int
    when: str
    server: str
    text: str

    def line(self) -> str:
        return f"{self.when}  {self.server:<10} {self.text}"


def log(system: System, server: str, text: str, *, when: float | None = None) -> int:
    """Record a message in ts.log (recent) and ts.log,log (permanent); return its number."""
    stamp = time.strftime("%Y-%m-%d\xfe%H:%M:%S", time.localtime(time.time() if when is None else when))
    body = f"{stamp}\xfe{server}\xfe{text}".encode("utf-8", "replace")
    with system.transaction():
        seq = int(system.meta("ts_log_seq", "0")) + 1
        system.set_meta("ts_log_seq", str(seq))
        recent, permanent = _log_file(system, TS_LOG), _log_file(system, PERMANENT)
        for f in (recent, permanent):
            system._put(f, str(seq).encode(), body, log=False, guard=False)
        # Ids are numbers, so the oldest recent messages are those below seq - RECENT.
        system.q("DELETE FROM items WHERE fof=? AND CAST(id AS INTEGER) <= ?", (recent.fof, seq - RECENT))
    return seq


def messages(system: System, server: str | None = None, *, limit: int = 50, permanent: bool = False) -> list[Message]:
    """Messages newest first (the Status screen's order), for one server or all."""
    f = system.find_file(control.SYSTEM_ACCOUNT, TS_LOG, PERMANENT if permanent else TS_LOG)
    if f is None:
        return []
    out: list[Message] = []
    cur = system.q("SELECT id, body FROM items WHERE fof=? ORDER BY CAST(id AS INTEGER) DESC", (f.fof,))
    for iid, body in cur:
        parts = bytes(body).decode("utf-8", "replace").split("\xfe")
        if len(parts) < 4:
            continue
        if server is not None and parts[2] != server:
            continue
        out.append(Message(int(bytes(iid)), f"{parts[0]} {parts[1]}", parts[2], "\xfe".join(parts[3:])))
        if len(out) >= limit:
            break
    return out
