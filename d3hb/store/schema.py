"""The SQLite schema of a system, how a connection is opened, and error mapping.

One database per system, WAL mode, ``synchronous=FULL``: a commit that
returns is on disk.  SQLite is the embedded default because one transaction
can cover an item write and its queue record.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from d3hb.errors import StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000


def busy_timeout_ms() -> int:
    """How long a writer waits for a lock; D3HB_BUSY_MS shortens it (tests, impatient scripts)."""
    try:
        return max(0, int(os.environ.get("D3HB_BUSY_MS", BUSY_TIMEOUT_MS)))
    except ValueError:
        return BUSY_TIMEOUT_MS

DDL = """
CREATE TABLE IF NOT EXISTS meta(
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts(
    name    TEXT PRIMARY KEY,
    code    TEXT NOT NULL,
    created REAL NOT NULL
);
-- One row per file level: the dictionary (data_name '') and each data section.
CREATE TABLE IF NOT EXISTS files(
    fof       INTEGER PRIMARY KEY AUTOINCREMENT,
    account   TEXT NOT NULL REFERENCES accounts(name),
    dict_name TEXT NOT NULL,
    data_name TEXT NOT NULL,
    code      TEXT NOT NULL,
    modulo    INTEGER NOT NULL,
    created   REAL NOT NULL,
    UNIQUE(account, dict_name, data_name)
);
-- rid keeps insertion order inside a group, as items sit in a D3 group.
CREATE TABLE IF NOT EXISTS items(
    rid  INTEGER PRIMARY KEY,
    fof  INTEGER NOT NULL,
    id   BLOB NOT NULL,
    grp  INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE(fof, id)
);
CREATE INDEX IF NOT EXISTS items_group ON items(fof, grp);
-- The transaction log queue.  AUTOINCREMENT: a number is never reused, even
-- after the queue is purged empty.
CREATE TABLE IF NOT EXISTS queue(
    tno       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL,
    fof       INTEGER NOT NULL,
    account   TEXT NOT NULL,
    dict_name TEXT NOT NULL,
    data_name TEXT,
    item      BLOB NOT NULL,
    body      BLOB NOT NULL,
    code      TEXT NOT NULL,
    modulo    INTEGER NOT NULL,
    ts        REAL NOT NULL
);
-- Master side: what each master server's slave has acknowledged.
CREATE TABLE IF NOT EXISTS cursors(
    server TEXT PRIMARY KEY,
    acked  INTEGER NOT NULL
);
-- Slave side: the last transaction applied (or durably held) per master.
CREATE TABLE IF NOT EXISTS applied(
    server     TEXT PRIMARY KEY,
    tno        INTEGER NOT NULL,
    history_id TEXT NOT NULL DEFAULT '',
    epoch      INTEGER NOT NULL DEFAULT 0
);
-- Hold files: transactions received but not yet applied, in order.
CREATE TABLE IF NOT EXISTS hold(
    server TEXT NOT NULL,
    tno    INTEGER NOT NULL,
    txn    BLOB NOT NULL,
    PRIMARY KEY(server, tno)
) WITHOUT ROWID;
"""


def connect(db: Path) -> sqlite3.Connection:
    """Open (creating if need be) a system database with d3hb's settings."""
    with translate(db):
        busy = busy_timeout_ms()
        conn = sqlite3.connect(db, timeout=busy / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={busy}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot put {db} in WAL mode (got {mode})", "put the system on a local file system")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn


def init(conn: sqlite3.Connection) -> None:
    conn.executescript("BEGIN;" + DDL + "COMMIT;")


@contextlib.contextmanager
def translate(where: Path | str) -> Iterator[None]:
    """Turn SQLite's errors into one-line StoreErrors that say what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StoreError(f"{where} is locked by another process", "retry, or stop the process holding it") from None
        if "disk is full" in text or "database or disk is full" in text:
            raise StoreError(f"disk full writing {where}; nothing was written", "free space on that file system and retry") from None
        if "unable to open" in text or "readonly" in text:
            raise StoreError(f"cannot open {where} for writing ({text})", "check the directory's owner and mode") from None
        if "disk I/O error" in text:
            raise StoreError(f"I/O error on {where}; the last change was not written", "check the disk, then retry") from None
        raise StoreError(f"database error on {where}: {text}", "report this with the permanent log") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where} is corrupt ({exc})", "restore the system from a save") from None
