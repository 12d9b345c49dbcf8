"""Apply one replicated transaction to a slave system.

Called inside the caller's SQLite transaction (a slave applies a whole batch
and records its last applied number in one commit), through the System's own
mutating methods with ``guard=False`` (this *is* the slave writing) and
``log=relog`` (True re-queues the update for a cascaded slave: "log slave
updates").  The dm account's control files are never applied, as in D3.

A transaction names its file twice: by the master's FOF number and by
account and file names.  The FOF number is tried first and accepted only if
the names agree; otherwise the names decide, so a slave whose numbering
differs still updates the right file and never the wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass

from d3hb.errors import NotFound
from d3hb.store import control
from d3hb.store.system import FileInfo, System
from d3hb.store.txn import Kind, Transaction

APPLIED = "applied"
SKIPPED = "skipped"  # control file, test record, verify marker
NOOP = "noop"  # already so: a create of what exists, a delete of what is gone
CREATED = "created"  # auto-create made the missing account or file first


@dataclass(frozen=True)
class Outcome:
    """What apply_transaction did with one transaction."""

    tno: int
    kind: Kind
    what: str  # APPLIED, SKIPPED, NOOP or CREATED
    file: str = ""  # account,file as found on this system
    by_name: bool = False  # the FOF number did not name this file here; the names did


def _names_match(f: FileInfo, t: Transaction) -> bool:
    return f.account == t.account and f.dict_name == t.dict_name and f.data_name == t.data_name


def find_target(system: System, t: Transaction) -> tuple[FileInfo | None, bool]:
    """The file ``t`` updates here, and whether it was found by name rather than FOF number."""
    f = system.file_by_fof(t.fof) if t.fof else None
    if f is not None and _names_match(f, t):
        return f, False
    return system.find_file(t.account, t.dict_name, t.data_name), True


def _missing(system: System, t: Transaction) -> NotFound:
    return NotFound(
        f"transaction {t.tno} ({t.kind.name.lower()}) is for {t.account},{t.file_ref} (FOF {t.fof} on the master), "
        f"which is not on system {system.name!r}",
        "restore the slave from a save of the master, or set auto-create=on",
    )


def _create_missing(system: System, t: Transaction, relog: bool) -> FileInfo:
    if not system.has_account(t.account):
        system.create_account(t.account, "D", log=relog, guard=False)
    if t.data_name is not None and system.find_file(t.account, t.dict_name, None) is None:
        system.create_file(t.account, t.dict_name, None, 1, "D", log=relog, guard=False)
    # Keep the master's FOF number when it is free: FOF numbering should agree on both sides.
    fof = t.fof if t.fof and system.file_by_fof(t.fof) is None else None
    return system.create_file(t.account, t.dict_name, t.data_name, t.modulo or 7, t.code or "DL", fof=fof, log=relog, guard=False)


def apply_transaction(system: System, t: Transaction, relog: bool = False, *, auto_create: bool = False) -> Outcome:
    """Apply ``t``; NotFound when its file is missing here and ``auto_create`` is off."""
    if t.kind is Kind.VERIFY:
        # Digest the files the marker names at exactly this number, in the caller's transaction.
        from d3hb.store import verify

        verify.record_marker(system, t)
        return Outcome(t.tno, t.kind, SKIPPED)
    if t.kind is Kind.TEST or control.is_control(t.account, t.dict_name):
        return Outcome(t.tno, t.kind, SKIPPED, f"{t.account},{t.file_ref}" if t.account else "")
    with system.transaction():
        if t.kind is Kind.CREATE_ACCOUNT:
            if system.has_account(t.account):
                return Outcome(t.tno, t.kind, NOOP, t.account)
            system.create_account(t.account, t.code or "D", log=relog, guard=False)
            return Outcome(t.tno, t.kind, APPLIED, t.account)
        if t.kind is Kind.DELETE_ACCOUNT:
            if not system.has_account(t.account):
                return Outcome(t.tno, t.kind, NOOP, t.account)
            system.delete_account(t.account, log=relog, guard=False)
            return Outcome(t.tno, t.kind, APPLIED, t.account)
        if t.kind is Kind.DPTR and not t.dict_name:  # an account's D-pointer in mds
            if not system.has_account(t.account):
                if not auto_create:
                    raise _missing(system, t)
                system.create_account(t.account, t.code or "D", log=relog, guard=False)
                return Outcome(t.tno, t.kind, CREATED, t.account)
            system.set_account_code(t.account, t.code, log=relog)
            return Outcome(t.tno, t.kind, APPLIED, t.account)

        f, by_name = find_target(system, t)
        if t.kind is Kind.CREATE_FILE:
            if f is not None:
                return Outcome(t.tno, t.kind, NOOP, f.qualified, by_name)
            if not system.has_account(t.account):
                if not auto_create:
                    raise _missing(system, t)
                system.create_account(t.account, "D", log=relog, guard=False)
            if t.data_name is not None and system.find_file(t.account, t.dict_name, None) is None:
                if not auto_create:  # a data section needs its dictionary: park until it exists
                    raise _missing(system, t)
                system.create_file(t.account, t.dict_name, None, 1, "D", log=relog, guard=False)
            fof = t.fof if t.fof and system.file_by_fof(t.fof) is None else None
            new = system.create_file(t.account, t.dict_name, t.data_name, t.modulo or 7, t.code or "D", fof=fof, log=relog, guard=False)
            return Outcome(t.tno, t.kind, APPLIED, new.qualified, fof is None)
        if t.kind is Kind.DELETE_FILE:
            if f is None:
                return Outcome(t.tno, t.kind, NOOP, f"{t.account},{t.file_ref}", by_name)
            system.delete_file(f, log=relog, guard=False)
            return Outcome(t.tno, t.kind, APPLIED, f.qualified, by_name)

        what = APPLIED
        if f is None:
            if t.kind is Kind.DELETE:
                return Outcome(t.tno, t.kind, NOOP, f"{t.account},{t.file_ref}", by_name)
            if not auto_create:
                raise _missing(system, t)
            f, what = _create_missing(system, t, relog), CREATED
        if t.kind is Kind.WRITE:
            system._put(f, t.item, t.body, log=relog, guard=False)
        elif t.kind is Kind.DELETE:
            if system._drop(f, t.item, log=relog, guard=False) is False:
                what = NOOP
        elif t.kind is Kind.CLEAR:
            system.clear_file(f, log=relog, guard=False)
        elif t.kind is Kind.RESIZE:
            system.resize(f, t.modulo, log=relog)
        elif t.kind is Kind.DPTR:
            system.set_code(f, t.code, log=relog)
        else:  # a kind this release does not know: refuse rather than guess
            raise NotFound(f"transaction {t.tno} has kind {t.kind!r}, which this slave cannot apply", "install the same d3hb release on both hosts")
        return Outcome(t.tno, t.kind, what, f.qualified, by_name)


def last_stored(system: System, server: str) -> int:
    """The highest number this slave holds durably: every one up to it is applied, held or parked."""
    row = system.q("SELECT tno FROM applied WHERE server=?", (server,)).fetchone()
    return int(row[0]) if row else 0


def last_applied(system: System, server: str) -> int:
    """The highest number up to which everything is applied (or parked): below the oldest one held."""
    row = system.q(
        "SELECT a.tno, (SELECT min(h.tno) FROM hold h WHERE h.server=a.server) FROM applied a WHERE a.server=?", (server,)
    ).fetchone()
    if row is None:
        return 0
    return int(row[0]) if row[1] is None else min(int(row[0]), int(row[1]) - 1)


def applied_history(system: System, server: str) -> tuple[int, str, int] | None:
    """(last applied number, master's history id, master's epoch), None before the first call."""
    row = system.q("SELECT tno, history_id, epoch FROM applied WHERE server=?", (server,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]))


def record_applied(system: System, server: str, tno: int, history_id: str | None = None, epoch: int | None = None) -> None:
    """Record the last applied number (inside the batch's transaction)."""
    with system.transaction():
        system.q(
            "INSERT INTO applied(server, tno, history_id, epoch) VALUES(?,?,coalesce(?,''),coalesce(?,0)) "
            "ON CONFLICT(server) DO UPDATE SET tno=excluded.tno, "
            "history_id=coalesce(?, history_id), epoch=coalesce(?, epoch)",
            (server, tno, history_id, epoch, history_id, epoch),
        )


def forget_applied(system: System, server: str) -> None:
    with system.transaction():
        system.q("DELETE FROM applied WHERE server=?", (server,))
