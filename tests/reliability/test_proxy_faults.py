"""A fault proxy between master and slave: delay, stall, truncate, reset, flipped bytes.

Each fault hits live replication traffic; the pair must detect it (a flipped
byte is caught by the frames' CRC-32, never applied), drop the connection,
call again, and end with the oracle: nothing lost, nothing twice, nothing
that was never written.
"""

from __future__ import annotations

import time

import pytest

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.testing import chaos, oracle, procs
from d3hb.testing.faultproxy import DOWN, UP


@pytest.fixture
def rig(home):
    port = procs.free_port()
    proxy = chaos.proxy_to(port)
    m, s, _ = procs.make_pair(home, "hb", port, files=(("acme", "inv"), ("acme", "cust")),
                              master_fields={"port": str(proxy.port), "timeout": "1", "batch": "20"},
                              slave_fields={"timeout": "1"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    yield m, s, proxy
    proxy.close()


def write(m: System, log: oracle.WriteLog, n: int, start: int, per_txn: int = 10) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
        with m.transaction():
            for j in range(i, min(i + per_txn, start + n)):
                f = inv if j % 2 else cust
                key = f"k{j % 300}"
                if j % 7 == 3 and f.read(key) is not None:
                    log.delete(f, key)
                else:
                    log.write(f, key, f"value {j}\xfeattr\xfd{j}")
        log.observe_ack(m.queue.cursor("hb"))


def drained(m: System, s: System, log: oracle.WriteLog) -> oracle.Report:
    procs.wait_applied(s, "hb", log.last, 60)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last acknowledgement")
    log.observe_ack(m.queue.cursor("hb"))
    rep = oracle.verify(m, s, "hb", log)
    assert rep.ok, rep.problems
    assert rep.acknowledged == rep.writes == len(log.writes)
    return rep


def messages(system: System) -> str:
    return "\n".join(st.recent_messages(sv.files(system, "hb"), 0, permanent=True))


@pytest.mark.parametrize("direction, detector", [(UP, "slave"), (DOWN, "master")])
def test_flipped_bytes_are_detected_and_never_applied(rig, direction, detector):
    m, s, proxy = rig
    log = oracle.WriteLog()
    write(m, log, 200, 0)
    procs.wait_applied(s, "hb", log.last)
    flips = 0
    for round_ in range(3):
        proxy.flip(direction)
        conns = proxy.connections
        write(m, log, 300, 200 + round_ * 300)  # traffic both ways: batches up, acknowledgements down
        procs.wait_until(lambda: proxy.pending == 0, 30, "the flip to hit traffic")
        flips += 1
        procs.wait_until(lambda c=conns: proxy.connections > c, 30, "the damaged connection to be dropped and called again")
    rep = drained(m, s, log)
    assert proxy.counts["flip"] == flips == 3
    log_text = messages(s if detector == "slave" else m)
    assert log_text.count("checksum mismatch") >= 1, f"the {detector} names the damage:\n{log_text[-2000:]}"
    assert rep.lost == rep.duplicated == rep.never_written == 0


def test_truncated_frames_and_resets_end_the_connection_and_lose_nothing(rig):
    m, s, proxy = rig
    log = oracle.WriteLog()
    write(m, log, 200, 0)
    for i, fault in enumerate(("truncate", "reset", "truncate", "reset")):
        conns = proxy.connections
        if fault == "truncate":
            proxy.truncate()
            write(m, log, 300, 200 + i * 300)
            procs.wait_until(lambda: proxy.pending == 0, 30, "the cut to hit traffic")
        else:
            write(m, log, 300, 200 + i * 300)
            procs.wait_until(lambda: proxy.reset() > 0, 30, "a connection to reset")
        procs.wait_until(lambda c=conns: proxy.connections > c, 30, f"the master to call again after the {fault}")
    drained(m, s, log)
    assert proxy.counts["truncate"] == 2 and proxy.counts["reset"] == 2
    assert "connection lost" in messages(m)


def test_a_stall_past_the_timeout_drops_the_link_and_it_recovers(rig):
    m, s, proxy = rig
    log = oracle.WriteLog()
    write(m, log, 200, 0)
    procs.wait_applied(s, "hb", log.last)
    conns = proxy.connections
    proxy.stall(2.5)  # the servers' time-out is 1 s
    write(m, log, 500, 200)
    procs.wait_until(lambda: "no progress" in messages(m) or "did not" in messages(m) or "connection lost" in messages(m), 30,
                     "the master to give up the stalled link")
    procs.wait_until(lambda: proxy.connections > conns, 30, "a new call")
    drained(m, s, log)


def test_a_slow_link_delays_but_loses_nothing(rig):
    m, s, proxy = rig
    log = oracle.WriteLog()
    proxy.delay = 0.05
    t0 = time.monotonic()
    write(m, log, 600, 0)
    procs.wait_applied(s, "hb", log.last, 60)
    proxy.delay = 0.0
    assert proxy.counts["delay"] > 5
    rep = drained(m, s, log)
    assert rep.applied >= log.last and time.monotonic() - t0 < 60
    assert store_apply.last_applied(s, "hb") == log.last
