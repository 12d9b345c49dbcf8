"""The store's side of saves and restores: snapshot records out, a new database in.

A save streams a consistent snapshot (one read transaction) as plain
records while writers go on.  A restore never exposes a half-restored
system: it loads into a NEW database file beside the live one and swaps it in
at the end with renames, recording each step in a marker file so a crash at
any instant is finished or undone at the next open (:func:`recover`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import D3hbError, Refused, TapeError
from d3hb.store import control, dptr, schema
from d3hb.store.hashing import group
from d3hb.store.records import Account, File, Item, SaveRecord
from d3hb.store.system import DB_NAME, System

RESTORING = DB_NAME + ".restoring"
OLD = DB_NAME + ".old"
MARKER = "restore.swap"
ITEM_BATCH = 1000


@dataclass(frozen=True)
class SavedSystem:
    """What the label of a save records about its source."""

    name: str
    history_id: str
    epoch: int
    start_tno: int  # the queue's last number when the snapshot was taken


Record = SaveRecord


def snapshot_records(
    system: System,
    *,
    accounts: Iterable[str] | None = None,
    renumber: bool = False,
) -> tuple[SavedSystem, Iterator[Record]]:
    """The source description and a generator of records, read in one snapshot.

    DX files are not saved; DY files are saved without their items.  With
    ``renumber`` (save ``(k``) FOF numbers are reassigned 3, 4, ... in order
    (1 and 2 stay the file-of-files and mds).  The generator holds the read
    transaction open until it is exhausted or closed.
    """
    wanted = None if accounts is None else set(accounts)

    def records() -> Iterator[Record]:
        with system.snapshot():
            for acct in system.accounts():
                if wanted is None or acct.name in wanted:
                    yield Account(acct.name, acct.code)
            numbering: dict[int, int] = {}
            next_fof = 3
            for f in system.files():
                if wanted is not None and f.account not in wanted:
                    continue
                if not dptr.saved(f.code):
                    continue
                fof = f.fof
                if renumber:
                    if f.fof <= 2:
                        fof = f.fof
                    else:
                        fof, next_fof = next_fof, next_fof + 1
                numbering[f.fof] = fof
                yield File(fof, f.account, f.dict_name, f.data_name, f.code, f.modulo)
                if not dptr.contents_saved(f.code):
                    continue
                cur = system.conn.execute("SELECT id, body FROM items WHERE fof=? ORDER BY grp, rid", (f.fof,))
                while rows := cur.fetchmany(500):
                    for iid, body in rows:
                        yield Item(fof, bytes(iid), bytes(body))

    # The description is read inside the same snapshot as the records: open it now.
    gen = records()
    first = next(gen, None)
    source = SavedSystem(system.name, system.history_id, system.epoch, system.queue.last_tno())

    def chained() -> Iterator[Record]:
        if first is not None:
            yield first
        yield from gen

    return source, chained()


class Loader:
    """Builds a complete new database for a system, to be swapped in by :meth:`commit`."""

    def __init__(self, system_dir: Path, source: SavedSystem, *, name: str) -> None:
        self.dir = system_dir
        self.source = source
        self.path = system_dir / RESTORING
        _remove_db(self.path)
        self.conn = schema.connect(self.path)
        schema.init(self.conn)
        # Nothing in this file counts until commit() has checkpointed, fsynced
        # it and written the swap marker: a crash before that discards it, so
        # syncing every page on the way is wasted time.
        self.conn.execute("PRAGMA synchronous=OFF")
        # For the same reason no journal: in WAL mode every page went to the
        # log and then again to the file at the checkpoint.
        self.conn.execute("PRAGMA journal_mode=OFF")
        # The items' group index is built once at the end, by one sort, not by
        # an insert at a random place per item (which slows as the file grows).
        self._indexes = [sql for (sql,) in self.conn.execute("SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='items' AND sql IS NOT NULL")]
        for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='items' AND sql IS NOT NULL").fetchall():
            self.conn.execute(f'DROP INDEX "{name}"')
        self.conn.execute("BEGIN IMMEDIATE")
        self.counts = {"accounts": 0, "files": 0, "items": 0}
        self._modulo: dict[int, int] = {}
        self._items: list[tuple[int, bytes, int, bytes]] = []
        now = time.time()
        meta = {
            "schema": str(schema.SCHEMA_VERSION),
            "name": name,
            # The restored system continues the source's history, so hot backup
            # can start from the save point without a gap or a double.
            "history_id": source.history_id,
            "epoch": str(source.epoch),
            "created": repr(now),
            "logging": "on",
            "enqueuing": "on",
            # D3: "After a full file-restore, the logging of files is automatically
            # changed to DL type files only".
            "log_mode": "dl",
            "replica": "off",
            "small": "no",
            "restored_from": json.dumps({"system": source.name, "history_id": source.history_id, "start_tno": source.start_tno, "at": now}),
        }
        self.conn.executemany("INSERT INTO meta VALUES(?,?)", list(meta.items()))

    def add(self, rec: Record) -> None:
        if isinstance(rec, Item):
            modulo = self._modulo.get(rec.fof)
            if modulo is None:
                raise D3hbError(f"item {rec.item_id[:40]!r} for FOF {rec.fof} comes before its file on the tape", "the tape is corrupt; use another copy")
            # Items go in by the thousand: one executemany costs what a dozen
            # single inserts do, and a restore is mostly items.
            self._items.append((rec.fof, rec.item_id, group(rec.item_id, modulo), rec.body))
            self.counts["items"] += 1
            if len(self._items) >= ITEM_BATCH:
                self._flush()
        elif isinstance(rec, File):
            self.conn.execute(
                "INSERT INTO files(fof,account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?,?)",
                (rec.fof, rec.account, rec.dict_name, rec.data_name or "", rec.code, rec.modulo, time.time()),
            )
            self._modulo[rec.fof] = rec.modulo
            self.counts["files"] += 1
        elif isinstance(rec, Account):
            self.conn.execute("INSERT INTO accounts VALUES(?,?,?)", (rec.name, rec.code, time.time()))
            self.counts["accounts"] += 1
        else:
            raise TapeError(f"the tape holds a {type(rec).__name__} record where a save's records belong",
                            "this is a transaction tape: load it with txn-load")

    def _flush(self) -> None:
        if self._items:
            self.conn.executemany("INSERT INTO items(fof,id,grp,body) VALUES(?,?,?,?)", self._items)
            self._items.clear()

    def commit(self) -> None:
        """Finish the new database and swap it in: all or nothing."""
        self._flush()
        c = self.conn
        # Recreate what a save never carries: the DX file-of-files, and any
        # control file missing because it was DX on the source.
        if not c.execute("SELECT 1 FROM accounts WHERE name=?", (control.SYSTEM_ACCOUNT,)).fetchone():
            c.execute("INSERT INTO accounts VALUES(?,?,?)", (control.SYSTEM_ACCOUNT, "D", time.time()))
        if not c.execute("SELECT 1 FROM files WHERE fof=1").fetchone():
            c.execute(
                "INSERT INTO files(fof,account,dict_name,data_name,code,modulo,created) VALUES(1,?,?,?,?,?,?)",
                (control.SYSTEM_ACCOUNT, "file-of-files", "file-of-files", "DX", 7, time.time()),
            )
        for fname, code in control.CONTROL_FILES:
            for data in (("",) if fname in ("file-of-files", "mds") else ("", fname)):
                exists = c.execute(
                    "SELECT 1 FROM files WHERE account=? AND dict_name=? AND data_name=?", (control.SYSTEM_ACCOUNT, fname, data)
                ).fetchone()
                if not exists and not (fname in ("file-of-files", "mds") and data == ""):
                    c.execute(
                        "INSERT INTO files(account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?)",
                        (control.SYSTEM_ACCOUNT, fname, data, code if data else "D", 7, time.time()),
                    )
        # The queue continues after the save's start number: never reusing one.
        c.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('queue', ?)", (self.source.start_tno,))
        for sql in self._indexes:
            c.execute(sql)
        c.execute("COMMIT")
        c.execute("PRAGMA journal_mode=DELETE")
        c.close()
        _fsync(self.path)
        swap(self.dir)

    def abort(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if (self.dir / MARKER).exists():
            # The swap had begun (an exception inside commit's renames): the new
            # database is complete, so finish the swap rather than lose both.
            recover(self.dir)
        else:
            _remove_db(self.path)


def swap(system_dir: Path) -> None:
    """Put ``system.db.restoring`` in place of ``system.db``.

    The marker says the new file is complete; from then on :func:`recover`
    finishes the swap whatever happens.  The live database's WAL is
    checkpointed first: its -wal and -shm must go with it, or SQLite would
    replay the old log into the new file.
    """
    live = system_dir / DB_NAME
    if live.exists():
        conn = sqlite3.connect(live, timeout=schema.BUSY_TIMEOUT_MS / 1000)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise Refused(f"{live} is in use by another process", "stop the servers of this system, then restore")
        finally:
            conn.close()
    marker = system_dir / MARKER
    marker.write_text("swap\n")
    _fsync(marker)
    _fsync(system_dir)
    recover(system_dir)


def recover(system_dir: Path) -> None:
    """Finish an interrupted restore swap, or drop an unfinished restore."""
    marker = system_dir / MARKER
    live = system_dir / DB_NAME
    new = system_dir / RESTORING
    old = system_dir / OLD
    if not marker.exists():
        if new.exists():
            _remove_db(new)  # a load that never finished: the live system is untouched
        return
    if new.exists():
        if live.exists():
            os.replace(live, old)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(live) + suffix)
        os.replace(new, live)
        _fsync(system_dir)
    _remove_db(old)
    marker.unlink()
    _fsync(system_dir)


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
