"""Whom a master server lets follow it: its judgement of the slave's handshake position.

The slave's Welcome says which history it follows, the epoch of its last
applied transaction and that number (d3hb.servers.slave builds it from its
applied row).  The master compares that with its own history and fork
table (d3hb.store.history, the same judgement ``rejoin`` makes) and with
what its queue still holds.  Each check returns '' (or None) when the slave
may follow, else the one-line reason the refusal and the incident carry.
Nothing here changes either system: a refusal leaves both as they were.
"""

from __future__ import annotations

from d3hb.protocol import events as ev
from d3hb.servers import status as st
from d3hb.store import history
from d3hb.store.queue import Queue
from d3hb.store.system import System


def divergence(system: System, cfg: st.Config, welcome: ev.Welcome) -> tuple[str, str] | None:
    """(refusal reason, text) when the slave holds what this master never had, or follows another history."""
    if not welcome.history_id or not welcome.last_applied:
        return None  # it holds nothing of any history (a fresh slave), or predates history rows: nothing to judge
    me = history.Position(system.history_id, system.epoch, system.queue.last_tno())
    peer = history.Position(welcome.history_id, welcome.epoch, welcome.last_applied)
    verdict = history.judge(me, history.forks(system), peer)
    if verdict.ok:
        return None
    name, here, there = cfg.name, system.name, cfg.target or "the slave's system"
    if peer.history_id != me.history_id:
        return ev.HISTORY_MISMATCH, (
            f"resync required: the slave of server {name} follows another history ({peer.history_id[:12]}, "
            f"not {me.history_id[:12]}); re-seed it from this master: 'd3hb --system {here} hot-backup resync {name} peer={there}'")
    if verdict.end and verdict.first == verdict.end + 1:
        n = peer.last - verdict.end
        return ev.RESYNC_REQUIRED, (
            f"resync required: the slave of server {name} {verdict.reason}: {n} transaction{'s' if n != 1 else ''} diverge; "
            f"keep them (on {there}: txn-dump {verdict.first} {peer.last}), then re-seed it: "
            f"'d3hb --system {here} hot-backup resync {name} peer={there}' (or 'rejoin {name} peer={here} (r' on {there})")
    return ev.RESYNC_REQUIRED, (
        f"resync required: the slave of server {name} {verdict.reason}; "
        f"re-seed it: 'd3hb --system {here} hot-backup resync {name} peer={there}'")


def gap(queue: Queue, last_applied: int) -> str:
    """Why the master cannot continue the slave from ``last_applied``, or ''."""
    last = queue.last_tno()
    if last_applied > last:
        return (f"the slave has applied up to {last_applied} but this master has only numbered {last}: "
                "the slave belongs to another history; resync it from a save of this master")
    if last_applied < last and queue.get(last_applied + 1) is None:
        first = queue.read(last_applied, limit=1)
        have = f"the queue starts at {first[0].tno}" if first else "the queue is empty"
        return (f"gap: the slave needs transaction {last_applied + 1}, but {have} (cleared or purged); "
                "resync the slave from a save of this master")
    return ""
