"""Tape operations: save, account-save, t-dump, t-load, restore, account-restore,
transaction dump and load.

Each function takes an open stream (see :mod:`d3hb.ops.tapes` for devices)
and reports through a progress callback; the store does the consistent
reads (:func:`d3hb.store.dump.snapshot_records`) and the crash-safe full
restore (:class:`d3hb.store.dump.Loader`).  Nothing a tape says is kept
until its trailer has been verified: a full restore swaps its new database
in only then, and every load into a live system (account-restore, t-load,
txn-load) runs in one SQLite transaction that is rolled back on any fault.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from d3hb.errors import AlreadyExists, NotFound, Refused, TapeError, UsageError
from d3hb.ops import running, tapeio
from d3hb.ops.tapeio import Figures, Meter, ProgressFn, TapeIn, TapeOut
from d3hb.protocol import tape
from d3hb.store import dump
from d3hb.store.files import File
from d3hb.store.marks import check_id
from d3hb.store.system import System
from d3hb.store.txn import Transaction

logger = logging.getLogger(__name__)

TAPE_SERVER_PREFIX = "tape:"  # applied-table rows for transaction tapes: tape:<history id>


@dataclass(frozen=True)
class Report:
    """What a tape operation did; :meth:`summary` is the quiet one-line form."""

    operation: str
    label: tape.Label
    figures: Figures
    accounts: int = 0
    files: int = 0
    items: int = 0
    txns: int = 0
    skipped: int = 0
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        what = [f"{self.accounts} accounts", f"{self.files} files", f"{self.items} items"] if not self.txns else [f"{self.txns} transactions"]
        if self.skipped:
            what.append(f"{self.skipped} skipped")
        f = self.figures
        return f"{self.operation}: {', '.join(what)}; {tapeio.human_bytes(f.bytes)} in {tapeio.clock_text(f.elapsed)} ({tapeio.human_bytes(int(f.rate))}/s)"


def _label(system: System, kind: str, text: str, start_tno: int) -> tape.Label:
    return tape.Label(kind, system.name, system.history_id, time.time(), text[: tape.LABEL_TEXT_MAX], start_tno, system.epoch)


SIZE_SAMPLE = 2000  # items per file whose size stands for the rest in the estimate


def _saved_bytes(system: System, accounts: set[str] | None) -> int:
    """An estimate of the tape's size, so progress can show the time left.

    Items counted (on the index) times the mean size of a sample: summing
    every body would read the whole database once more before the save.
    """
    total = 0
    for f in system.files():
        if (accounts is None or f.account in accounts) and "X" not in f.code and "Y" not in f.code:
            n = system.q("SELECT count(*) FROM items WHERE fof=?", (f.fof,)).fetchone()[0]
            if n:
                mean = system.q("SELECT avg(length(id) + length(body)) FROM (SELECT id, body FROM items WHERE fof=? LIMIT ?)",
                                (f.fof, SIZE_SAMPLE)).fetchone()[0]
                total += int(n * (mean + 14))  # 14: record and item headers per item
    return total


# -- saves ----------------------------------------------------------------------


def check_queue_clearable(system: System) -> None:
    """A save clears the queue (unless ``(h``): not while a master server still owes its slave."""
    state = system.queue.state()
    if not state.depth:
        return
    late = {s: a for s, a in system.queue.cursors().items() if a < state.last}
    if late:
        server, acked = min(late.items(), key=lambda kv: kv[1])
        owed = system.q("SELECT count(*) FROM queue WHERE tno>?", (acked,)).fetchone()[0]
        if owed:
            raise Refused(
                f"master server {server!r} has {owed} unacknowledged transactions (acknowledged up to {acked}); the save would clear them",
                "let the slave catch up, or save with (h to keep the queue",
            )


def _clear_queue_to(system: System, tno: int, what: str) -> int:
    """Drop what the save holds: transactions up to its start number, never later ones."""
    with system.transaction():
        n = system.q("DELETE FROM queue WHERE tno<=?", (tno,)).rowcount
        system.q("UPDATE cursors SET acked=max(acked, ?)", (tno,))
        system.error_log(f"transaction log queue cleared by {what} ({n} transactions, up to number {tno})", "queue")
    return n


def save(
    system: System,
    out: BinaryIO,
    *,
    accounts: Iterable[str] | None = None,
    renumber: bool = False,
    keep_queue: bool = False,
    text: str = "",
    progress: ProgressFn | None = None,
    block_size: int = tape.BLOCK_SIZE,
) -> Report:
    """A full save (``accounts`` None) or an account-save, from one consistent snapshot.

    ``renumber`` is save ``(k``; ``keep_queue`` is ``(h``.  Without ``(h`` the
    queue is cleared up to the save's start number once the tape is complete.
    """
    wanted = None if accounts is None else list(accounts)
    kind = "save" if wanted is None else "account-save"
    if wanted is not None:
        if not wanted:
            raise UsageError("no account named", "give the accounts to save")
        for name in wanted:
            system.account(name)
    if renumber:
        busy = running.hot_backup_servers(system.path)
        if busy:
            raise Refused(f"save (k renumbers FOF numbers but hot backup server {busy[0]!r} is running", "stop hot backup on both systems, then save (k on both")
    if not keep_queue:
        check_queue_clearable(system)
    total = _saved_bytes(system, None if wanted is None else set(wanted))
    source, records = dump.snapshot_records(system, accounts=wanted, renumber=renumber)
    label = tape.Label(kind, source.name, source.history_id, time.time(), text[: tape.LABEL_TEXT_MAX], source.start_tno, source.epoch, block_size)
    try:
        writer = TapeOut(out, label, Meter(progress, total))
        for rec in records:
            writer.add(rec)
        figures = writer.finish()
    finally:
        close = getattr(records, "close", None)
        if close:
            close()  # ends the snapshot's read transaction
    t = writer.trailer
    notes: list[str] = []
    if not keep_queue:
        n = _clear_queue_to(system, source.start_tno, kind)
        notes.append(f"transaction log queue cleared: {n} transactions up to number {source.start_tno}")
    if renumber:
        notes.append("FOF numbers renumbered sequentially on the tape")
    return Report(kind, label, figures, t.accounts, t.files, t.items, 0, 0, tuple(notes))


def t_dump(
    system: System,
    account: str,
    ref: str,
    out: BinaryIO,
    *,
    ids: Iterable[str | bytes] | None = None,
    text: str = "",
    progress: ProgressFn | None = None,
) -> Report:
    """Dump one file level's items (all, or ``ids``) with the file's description."""
    info = system.file_info(account, ref)
    f = File(system, info)
    wanted = None if ids is None else [check_id(i) for i in ids]
    with system.snapshot():
        label = _label(system, "t-dump", text or info.qualified, system.queue.last_tno())
        writer = TapeOut(out, label, Meter(progress))
        writer.add(tape.File(info.fof, info.account, info.dict_name, info.data_name, info.code, info.modulo))
        if wanted is None:
            for iid, body in f.items():
                writer.add(tape.Item(info.fof, iid, body))
        else:
            for iid in wanted:
                body = f.read(iid)
                if body is not None:
                    writer.add(tape.Item(info.fof, iid, body))
        figures = writer.finish()
    t = writer.trailer
    missing = 0 if wanted is None else len(wanted) - t.items
    notes = (f"{missing} items not on file",) if missing else ()
    return Report("t-dump", label, figures, 0, 1, t.items, 0, missing, notes)


def txn_dump(
    system: System,
    out: BinaryIO,
    *,
    first: int | None = None,
    last: int | None = None,
    text: str = "",
    progress: ProgressFn | None = None,
) -> Report:
    """Write queued transactions (all, or ``first``..``last``) to a tape.

    The queue is left as it is: the transactions leave it when the master
    server's slave acknowledges them, and a slave that loaded the tape
    reports them as applied, so nothing is sent twice.  The label's start
    number is the one before the first transaction on the tape.
    """
    with system.snapshot():
        state = system.queue.state()
        lo = first if first is not None else (state.first or state.last + 1)
        hi = last if last is not None else state.last
        if state.depth and lo < state.first:
            raise NotFound(f"transactions {lo} to {state.first - 1} are no longer queued", f"dump from {state.first}")
        label = _label(system, "txn-dump", text, lo - 1)
        writer = TapeOut(out, label, Meter(progress))
        after = lo - 1
        while after < hi:
            batch = [t for t in system.queue.read(after, 500) if t.tno <= hi]
            if not batch:
                break
            for t in batch:
                writer.add(t)
            after = batch[-1].tno
        figures = writer.finish()
    return Report("txn-dump", label, figures, txns=writer.trailer.txns)


# -- restores and loads -----------------------------------------------------------


def _open_in(stream: BinaryIO, progress: ProgressFn | None, total: int | None) -> tuple[TapeIn, tape.Label]:
    reader = TapeIn(stream, Meter(progress, total))
    return reader, reader.label()


def _need_kind(label: tape.Label, kinds: tuple[str, ...], command: str) -> None:
    if label.kind not in kinds:
        raise TapeError(f"this is a {label.kind} tape of system {label.system!r}, not a {' or '.join(kinds)} tape", f"{command} reads {' or '.join(kinds)} tapes")


def restore(
    system_dir: Path,
    name: str,
    stream: BinaryIO,
    *,
    servers: Iterable[str] = (),
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> Report:
    """A full restore: a new database beside the live one, swapped in when the tape checks out.

    The restored system keeps the save's history id and continues its queue
    numbering after the save's start number.  So hot backup can start from
    the save point, the ``applied`` table gets a row for each name in
    ``servers`` (the hot backup servers that will feed this system) and one
    for ``tape:<history id>`` (transaction tapes), all at the start number.
    """
    busy = running.servers(system_dir)
    if busy:
        raise Refused(f"server {busy[0]!r} of system {name!r} is running", "stop the servers of this system, then restore")
    reader, label = _open_in(stream, progress, total)
    _need_kind(label, ("save",), "restore")
    system_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = dump.SavedSystem(label.system, label.history_id, label.epoch, label.start_tno)
    loader = dump.Loader(system_dir, source, name=name)
    try:
        for rec in reader:
            loader.add(rec)
        rows = [(TAPE_SERVER_PREFIX + label.history_id, label.start_tno, label.history_id, label.epoch)]
        rows += [(s, label.start_tno, label.history_id, label.epoch) for s in servers]
        loader.conn.executemany("INSERT OR REPLACE INTO applied(server, tno, history_id, epoch) VALUES(?,?,?,?)", rows)
        counts = dict(loader.counts)
        loader.commit()
    except BaseException:
        loader.abort()
        raise
    notes = (f"restored from system {label.system!r} saved at transaction {label.start_tno}",)
    return Report("restore", label, reader.figures, counts["accounts"], counts["files"], counts["items"], notes=notes)


def restored_from(system: System) -> dict | None:
    """What a full restore recorded: source system, history id, start number."""
    raw = system.meta("restored_from")
    return json.loads(raw) if raw else None


def seed_applied(system: System, server: str) -> int:
    """Give a hot backup server its slave-side starting point from the last full restore.

    For a slave server defined after the restore; returns the number set.
    """
    info = restored_from(system)
    if info is None or info.get("history_id") != system.history_id:
        raise NotFound(f"system {system.name!r} was not restored from a save of its history", "restore a full save of the master first")
    with system.transaction():
        system.q(
            "INSERT INTO applied(server, tno, history_id, epoch) VALUES(?,?,?,?) "
            "ON CONFLICT(server) DO UPDATE SET tno=max(tno, excluded.tno), history_id=excluded.history_id",
            (server, int(info["start_tno"]), system.history_id, system.epoch),
        )
    return int(info["start_tno"])


def account_restore(
    system: System,
    stream: BinaryIO,
    account: str,
    *,
    new_name: str | None = None,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> Report:
    """Load one account of a save or account-save tape into the LIVE system, in one transaction.

    Files get new FOF numbers here (the tape's may be in use); the updates
    follow the logging rules, so a hot backup slave receives the account.
    """
    target = new_name or account
    reader, label = _open_in(stream, progress, total)
    _need_kind(label, ("save", "account-save"), "account-restore")
    files: dict[int, File | None] = {}  # tape FOF -> live file (None: DY, items not wanted)
    found = False
    accounts = files_n = items = 0
    with system.transaction():
        if system.has_account(target):
            raise AlreadyExists(f"account {target!r} already exists on system {system.name!r}", f"delete it first, or restore it under another name: account-restore NEWNAME {account}")
        for rec in reader:
            if isinstance(rec, tape.Account) and rec.name == account:
                system.create_account(target, rec.code)
                found, accounts = True, accounts + 1
            elif isinstance(rec, tape.File) and rec.account == account:
                if not found:
                    raise TapeError(f"file {rec.dict_name!r} of account {account!r} comes before its account on the tape", tape.CORRUPT)
                info = system.create_file(target, rec.dict_name, rec.data_name, rec.modulo, rec.code)
                files[rec.fof] = File(system, info)
                files_n += 1
            elif isinstance(rec, tape.Item) and rec.fof in files:
                files[rec.fof].write(rec.item_id, rec.body)  # type: ignore[union-attr]
                items += 1
            elif isinstance(rec, Transaction):
                raise TapeError("this tape holds transactions", "load it with txn-load")
        if not found:
            raise NotFound(f"account {account!r} is not on this {label.kind} tape of system {label.system!r}", "check the account name, or the tape")
    return Report("account-restore", label, reader.figures, accounts, files_n, items, notes=(f"account {account!r} restored as {target!r}",) if target != account else ())


def t_load(
    system: System,
    account: str,
    ref: str,
    stream: BinaryIO,
    *,
    ids: Iterable[str | bytes] | None = None,
    overwrite: bool = False,
    verify_only: bool = False,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> Report:
    """Load a t-dump tape into a file (``(o`` overwrite, ``(v`` verify only), all or nothing.

    As D3, the file names need not match: the tape loads into the file given.
    """
    f = None if verify_only else system.file(account, ref)
    wanted = None if ids is None else {check_id(i) for i in ids}
    reader, label = _open_in(stream, progress, total)
    _need_kind(label, ("t-dump",), "t-load")
    loaded = skipped = 0
    exists: list[bytes] = []
    with (contextlib.nullcontext() if f is None else system.transaction()):
        for rec in reader:
            if not isinstance(rec, tape.Item) or (wanted is not None and rec.item_id not in wanted):
                continue
            if f is None:
                loaded += 1
            elif not overwrite and f.read(rec.item_id) is not None:
                skipped += 1
                if len(exists) < 5:
                    exists.append(rec.item_id)
            else:
                f.write(rec.item_id, rec.body)
                loaded += 1
    notes: list[str] = []
    if verify_only:
        notes.append(f"verified: {loaded} items read, tape intact")
    if exists:
        shown = ", ".join(repr(i.decode("latin-1")) for i in exists)
        notes.append(f"[223] {skipped} items exist on file and were not loaded ({shown}{', ...' if skipped > len(exists) else ''}); use (o to overwrite")
    return Report("t-load", label, reader.figures, 0, 0, loaded, 0, skipped, tuple(notes))


def last_loaded(system: System, history_id: str) -> int | None:
    """The last transaction of ``history_id`` this system holds, by any route (hot backup or tape)."""
    row = system.q("SELECT max(tno) FROM applied WHERE history_id=?", (history_id,)).fetchone()
    if row[0] is not None:
        return int(row[0])
    info = restored_from(system)
    if info is not None and info.get("history_id") == history_id:
        return int(info["start_tno"])
    return None


def txn_load(
    system: System,
    stream: BinaryIO,
    *,
    verify_only: bool = False,
    relog: bool = False,
    apply: Callable[[System, Transaction, bool], None] | None = None,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> Report:
    """Apply a transaction tape once: numbers at or below the last loaded are skipped.

    The last number is kept per source history in the ``applied`` table
    (row ``tape:<history id>``), and every hot backup row of the same history
    moves with it, so a master that reconnects does not resend what the tape
    brought.  A gap before the tape's first transaction is refused.  ``relog``
    queues the applied updates again (a cascade), as "log slave updates".
    """
    reader, label = _open_in(stream, progress, total)
    _need_kind(label, ("txn-dump",), "txn-load")
    if apply is None:
        from d3hb.store.apply import apply_transaction as apply
    history = label.history_id
    applied = skipped = 0
    if verify_only:
        for rec in reader:
            applied += isinstance(rec, Transaction)
        return Report("txn-load", label, reader.figures, txns=applied, notes=("verified: tape intact, nothing applied",))
    with system.transaction():
        last = last_loaded(system, history)
        if last is None:
            raise Refused(
                f"system {system.name!r} holds nothing of system {label.system!r}'s history {history[:12]}",
                "restore a full save of that system first, so the transactions have a starting point",
            )
        expect = last + 1
        for rec in reader:
            if not isinstance(rec, Transaction):
                raise TapeError("a transaction tape holds a record that is not a transaction", tape.CORRUPT)
            if rec.tno <= last:
                skipped += 1
                continue
            if rec.tno != expect:
                raise Refused(f"transactions {expect} to {rec.tno - 1} are missing before this tape", "load the tape that holds them first")
            apply(system, rec, relog)
            last, expect, applied = rec.tno, rec.tno + 1, applied + 1
        system.q(
            "INSERT INTO applied(server, tno, history_id, epoch) VALUES(?,?,?,?) ON CONFLICT(server) DO UPDATE SET tno=max(tno, excluded.tno)",
            (TAPE_SERVER_PREFIX + history, last, history, label.epoch),
        )
        system.q("UPDATE applied SET tno=max(tno, ?) WHERE history_id=?", (last, history))
    notes = (f"{skipped} transactions already loaded were skipped",) if skipped else ()
    return Report("txn-load", label, reader.figures, txns=applied, skipped=skipped, notes=notes)


def read_label(stream: BinaryIO) -> tape.Label:
    """Just the label (D3's t-read of block 0)."""
    return TapeIn(stream).label()


def iter_records(stream: BinaryIO) -> Iterator[tape.Record]:
    """Every verified record of a tape (for tests and tools)."""
    yield from TapeIn(stream)

