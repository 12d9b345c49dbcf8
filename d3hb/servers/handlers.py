"""What a slave does with the transactions it receives: its policy object.

The protocol hands the slave server batches that are in order and fresh for
*this connection*; a handler makes them durable.  :class:`ApplyNow` applies a
batch in ONE SQLite transaction that also records the last applied number,
so a batch is applied entirely or not at all, whatever kills the process,
and a number at or below the recorded one is skipped (exactly once, also
when two connections overlap).  A gap is an error, never skipped.

:class:`SlaveOptions` (d3hb.servers.options) is the handler a slave server
uses: it also holds (apply updates off, or a file a helper works on), parks
(unknown files) and hands long work to helpers, behind the same
:class:`Handler` protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from d3hb.errors import D3hbError
from d3hb.store import apply as store_apply
from d3hb.store.system import System
from d3hb.store.txn import Transaction


class GapError(D3hbError):
    """The master sent a number beyond the next one this slave expects."""


@dataclass(frozen=True)
class BatchResult:
    """After a batch: the highest number held durably and the highest applied."""

    stored: int
    applied: int
    skipped: int = 0  # numbers this slave already had
    outcomes: Counter = field(default_factory=Counter)  # Outcome.what -> count


def gap_error(server: str, last: int, got: int) -> GapError:
    return GapError(
        f"gap in transaction numbers for server {server}: expected {last + 1}, got {got}; nothing after {last} was applied",
        "the master no longer holds the missing numbers: resync the slave from a save of the master",
    )


class Handler(Protocol):
    def last_stored(self) -> int: ...

    def last_applied(self) -> int: ...

    def handle(self, txns: Sequence[Transaction]) -> BatchResult: ...


class ApplyNow:
    """Apply updates on: apply every batch at once (D3's normal slave)."""

    def __init__(self, system: System, server: str, *, relog: bool = False, auto_create: bool = False) -> None:
        self.system = system
        self.server = server
        self.relog = relog
        self.auto_create = auto_create

    def last_stored(self) -> int:
        return store_apply.last_stored(self.system, self.server)

    def last_applied(self) -> int:
        return store_apply.last_applied(self.system, self.server)

    def handle(self, txns: Sequence[Transaction]) -> BatchResult:
        outcomes: Counter = Counter()
        skipped = 0
        with self.system.transaction():
            # Read inside the write transaction: the recorded number is the truth, not the connection's.
            last = store_apply.last_stored(self.system, self.server)
            for t in txns:
                if t.tno <= last:
                    skipped += 1
                    continue
                if t.tno != last + 1:
                    raise gap_error(self.server, last, t.tno)
                outcomes[store_apply.apply_transaction(self.system, t, self.relog, auto_create=self.auto_create).what] += 1
                last = t.tno
            store_apply.record_applied(self.system, self.server, last)
        return BatchResult(last, last, skipped, outcomes)
