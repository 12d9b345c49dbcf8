"""Helpers with real processes: a clear of 200,000 items while acknowledgements keep flowing,
a large file creation, and a helper killed with kill -9."""

from __future__ import annotations

import os
import re
import signal
import threading
import time


from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.store import hold as store_hold
from d3hb.store import jobs as store_jobs
from d3hb.store.hashing import group
from d3hb.testing import oracle, procs


def bulk_fill(system: System, ref: str, n: int) -> None:
    """The same n items on both systems without replication (unlogged, one SQLite transaction)."""
    f = system.file_info("acme", ref)
    with system.transaction():
        system.conn.executemany("INSERT INTO items(fof,id,grp,body) VALUES(?,?,?,?)",
                                ((f.fof, k, group(k, f.modulo), b"bulk " + k) for k in (f"b{i}".encode() for i in range(n))))


class Writer(threading.Thread):
    """Writes to inv and cust on its own connection until told to stop."""

    def __init__(self, path, log: oracle.WriteLog, lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.path, self.log, self.lock = path, log, lock
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.n = 0

    def run(self) -> None:
        try:
            with System.open(self.path) as m:
                inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
                while not self.halt.is_set():
                    with self.lock, m.transaction():
                        for _ in range(10):
                            self.log.write(inv if self.n % 2 else cust, f"w{self.n % 300}", f"v{self.n}")
                            self.n += 1
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> None:
        self.halt.set()
        self.join(20)
        assert self.error is None, f"writer failed: {self.error!r}"


def setup(home, n_big: int):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust"), ("acme", "big")))
    sv.start(s, "hb")
    sv.start(m, "hb")
    procs.wait_applied(s, "hb", m.queue.last_tno(), 60)
    bulk_fill(m, "big", n_big)
    bulk_fill(s, "big", n_big)
    return m, s


def helper_pids(s: System, what: str) -> list[int]:
    lines = st.recent_messages(sv.files(s, "hb"), 200)[::-1]  # oldest first
    return [int(p) for p in re.findall(rf"Helper pid (\d+) started for {what}", "\n".join(lines))]


def test_clear_of_200000_items_in_a_helper_while_acks_keep_flowing(home, monkeypatch):
    monkeypatch.setenv("D3HB_HELPER_PAUSE", "0.03")  # stretch the clear so its overlap with the acks is measurable
    m, s = setup(home, 200_000)
    assert s.file("acme", "big").count() == 200_000
    log, lock = oracle.WriteLog(), threading.Lock()
    writer = Writer(m.path, log, lock)
    writer.start()
    procs.wait_until(lambda: log.writes, 10, "the writer to start")
    big = m.file("acme", "big")
    with lock:
        assert m.clear_file(big.info) == 200_000
        for i in range(300):  # after the clear: they must survive it
            log.write(big, f"b{i * 7}", f"after clear {i}")
    procs.wait_until(lambda: store_jobs.pending(s, "hb"), 30, "the slave to hand the clear to a helper")
    t0 = time.monotonic()
    acks: list[tuple[float, int]] = []
    saw_helper_in_query = False
    while store_jobs.pending(s, "hb"):
        acks.append((time.monotonic(), m.queue.cursor("hb") or 0))
        if not saw_helper_in_query:
            saw_helper_in_query = any(line.startswith("Helpers running: ") for line in sv.format_query(sv.query(s, "hb")))
        time.sleep(0.05)
        assert time.monotonic() - t0 < 120, "the helper did not finish"
    helper_s = time.monotonic() - t0
    writer.finish()
    moves = sum(1 for a, b in zip(acks, acks[1:]) if b[1] > a[1])
    stats = sv.statistics(s, "hb")["slave"]  # asked of the slave itself: no round trip over a busy link
    print(f"clear of 200000 items: helper {helper_s:.2f} s, master cursor moved {moves} times, "
          f"{stats.get('batches_during_helpers')} batches acked during it, slowest {stats.get('max_ack_ms_during_helpers')} ms")
    assert helper_s > 1.0, "the clear must take long enough for the measurement to mean something"
    assert moves >= 5, f"acknowledgements stalled while the helper worked ({moves} cursor moves in {helper_s:.1f} s)"
    assert stats["batches_during_helpers"] >= 5
    assert stats["max_ack_ms_during_helpers"] < min(1000, helper_s * 1000 / 2), "an acknowledgement waited for the helper"
    assert saw_helper_in_query
    procs.wait_applied(s, "hb", log.last, 60)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log, contiguous=False)  # the clear sits between the writer's numbers
    assert s.file("acme", "big").count() == 300


