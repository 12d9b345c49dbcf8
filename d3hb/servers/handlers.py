"""What a slave does with the transactions it receives: its policy object.

The protocol hands the slave server batches that are in order and fresh for
*this connection*; a handler makes them durable.  A handler stores a batch in
ONE SQLite transaction that also records the last stored number, so a batch
is stored entirely or not at all, whatever kills the process, and a number at
or below the recorded one is skipped (exactly once, also when two
connections overlap).  A gap is an error, never skipped.

:class:`~d3hb.servers.options.SlaveOptions` is the handler a slave server
uses: it applies, holds (apply updates off, or a file a helper works on),
parks (unknown files) and hands long work to helpers.  Tests may give the
slave another object of the :class:`Handler` protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from d3hb.errors import D3hbError
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
