"""Apply one transaction from a transaction tape to a system.

A transaction names its file by account and file names as well as by the
master's FOF number, so it applies on a system whose numbering differs.
As on a hot backup slave, the dm account's control files are never applied,
and the slave's read-only guard is bypassed (this *is* the slave applying).
When the hot backup apply policy (``d3hb.store.apply``) is present it is
used instead, so both routes apply a transaction the same way.
"""

from __future__ import annotations

from d3hb.errors import NotFound
from d3hb.store import control
from d3hb.store.system import FileInfo, System
from d3hb.store.txn import Kind, Transaction


def _file(system: System, t: Transaction) -> FileInfo:
    f = system.find_file(t.account, t.dict_name, t.data_name)
    if f is None:
        raise NotFound(f"transaction {t.tno} updates {t.account},{t.file_ref}, which is not on system {system.name!r}", "restore a save that holds it, then load the tape again")
    return f


def apply_transaction(system: System, t: Transaction, relog: bool = False) -> None:
    try:  # the hot backup apply policy, when that layer provides one
        from d3hb.store.apply import apply_transaction as shared  # type: ignore[attr-defined]
    except ImportError:
        shared = None
    if shared is not None:
        shared(system, t, relog)
        return
    if t.kind in (Kind.TEST, Kind.VERIFY) or control.is_control(t.account, t.dict_name):
        return
    log = relog
    if t.kind is Kind.CREATE_ACCOUNT:
        if not system.has_account(t.account):
            system.create_account(t.account, t.code or "D", log=log, guard=False)
    elif t.kind is Kind.DELETE_ACCOUNT:
        if system.has_account(t.account):
            system.delete_account(t.account, log=log, guard=False)
    elif t.kind is Kind.DPTR and not t.dict_name:
        system.set_account_code(t.account, t.code, log=log)
    elif t.kind is Kind.CREATE_FILE:
        if system.find_file(t.account, t.dict_name, t.data_name) is None:
            fof = t.fof if t.fof and system.file_by_fof(t.fof) is None else None
            system.create_file(t.account, t.dict_name, t.data_name, t.modulo or 7, t.code or "D", fof=fof, log=log, guard=False)
    elif t.kind is Kind.DELETE_FILE:
        f = system.find_file(t.account, t.dict_name, t.data_name)
        if f is not None:
            system.delete_file(f, log=log, guard=False)
    elif t.kind is Kind.DPTR:
        system.set_code(_file(system, t), t.code, log=log)
    elif t.kind is Kind.CLEAR:
        system.clear_file(_file(system, t), log=log, guard=False)
    elif t.kind is Kind.RESIZE:
        system.resize(_file(system, t), t.modulo, log=log)
    elif t.kind is Kind.WRITE:
        system._put(_file(system, t), t.item, t.body, log=log, guard=False)
    elif t.kind is Kind.DELETE:
        system._drop(_file(system, t), t.item, log=log, guard=False)
