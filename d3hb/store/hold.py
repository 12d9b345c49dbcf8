"""The hold file: transactions a slave has stored durably but not applied yet.

Two reasons put a transaction here (table ``hold``, one row per server and
number, the transaction's one byte form): *apply updates* is OFF (everything
received is held, the database stays quiescent so it can be saved), or the
file it updates is being cleared or resized by a helper (the per-file
temporary hold: D3's "temporary hold file" that keeps an update made after
a clear from being cleared too).

A transaction enters the hold in the same SQLite transaction that records
the batch's number, and leaves it in the same SQLite transaction that
applies it: a kill -9 at any instant neither loses nor doubles one.  The
number a slave acknowledges as *stored* counts held transactions; the
number it reports as *applied* stops below the oldest one still held.

Order: held transactions are applied in number order.  Updates to
independent files may overtake each other (they commute); two
transactions whose *keys* conflict (same account and file, or an account
and anything in it) never do.
"""

from __future__ import annotations

from collections.abc import Iterable

from d3hb.store import control
from d3hb.store import park as store_park
from d3hb.store.system import System
from d3hb.store.txn import Kind, Transaction, decode, encode

CHUNK = 500  # held transactions applied per SQLite transaction

# A key names what a transaction touches: ("F", account, file) for a file (its dictionary and every
# data section), ("A", account) for an account itself, ("*",) for a verify marker, which must see
# everything before it applied.  None: touches nothing here (test records, control files).
Key = tuple[str, ...]
ALL: Key = ("*",)


def txn_key(t: Transaction) -> Key | None:
    if t.kind is Kind.TEST:
        return None
    if t.kind is Kind.VERIFY:
        return ALL
    if t.dict_name and control.is_control(t.account, t.dict_name):
        return None
    if t.kind in (Kind.CREATE_ACCOUNT, Kind.DELETE_ACCOUNT) or (t.kind is Kind.DPTR and not t.dict_name):
        return ("A", t.account)
    return ("F", t.account, t.dict_name)


def file_key(account: str, dict_name: str) -> Key:
    return ("F", account, dict_name)


def conflicts(a: Key | None, b: Key | None) -> bool:
    if a is None or b is None:
        return False
    if a == ALL or b == ALL:
        return True
    if a[1] != b[1]:
        return False
    return a[0] == "A" or b[0] == "A" or a[2] == b[2]


def conflicts_any(key: Key | None, keys: Iterable[Key]) -> bool:
    return key is not None and any(conflicts(key, k) for k in keys)


# -- the table ----------------------------------------------------------------------------------
def hold(system: System, server: str, t: Transaction) -> None:
    """Store ``t`` in the hold (inside the caller's batch transaction)."""
    with system.transaction():
        system.q("INSERT OR IGNORE INTO hold(server, tno, txn) VALUES(?,?,?)", (server, t.tno, encode(t)))


def held(system: System, server: str, after: int = 0, limit: int = CHUNK) -> list[Transaction]:
    rows = system.q("SELECT txn FROM hold WHERE server=? AND tno>? ORDER BY tno LIMIT ?", (server, after, limit)).fetchall()
    return [decode(bytes(r[0]))[0] for r in rows]


def held_count(system: System, server: str) -> int:
    """How many transactions ``server`` holds (Query's "held")."""
    return int(system.q("SELECT count(*) FROM hold WHERE server=?", (server,)).fetchone()[0])


def first_held(system: System, server: str) -> int | None:
    row = system.q("SELECT min(tno) FROM hold WHERE server=?", (server,)).fetchone()
    return None if row[0] is None else int(row[0])


def release(system: System, server: str, tno: int) -> None:
    """Take ``tno`` out of the hold (inside the transaction that applies it)."""
    system.q("DELETE FROM hold WHERE server=? AND tno=?", (server, tno))


def held_keys(system: System, server: str) -> list[Key]:
    """The key of every held transaction, oldest first (a slave rebuilds its view from this)."""
    return [k for t in _all_held(system, server) if (k := txn_key(t)) is not None]


def _all_held(system: System, server: str) -> Iterable[Transaction]:
    after = 0
    while chunk := held(system, server, after, 5000):
        yield from chunk
        after = chunk[-1].tno


def apply_held(system: System, server: str, *, relog: bool, auto_create: bool) -> int:
    """Apply everything ``server`` holds, in order, each exactly once; returns how many.

    For an administrator or a promotion with the slave server stopped: a
    helper's unfinished clear or resize is first finished here, in this
    process, then every held transaction is applied (an update whose file
    is missing is parked, never lost).  Safe with nothing held."""
    from d3hb.store import jobs  # jobs imports this module for its keys

    for job in jobs.pending(system, server):
        jobs.run(system, job)
    done = 0
    while chunk := held(system, server, 0, CHUNK):
        with system.transaction():
            for t in chunk:
                # Read again inside the write transaction: another process may have applied it.
                if system.q("SELECT 1 FROM hold WHERE server=? AND tno=?", (server, t.tno)).fetchone() is None:
                    continue
                store_park.apply_or_park(system, server, t, relog=relog, auto_create=auto_create)
                release(system, server, t.tno)
                done += 1
    return done
