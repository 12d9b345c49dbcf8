"""A system's replication history: history id, epoch, and where each epoch ended.

PostgreSQL keeps a timeline history file; d3hb keeps the same idea in the
``meta`` table.  A promotion continues the old master's history (same
history id, same transaction numbering) under a new epoch, and records the
number at which the old epoch ended on this system.  With that record a
system that comes back can be judged exactly: it may rejoin if everything
it holds is at or below the point where its epoch ended here; anything
beyond that point is a transaction the new master never received, and
applying the new master's updates on top of it would silently diverge.

Pure store code: no servers, no sockets, so the master's handshake can call
:func:`divergence` and the operations layer can call it before a rejoin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from d3hb.store.system import System
from d3hb.store.txn import Kind

FORKS_META = "hb.forks"  # JSON [[epoch, last tno of that epoch], ...]
PROMOTED_META = "hb.promoted"  # when and how this system was promoted (absent on a restored system)
HARMLESS = frozenset({Kind.TEST, Kind.VERIFY})  # carry no data: never a reason to refuse


@dataclass(frozen=True)
class Position:
    """Where a system stands in a history: what it would tell a peer."""

    history_id: str
    epoch: int
    last: int  # highest transaction number of that history it holds


@dataclass(frozen=True)
class Judgement:
    """Can ``peer`` follow ``master``?  ``first`` > 0: numbers from ``first`` on diverge."""

    ok: bool
    reason: str = ""
    first: int = 0  # first divergent number on the peer (0: none)
    end: int = 0  # the last number the peer may keep


def forks(system: System) -> dict[int, int]:
    raw = system.meta(FORKS_META)
    return {int(e): int(t) for e, t in json.loads(raw)} if raw else {}


def set_forks(system: System, table: dict[int, int]) -> None:
    system.set_meta(FORKS_META, json.dumps(sorted([e, t] for e, t in table.items())))


def record_fork(system: System, old_epoch: int, end: int) -> None:
    """Epoch ``old_epoch`` ended here after ``end``; the next one starts at ``end + 1``."""
    table = forks(system)
    table[old_epoch] = min(end, table.get(old_epoch, end))
    set_forks(system, table)


def epoch_end(table: dict[int, int], epoch: int) -> int | None:
    """The last number of ``epoch`` in this history (None: it has not ended)."""
    ends = [t for e, t in table.items() if e >= epoch]
    return min(ends) if ends else None


def judge(master: Position, table: dict[int, int], peer: Position) -> Judgement:
    """May a system at ``peer`` continue as a slave of a master at ``master`` (with ``table`` its forks)?"""
    if peer.history_id != master.history_id:
        return Judgement(False, f"belongs to another history ({peer.history_id[:12]}, not {master.history_id[:12]})", first=1)
    if peer.epoch > master.epoch:
        return Judgement(False, f"is of epoch {peer.epoch}, newer than this master's {master.epoch}: it was promoted after this one",
                         first=1)
    end = master.last if peer.epoch == master.epoch else epoch_end(table, peer.epoch)
    if end is None:  # an epoch below ours with no recorded end: we cannot prove it safe
        return Judgement(False, f"this master has no record of where epoch {peer.epoch} ended", first=1)
    end = min(end, master.last)
    if peer.last > end:
        held = f"transaction {peer.last}" if peer.last == end + 1 else f"transactions {end + 1} to {peer.last}"
        return Judgement(False, f"holds {held}, which this master never received "
                                f"(epoch {peer.epoch} ended here at {end})", first=end + 1, end=end)
    return Judgement(True, end=end)


def divergence(system: System, peer_history: str, peer_epoch: int, peer_last: int) -> str:
    """For the master's handshake: '' when the peer may follow, else the reason (resync required)."""
    me = Position(system.history_id, system.epoch, system.queue.last_tno())
    verdict = judge(me, forks(system), Position(peer_history, peer_epoch, peer_last))
    return "" if verdict.ok else f"resync required: the slave {verdict.reason}"


def own_position(system: System) -> Position:
    """A master's (or a standalone system's) position: its own queue numbering.

    Numbers that only carried test records or verify markers are not
    counted: losing them loses no data, so they never force a resync.
    """
    last = system.queue.last_tno()
    rows = system.q("SELECT tno, kind FROM queue WHERE tno>? ORDER BY tno DESC", (0,)).fetchall()
    for tno, kind in rows:
        if Kind(kind) not in HARMLESS:
            break
        last = int(tno) - 1
    return Position(system.history_id, system.epoch, last)
