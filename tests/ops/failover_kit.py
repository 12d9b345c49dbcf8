"""Shared pieces of the failover tests: a writer that follows the master, pair helpers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from d3hb.errors import Refused
from d3hb.ops import supervisor as sv
from d3hb.store import Home, System
from d3hb.testing import oracle, procs


def pair(home: Path, **kw):
    return procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")), **kw)


class Writer(threading.Thread):
    """Users: write to the system ``target`` names, one SQLite transaction per ``per_txn`` updates.

    A write refused because the system stopped being the master is retried
    on whatever ``target`` names by then (users moved to the other system).
    Writes enter the log only once committed, so the oracle sees exactly
    what was acknowledged to the user.
    """

    def __init__(self, target: Path, log: oracle.WriteLog, per_txn: int = 10, pause: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.target, self.log, self.per_txn, self.pause = target, log, per_txn, pause
        self.halt = threading.Event()
        self.count = 0
        self.refused = 0
        self.first_refusal: float | None = None
        self.first_after: float | None = None  # first commit after a refusal
        self.error: BaseException | None = None
        self.committed = threading.Event()
        self.resume = threading.Event()
        self.resume.set()
        self.idle = threading.Event()  # set while paused between transactions

    def run(self) -> None:
        current = None
        try:
            while not self.halt.is_set():
                if not self.resume.is_set():
                    self.idle.set()
                    self.resume.wait(0.05)
                    continue
                self.idle.clear()
                if current is None or current.path != self.target:
                    if current is not None:
                        current.close()
                    current = System.open(self.target)
                try:
                    self._one(current)
                except Refused:
                    self.refused += 1
                    self.first_refusal = self.first_refusal or time.monotonic()
                    time.sleep(0.001)
                    continue
                if self.first_refusal and not self.first_after:
                    self.first_after = time.monotonic()
                self.committed.set()
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            if current is not None:
                current.close()

    def _one(self, s: System) -> None:
        pending: list[oracle.Write] = []
        inv, cust = s.file("acme", "inv"), s.file("acme", "cust")
        with s.transaction():
            for j in range(self.count, self.count + self.per_txn):
                f = inv if j % 2 else cust
                key = f"k{j % 400}".encode()
                info = f.info
                if j % 7 == 3 and f.read(key) is not None:
                    tno, body = f.delete(key), None
                else:
                    body = f"value {j}\xfeattr2\xfdv2".encode("latin-1")
                    tno = f.write(key, body)
                assert isinstance(tno, int), f"write to {info.qualified} not logged"
                pending.append(oracle.Write(tno, info.account, info.dict_name, info.data_name, key, body))
        self.log.writes.extend(pending)
        self.count += self.per_txn

    def wait_writes(self, n: int, timeout: float = 60.0) -> None:
        start = len(self.log.writes)
        procs.wait_until(lambda: len(self.log.writes) >= start + n or self.error, timeout, f"{n} more writes")
        assert self.error is None, f"writer failed: {self.error!r}"

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Users pause (between transactions) so a check sees a quiet master."""
        self.resume.clear()
        procs.wait_until(lambda: self.idle.is_set() or not self.is_alive(), 30, "the writer to pause")
        try:
            yield
        finally:
            self.resume.set()

    def finish(self) -> None:
        self.halt.set()
        self.join(30)
        assert not self.is_alive(), "writer did not stop"
        assert self.error is None, f"writer failed: {self.error!r}"


def keep_upto(log: oracle.WriteLog, tno: int) -> int:
    """Forget the writes above ``tno`` (lost with a dead master); returns how many were dropped."""
    before = len(log.writes)
    log.writes[:] = [w for w in log.writes if w.tno <= tno]
    return before - len(log.writes)


def drained(master: System, slave: System, log: oracle.WriteLog, name: str = "hb", timeout: float = 60.0,
            contiguous: bool = True) -> int:
    procs.wait_applied(slave, name, log.last, timeout)
    procs.wait_until(lambda: (master.queue.cursor(name) or 0) >= log.last, 30, "the master to see the last acknowledgement")
    return oracle.check(master, slave, name, log, contiguous=contiguous)


def lose_system(home: Path, system: System, name: str = "hb") -> Path:
    """A system whose disk died: its server killed, its database gone, an empty system of that name in its place."""
    procs.kill(system, name)
    path = system.path
    system.close()
    for db in ("system.db", "system.db-wal", "system.db-shm"):
        (path / db).unlink(missing_ok=True)
    Home(home).create(path.name, small=True).close()
    return path


def start_pair(master: System, slave: System, name: str = "hb") -> None:
    sv.start(slave, name)
    sv.start(master, name)