def test_create_file_with_modulo_997_is_usable_at_once_and_ends_at_997(home):
    # log slave update ON makes the slave's own steps visible in its queue: what it created, then the resize
    m, s, _ = procs.make_pair(home, slave_fields={"log-slave": "on"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    m.create_file("acme", "huge", None, 7, "DL")
    m.create_file("acme", "huge", "huge", 997, "DL")
    huge = m.file("acme", "huge")
    for i in range(200):
        log.write(huge, f"h{i}", f"item {i}")
    procs.wait_until(lambda: s.find_file("acme", "huge", "huge"), 30, "the file on the slave")
    assert s.find_file("acme", "huge", "huge").modulo in (101, 997)
    procs.wait_applied(s, "hb", log.last, 60)
    procs.wait_until(lambda: s.find_file("acme", "huge", "huge").modulo == 997, 30, "the helper to resize to 997")
    assert helper_pids(s, "resize to modulo 997"), "a helper did the resize"
    fof = s.find_file("acme", "huge", "huge").fof
    steps = [(t.kind.name, t.modulo) for t in s.queue.read(0, 5000) if t.fof == fof and t.kind.name != "WRITE"]
    assert steps == [("CREATE_FILE", 101), ("RESIZE", 997)], "created at once with modulo 101, then resized by the helper"
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log)
    assert {g for g, _ in s.file("acme", "huge").groups()} == {g for g, _ in m.file("acme", "huge").groups()}


def test_resize_of_a_file_with_many_items_is_done_by_a_helper(home, monkeypatch):
    monkeypatch.setenv("D3HB_HELPER_ITEMS", "1000")
    m, s = setup(home, 20_000)
    log = oracle.WriteLog()
    big = m.file("acme", "big")
    inv = m.file("acme", "inv")
    m.resize(big.info, 211)
    for i in range(100):  # updates to the file while it is regrouped: held, then applied in order
        big.write(f"b{i}", f"after resize {i}")  # not in the log: the bulk items it replaces never were;
        log.write(inv, f"i{i}", f"meanwhile {i}")  # the oracle's digests compare acme,big as a whole
    procs.wait_until(lambda: helper_pids(s, "resize to modulo 211"), 30, "a helper to start the resize")
    procs.wait_until(lambda: not store_jobs.pending(s, "hb"), 60, "the helper to finish")
    procs.wait_drained(m, s, "hb", log.last)
    oracle.check(m, s, "hb", log, contiguous=False)
    assert s.find_file("acme", "big", "big").modulo == 211 and s.file("acme", "big").read("b99") == b"after resize 99"
    assert sorted(s.file("acme", "big").groups()) == sorted(m.file("acme", "big").groups()), "regrouped as on the master"


def test_kill_9_of_a_helper_is_an_incident_and_the_clear_is_retried(home, monkeypatch):
    monkeypatch.setenv("D3HB_HELPER_ITEMS", "1000")
    monkeypatch.setenv("D3HB_HELPER_PAUSE", "0.3")
    m, s = setup(home, 20_000)
    log = oracle.WriteLog()
    big = m.file("acme", "big")
    m.clear_file(big.info)
    for i in range(100):
        log.write(big, f"n{i}", f"after {i}")
    pid = procs.wait_until(lambda: helper_pids(s, "clear-file"), 30, "a helper to start")[0]
    procs.wait_until(lambda: s.file("acme", "big").count() < 20_000, 30, "the helper to begin clearing")
    os.kill(pid, signal.SIGKILL)
    procs.wait_until(lambda: len(helper_pids(s, "clear-file")) >= 2, 30, "the helper to be restarted")
    text = "\n".join(st.recent_messages(sv.files(s, "hb"), 200))
    assert re.search(rf"INCIDENT server 'hb': the helper \(pid {pid}\) for clear-file of acme,big .* died \(signal SIGKILL\)", text), text
    assert "(attempt 2)" in text
    procs.wait_until(lambda: not store_jobs.pending(s, "hb"), 60, "the retried clear to finish")
    procs.wait_applied(s, "hb", log.last, 60)
    text = "\n".join(st.recent_messages(sv.files(s, "hb"), 200))
    assert "completed" in text
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log, contiguous=False)
    assert s.file("acme", "big").count() == 100


def test_a_helper_that_keeps_dying_is_reported_and_a_restart_after_kill_9_finishes_it(home, monkeypatch):
    monkeypatch.setenv("D3HB_HELPER_ITEMS", "1000")
    monkeypatch.setenv("D3HB_HELPER_PAUSE", "0.3")
    m, s = setup(home, 20_000)
    log = oracle.WriteLog()
    big = m.file("acme", "big")
    m.clear_file(big.info)
    for i in range(50):
        log.write(big, f"n{i}", f"after {i}")
    for k in range(1, 4):
        pids = procs.wait_until(lambda k=k: len(helper_pids(s, "clear-file")) >= k and helper_pids(s, "clear-file"), 30, f"helper {k}")
        os.kill(pids[k - 1], signal.SIGKILL)
    procs.wait_until(lambda: "failed 3 times" in "\n".join(st.recent_messages(sv.files(s, "hb"), 200)), 30, "the give-up incident")
    text = "\n".join(st.recent_messages(sv.files(s, "hb"), 200))
    assert "INCIDENT server 'hb': the helper for clear-file of acme,big" in text and "NOT done" in text
    # reported, not dropped: the job and the updates behind it are still there, durably
    procs.wait_until(lambda: store_apply.last_stored(s, "hb") >= log.last, 30, "the slave to store the updates")
    assert store_jobs.pending(s, "hb") and store_hold.held_count(s, "hb") == 50
    assert s.file("acme", "big").read("n0") is None
    procs.kill(s, "hb")  # and a kill -9 of the slave itself on top
    procs.wait_stopped(s, "hb")
    sv.start(s, "hb")
    procs.wait_until(lambda: not store_jobs.pending(s, "hb"), 60, "the restarted slave to finish the clear")
    procs.wait_applied(s, "hb", log.last, 60)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log, contiguous=False)
    assert s.file("acme", "big").count() == 50
