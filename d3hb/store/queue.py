"""The transaction log queue: read, acknowledge, purge, display.

A transaction gets its number when it is queued (AUTOINCREMENT: strictly
increasing, never reused, kept across restarts) and leaves the queue only
when every master server on this system has had it acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from d3hb.store.txn import Kind, Transaction

if TYPE_CHECKING:
    from d3hb.store.system import System

_COLS = "tno, kind, fof, account, dict_name, data_name, item, body, code, modulo, ts"


def _txn(row: tuple) -> Transaction:
    tno, kind, fof, account, dict_name, data_name, item, body, code, modulo, ts = row
    return Transaction(tno, Kind(kind), fof, account, dict_name, data_name, bytes(item), bytes(body), code, modulo, ts)


@dataclass(frozen=True)
class QueueState:
    depth: int  # transactions in the queue
    bytes: int  # their size: D3's "frames in queue", in bytes
    first: int  # oldest number still queued (0 when empty)
    last: int  # last number ever assigned
    log_all: bool
    enqueuing: bool
    logging: bool


class Queue:
    def __init__(self, system: System) -> None:
        self.system = system

    def last_tno(self) -> int:
        row = self.system.q("SELECT seq FROM sqlite_sequence WHERE name='queue'").fetchone()
        return int(row[0]) if row else 0

    def read(self, after: int, limit: int = 500, max_bytes: int | None = None) -> list[Transaction]:
        """Transactions numbered above ``after``, oldest first."""
        rows = self.system.q(f"SELECT {_COLS} FROM queue WHERE tno>? ORDER BY tno LIMIT ?", (after, limit)).fetchall()
        out: list[Transaction] = []
        size = 0
        for row in rows:
            t = _txn(row)
            size += len(t.body) + len(t.item) + 64
            if out and max_bytes is not None and size > max_bytes:
                break
            out.append(t)
        return out

    def get(self, tno: int) -> Transaction | None:
        row = self.system.q(f"SELECT {_COLS} FROM queue WHERE tno=?", (tno,)).fetchone()
        return _txn(row) if row else None

    def state(self) -> QueueState:
        depth, size, first = self.system.q(
            "SELECT count(*), coalesce(sum(length(body)+length(item)),0), coalesce(min(tno),0) FROM queue"
        ).fetchone()
        s = self.system
        return QueueState(depth, size, first, self.last_tno(), s.log_all, s.enqueuing, s.logging)

    # -- cursors: one per master server on this system -------------------
    def add_cursor(self, server: str, acked: int | None = None) -> None:
        """A new destination: it has acknowledged nothing still queued."""
        start = acked if acked is not None else self.last_tno()
        with self.system.transaction():
            self.system.q("INSERT INTO cursors VALUES(?,?) ON CONFLICT(server) DO NOTHING", (server, start))

    def drop_cursor(self, server: str) -> None:
        with self.system.transaction():
            self.system.q("DELETE FROM cursors WHERE server=?", (server,))
            self.purge()

    def cursor(self, server: str) -> int | None:
        row = self.system.q("SELECT acked FROM cursors WHERE server=?", (server,)).fetchone()
        return None if row is None else int(row[0])

    def cursors(self) -> dict[str, int]:
        return {s: int(a) for s, a in self.system.q("SELECT server, acked FROM cursors")}

    def ack(self, server: str, tno: int) -> int:
        """Record an acknowledgement and purge what every destination has; return rows purged."""
        with self.system.transaction():
            self.system.q("UPDATE cursors SET acked=max(acked, ?) WHERE server=?", (tno, server))
            return self.purge()

    def purge(self) -> int:
        row = self.system.q("SELECT min(acked) FROM cursors").fetchone()
        if row[0] is None:
            return 0  # no destination yet: keep everything (D3 keeps the queue until dequeued)
        return self.system.q("DELETE FROM queue WHERE tno<=?", (int(row[0]),)).rowcount

    def clear(self, reason: str = "Clear Log Queue") -> int:
        """Empty the queue explicitly (logged); numbering continues, cursors move to the end."""
        with self.system.transaction():
            n = self.system.q("DELETE FROM queue").rowcount
            last = self.last_tno()
            self.system.q("UPDATE cursors SET acked=?", (last,))
            self.system.error_log(f"transaction log queue cleared ({n} transactions, last number {last}): {reason}", "queue")
        return n

    def set_next(self, tno: int) -> None:
        """Make the next number assigned ``tno`` (tlqdisplay (m, or a restore)."""
        with self.system.transaction():
            if self.system.q("SELECT count(*) FROM queue WHERE tno>=?", (tno,)).fetchone()[0]:
                from d3hb.errors import Refused

                raise Refused(f"transactions numbered {tno} or above are still queued", "clear the queue first")
            self.system.q("DELETE FROM sqlite_sequence WHERE name='queue'")
            self.system.q("INSERT INTO sqlite_sequence(name, seq) VALUES('queue', ?)", (tno - 1,))
