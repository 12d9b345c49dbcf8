"""kill -9 of a writer: every item has its queue record and vice versa, numbers gapless."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from d3hb.store import System

WRITER = r"""
import sys
from d3hb.store import System
s = System.open(sys.argv[1])
f = s.file("dm", "inv")
start = int(sys.argv[2])
for n in range(start, start + 100000):
    f.write(str(n), "body %d" % n)
"""
ROOT = Path(__file__).resolve().parents[2]


def _count(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM queue").fetchone()[0]
    finally:
        conn.close()


def _wait_for(cond, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.005)


def test_kill_9_keeps_items_and_queue_in_step(tmp_path: Path):
    path = tmp_path / "s"
    with System.create(path, small=True) as s:
        s.create_file("dm", "inv", None, 1, "DL")
        s.create_file("dm", "inv", "inv", 7, "DL")
        base = s.queue.last_tno()
    db = path / "system.db"
    start = 0
    for kill_after in (30, 170, 420):  # three kills at different moments
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)], cwd=ROOT)
        try:
            before = _count(db)
            _wait_for(lambda: _count(db) >= before + kill_after)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with System.open(path) as s:
            f = s.file("dm", "inv")
            items = {i: b for i, b in f.items()}
            queued = [t for t in s.queue.read(0, limit=10**6) if t.fof == f.info.fof and t.kind.value == "W"]
            assert {t.item: t.body for t in queued} == items  # each item has its record, each record its item
            tnos = [t.tno for t in s.queue.read(0, limit=10**6)]
            assert tnos == list(range(1, 1 + len(tnos))) and tnos[-1] > base  # gapless from the first
            assert s.q("PRAGMA integrity_check").fetchone()[0] == "ok"
            start = max(int(i) for i in items) + 1
