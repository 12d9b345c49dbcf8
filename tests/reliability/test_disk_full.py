"""The slave's disk fills up, then is freed: nothing acknowledged is lost, the pair resumes.

The slave's system directory is a small tmpfs the test mounts (root only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs, writer


def _mount_tmpfs(path, size: str) -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs as root)"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.strip()}"


def _fill(path) -> int:
    """Write zeros until the file system is full; returns the bytes written."""
    n = 0
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                n += 65536
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return n


@pytest.fixture
def slave_dir(home):
    d = home / "backup"
    reason = _mount_tmpfs(d, "24m")
    if reason:
        pytest.skip(reason)
    yield d
    procs.kill_all(home)
    with contextlib.suppress(Exception):
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_slave_disk_full_then_freed(home, slave_dir):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")), master_fields={"timeout": "2"})
    assert subprocess.run(["findmnt", "-n", str(slave_dir)], capture_output=True).returncode == 0, "the slave is on the tmpfs"
    sv.start(s, "hb")
    sv.start(m, "hb")
    journal = home / "writer.journal"
    proc = writer.spawn(m.path, "hb", journal, seed=5, refs=("acme,inv", "acme,cust"), batch=20, pause=0.005)
    try:
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > 200, 30, "a first part to be applied")
        filler = slave_dir / "filler"
        _fill(filler)
        procs.wait_until(lambda: any("cannot store a batch" in ln for ln in st.recent_messages(sv.files(s, "hb"), 50)), 60,
                         "the slave to report that its disk is full")
        stuck = store_apply.last_applied(s, "hb")
        assert m.queue.last_tno() > stuck, "the master keeps what the full slave cannot store"
        with System.open(s.path) as fresh:  # mid-way, full disk: all acknowledged there, nothing extra
            rep = oracle.verify(m, fresh, "hb", oracle.load_journal(journal, m), drained=False, contiguous=False)
        assert rep.ok, rep.problems
        filler.unlink()
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > stuck + 100, 60, "the pair to resume once space is freed")
    finally:
        proc.terminate()
        proc.wait(30)
    log = oracle.load_journal(journal, m)
    log.observe_ack(procs.wait_drained(m, s, "hb", log.last, 60))
    rep = oracle.verify(m, s, "hb", log, contiguous=False)
    assert rep.ok, rep.problems
    plog = st.recent_messages(sv.files(s, "hb"), 0, permanent=True)
    assert sum("cannot store a batch" in ln for ln in plog) == 1, "one incident, not one per retry"
    assert any("batches are stored again" in ln for ln in plog)
    assert sv.is_running(s, "hb") and sv.is_running(m, "hb")

