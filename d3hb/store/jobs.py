"""Helper jobs: a slave's long operations (clear a big file, resize), durably recorded.

The slave records a job in the SQLite transaction that stores the batch
carrying the clear or resize, so after any crash the job is still there and
is run again (clearing and regrouping are idempotent).  The work itself
(:func:`run`) is done by a helper process (d3hb.servers.helper) in short
SQLite transactions, so the slave keeps applying other batches meanwhile;
the last transaction re-queues the operation for a cascaded slave when the
slave logs its updates, and removes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from d3hb.store.hold import Key, file_key
from d3hb.store.system import FileInfo, System
from d3hb.store.txn import Kind

CLEAR, RESIZE = "clear", "resize"
CHUNK = 2000  # items per helper transaction: short enough that the slave's batches get in between
LARGE_MODULO = 100  # D3: a file created with a larger modulo starts at 101 and a helper resizes it
START_MODULO = 101

_DDL = """CREATE TABLE IF NOT EXISTS hb_jobs(
    server   TEXT NOT NULL,
    tno      INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    fof      INTEGER NOT NULL,
    modulo   INTEGER NOT NULL,
    relog    INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(server, tno)
)"""


@dataclass(frozen=True)
class Job:
    server: str
    tno: int  # the transaction that asked for it (also the job's id)
    kind: str  # CLEAR or RESIZE
    fof: int  # this slave's FOF number of the file
    modulo: int  # RESIZE: the new modulo
    relog: bool  # re-queue the operation when done (log slave updates)
    attempts: int = 0

    def describe(self, f: FileInfo | None) -> str:
        what = "clear-file" if self.kind == CLEAR else f"resize to modulo {self.modulo}"
        return f"{what} of {f.qualified if f else f'FOF {self.fof}'} (transaction {self.tno})"


def ensure(system: System) -> None:
    if getattr(system, "_hb_jobs", False):
        return
    system.q(_DDL)
    system._hb_jobs = True  # type: ignore[attr-defined]


def add(system: System, job: Job) -> None:
    """Record ``job`` (inside the caller's batch transaction)."""
    ensure(system)
    with system.transaction():
        system.q("INSERT OR IGNORE INTO hb_jobs VALUES(?,?,?,?,?,?,?)",
                 (job.server, job.tno, job.kind, job.fof, job.modulo, int(job.relog), job.attempts))


def pending(system: System, server: str) -> list[Job]:
    ensure(system)
    rows = system.q("SELECT server, tno, kind, fof, modulo, relog, attempts FROM hb_jobs WHERE server=? ORDER BY tno", (server,))
    return [Job(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), bool(r[5]), int(r[6])) for r in rows.fetchall()]


def get(system: System, server: str, tno: int) -> Job | None:
    return next((j for j in pending(system, server) if j.tno == tno), None)


def attempt(system: System, job: Job) -> int:
    """Count one more attempt (a helper is being started); returns the count."""
    ensure(system)
    with system.transaction():
        system.q("UPDATE hb_jobs SET attempts=attempts+1 WHERE server=? AND tno=?", (job.server, job.tno))
        row = system.q("SELECT attempts FROM hb_jobs WHERE server=? AND tno=?", (job.server, job.tno)).fetchone()
    return int(row[0]) if row else 0


def key(system: System, job: Job) -> Key | None:
    f = system.file_by_fof(job.fof)
    return None if f is None else file_key(f.account, f.dict_name)


def is_done(system: System, job: Job) -> bool:
    ensure(system)
    return system.q("SELECT 1 FROM hb_jobs WHERE server=? AND tno=?", (job.server, job.tno)).fetchone() is None


def run(system: System, job: Job, *, chunk: int = CHUNK, pause: float = 0.0,
        progress: Callable[[int], None] = lambda n: None) -> int:
    """Do ``job``; returns the items cleared or regrouped.  Idempotent: a rerun after a crash is safe."""
    ensure(system)
    f = system.file_by_fof(job.fof)
    n = 0
    if f is not None and job.kind == CLEAR:
        while True:
            with system.transaction():
                gone = system.q("DELETE FROM items WHERE rid IN (SELECT rid FROM items WHERE fof=? LIMIT ?)", (f.fof, chunk)).rowcount
            n += gone
            progress(n)
            if gone < chunk:
                break
            if pause:
                time.sleep(pause)  # leave the database to the slave for a moment
    elif f is not None and job.kind == RESIZE:
        n = system.q("SELECT count(*) FROM items WHERE fof=?", (f.fof,)).fetchone()[0]
        system.resize(f, job.modulo, log=False, batch=chunk)
        progress(n)
    with system.transaction():
        if system.q("SELECT 1 FROM hb_jobs WHERE server=? AND tno=?", (job.server, job.tno)).fetchone() is None:
            return n  # another run finished it
        f = system.file_by_fof(job.fof)
        if f is not None and job.kind == CLEAR:
            system.q("DELETE FROM items WHERE fof=?", (f.fof,))  # anything a crashed run left
            if job.relog:
                system._log(Kind.CLEAR, f, log=True)
        elif f is not None and job.relog:
            system._log(Kind.RESIZE, f, modulo=job.modulo, log=True)
        system.q("DELETE FROM hb_jobs WHERE server=? AND tno=?", (job.server, job.tno))
    return n
