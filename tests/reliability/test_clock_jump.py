"""A wall-clock jump on each side of a running pair (a day forward on the master, a day
back on the slave), through d3hb/testing/fakeclock: time-outs run on the monotonic
clock, so nothing fires, nothing is lost."""

from __future__ import annotations

import os
import time

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import apply as store_apply
from d3hb.testing import chaos, clockjump, oracle, procs, writer

DAY = 86400.0


def _start_with_clock(monkeypatch, system, clock_file) -> None:
    with monkeypatch.context() as mp:
        for k, v in clockjump.env(clock_file).items():
            if os.environ.get(k) != v:
                mp.setenv(k, v)
        sv.start(system, "hb")


def _dated(lines: list[str], when: float) -> list[str]:
    day = time.strftime("%Y-%m-%d", time.localtime(when))
    return [ln for ln in lines if ln.startswith(day)]


def test_clock_jumps_on_both_sides_lose_nothing_and_fire_no_timeout(home, monkeypatch):
    port = procs.free_port()
    with chaos.proxy_to(port) as proxy:
        _run(home, monkeypatch, port, proxy)


def _run(home, monkeypatch, port, proxy):
    m, s, _ = procs.make_pair(home, "hb", port, files=(("acme", "inv"), ("acme", "cust")),
                              master_fields={"port": str(proxy.port), "timeout": "1", "check": "0.3"},
                              slave_fields={"timeout": "1", "check": "0.3"})
    cm, cs = home / "master.clock", home / "slave.clock"
    clockjump.set_offset(cm, 0)
    clockjump.set_offset(cs, 0)
    _start_with_clock(monkeypatch, s, cs)
    _start_with_clock(monkeypatch, m, cm)
    journal = home / "writer.journal"
    proc = writer.spawn(m.path, "hb", journal, seed=9, refs=("acme,inv", "acme,cust"), pause=0.005)
    try:
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > 200, 30, "a first part to be applied")
        clockjump.set_offset(cm, DAY)
        clockjump.set_offset(cs, -DAY)
        applied = store_apply.last_applied(s, "hb")
        time.sleep(1.5)  # five check periods: heartbeats and test records cross the jump
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > applied + 100, 30, "replication to go on across the jump")
        conns = proxy.connections
        procs.wait_until(lambda: proxy.reset() > 0, 10, "a connection to reset")  # makes both sides log a fresh line
        procs.wait_until(lambda: proxy.connections > conns and sv.query(m, "hb")["state"] != st.WAIT_CALL_RESPONSE, 30,
                         "the master to call again")
    finally:
        proc.terminate()
        proc.wait(30)
    log = oracle.load_journal(journal, m)
    log.observe_ack(procs.wait_drained(m, s, "hb", log.last, 60))
    rep = oracle.verify(m, s, "hb", log, contiguous=False)
    assert rep.ok, rep.problems
    mlog = st.recent_messages(sv.files(m, "hb"), 0, permanent=True)
    slog = st.recent_messages(sv.files(s, "hb"), 0, permanent=True)
    now = time.time()
    assert _dated(mlog, now + DAY), "the master's clock did jump a day forward (its log says so)"
    assert _dated(slog, now - DAY), "the slave's clock did jump a day back"
    assert not any("not acknowledged" in ln for ln in mlog), "no test record judged late because of the jump"
    assert sum("connection lost" in ln for ln in mlog) == 1, "only the reset dropped the link, not the jump"
