"""Parked updates: what a slave received for an account or file it does not have.

With auto-create off, an update whose file matches neither by FOF number nor
by name is not an error that stops the pair: it is stored, in the same
SQLite transaction that records the batch, in the data section
``hb.log,<server>*<fof>`` of the dm account (D3's own place for it, created
with modulo 31; ``fof`` is the master's FOF number the transaction carries,
0 for an account-level update).  Nothing is lost, and an administrator
replays the parked updates once the file exists (``hot-backup
replay-parked NAME``).

Order is kept per master file: while a section holds anything, later updates
for the same FOF number are parked behind it, so a replay never overwrites a
newer update with an older one.  Each item id is the transaction number
(zero-padded, so a sorted list is the arrival order); the body shows the
kind, the file and the item for ``list``, and carries the transaction's one
byte form (d3hb.store.txn) in hex as its last attribute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from d3hb.errors import NotFound
from d3hb.store import apply as store_apply
from d3hb.store import control
from d3hb.store.system import FileInfo, System
from d3hb.store.txn import Kind, Transaction, decode, encode

HB_LOG = "hb.log"
PARK_MODULO = 31  # D3 creates these sections with modulo 31
PARKED = "parked"  # an Outcome.what: stored in hb.log,<server>*<fof>, not applied
_AM = "\xfe"


@dataclass(frozen=True)
class Parked:
    """One parked update, as ``parked`` lists it."""

    section: str  # hb.log,<server>*<fof>
    txn: Transaction


def section_name(server: str, fof: int) -> str:
    return f"{server}*{fof}"


def _section(system: System, server: str, fof: int) -> FileInfo | None:
    return system.find_file(control.SYSTEM_ACCOUNT, HB_LOG, section_name(server, fof))


def _make_section(system: System, server: str, fof: int) -> FileInfo:
    # '*' is not allowed in a file name an operator types, so the section is made here, as a system file.
    system.q(
        "INSERT INTO files(account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?)",
        (control.SYSTEM_ACCOUNT, HB_LOG, section_name(server, fof), "D", PARK_MODULO, time.time()),
    )
    f = _section(system, server, fof)
    assert f is not None
    return f


def _item_id(tno: int) -> bytes:
    return f"{tno:012d}".encode()


def park(system: System, server: str, txn: Transaction) -> str:
    """Store ``txn`` in its section (created on first use); returns the section's name."""
    with system.transaction():
        f = _section(system, server, txn.fof) or _make_section(system, server, txn.fof)
        where = f"{txn.account},{txn.file_ref}" if txn.dict_name else txn.account
        body = _AM.join([txn.kind.name.lower(), where, txn.item.decode("latin-1"), encode(txn).hex()])
        system._put(f, _item_id(txn.tno), body.encode("latin-1"), log=False, guard=False)
    return f"{HB_LOG},{f.data_name}"


def sections(system: System, server: str) -> list[FileInfo]:
    """This server's parked sections, in FOF order."""
    prefix = section_name(server, 0)[:-1]
    found = [f for f in system.files(control.SYSTEM_ACCOUNT)
             if f.dict_name == HB_LOG and f.data_name is not None and f.data_name.startswith(prefix)]
    return sorted(found, key=lambda f: int(f.data_name.rsplit("*", 1)[1]) if f.data_name.rsplit("*", 1)[1].isdigit() else -1)  # type: ignore[union-attr]


def any_parked(system: System, server: str) -> bool:
    prefix = section_name(server, 0)[:-1]
    row = system.q(
        "SELECT 1 FROM files WHERE account=? AND dict_name=? AND substr(data_name,1,?)=? LIMIT 1",
        (control.SYSTEM_ACCOUNT, HB_LOG, len(prefix), prefix),
    ).fetchone()
    return row is not None


def _section_txns(system: System, f: FileInfo) -> list[Transaction]:
    rows = system.q("SELECT body FROM items WHERE fof=? ORDER BY id", (f.fof,)).fetchall()
    return [decode(bytes.fromhex(bytes(b).decode("latin-1").rsplit(_AM, 1)[1]))[0] for (b,) in rows]


def parked(system: System, server: str) -> list[Parked]:
    """Every parked update of ``server``, section by section, oldest first in each."""
    return [Parked(f"{HB_LOG},{f.data_name}", t) for f in sections(system, server) for t in _section_txns(system, f)]


def parked_count(system: System, server: str) -> int:
    return sum(system.q("SELECT count(*) FROM items WHERE fof=?", (f.fof,)).fetchone()[0] for f in sections(system, server))


def must_follow(system: System, server: str, txn: Transaction) -> bool:
    """True when older updates for ``txn``'s master file are parked: it must wait behind them."""
    return txn.kind not in (Kind.TEST, Kind.VERIFY) and _section(system, server, txn.fof) is not None


def apply_or_park(system: System, server: str, txn: Transaction, *, relog: bool, auto_create: bool,
                  check_parked: bool = True) -> store_apply.Outcome:
    """Apply ``txn``, or park it when its file is missing here (or older updates for it are parked).

    Called inside the caller's transaction, so the park and the batch's
    recorded number commit together."""
    if check_parked and must_follow(system, server, txn):
        return store_apply.Outcome(txn.tno, txn.kind, PARKED, park(system, server, txn))
    try:
        return store_apply.apply_transaction(system, txn, relog, auto_create=auto_create)
    except NotFound:
        return store_apply.Outcome(txn.tno, txn.kind, PARKED, park(system, server, txn))


def replay_parked(system: System, server: str, *, relog: bool, auto_create: bool) -> int:
    """Apply what can be applied now, in order, each exactly once; returns how many.

    Each update is applied and removed from its section in one SQLite
    transaction.  In a section the first update that still cannot be
    applied stops that section (the later ones stay behind it); an emptied
    section is deleted."""
    done = 0
    for f in sections(system, server):
        while True:
            with system.transaction():
                row = system.q("SELECT id, body FROM items WHERE fof=? ORDER BY id LIMIT 1", (f.fof,)).fetchone()
                if row is None:
                    system.q("DELETE FROM files WHERE fof=?", (f.fof,))
                    break
                txn = decode(bytes.fromhex(bytes(row[1]).decode("latin-1").rsplit(_AM, 1)[1]))[0]
                try:
                    store_apply.apply_transaction(system, txn, relog, auto_create=auto_create)
                except NotFound:
                    break  # still missing: it and what follows it stay parked
                system.q("DELETE FROM items WHERE fof=? AND id=?", (f.fof, bytes(row[0])))
                done += 1
    return done
