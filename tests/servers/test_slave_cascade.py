"""Log slave updates: a cascade A -> B -> C of real processes, and what a slave never touches."""

from __future__ import annotations

from dataclasses import replace

import pytest

from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import Definitions
from d3hb.store import Home, System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs

CODE = procs.CODE


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    yield tmp_path
    procs.kill_all(tmp_path)


def write_many(m: System, log: oracle.WriteLog, n: int, *, start: int = 0, per_txn: int = 50) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
        with m.transaction():
            for j in range(i, min(i + per_txn, start + n)):
                f = inv if j % 2 else cust
                key = f"k{j % 500}"
                if j % 5 == 4 and f.read(key) is not None:
                    log.delete(f, key)
                else:
                    log.write(f, key, f"value {j}\xfe{j % 3}")


def cascade(home):
    h = Home(home)
    a, b, c = h.create("pick0", small=True), h.create("mid", small=True), h.create("far", small=True)
    p1, p2 = procs.free_port(), procs.free_port()
    common = {"code": CODE, "timeout": "2", "check": "60"}
    Definitions(a).setup("ab", {"type": "M", "host": "127.0.0.1", "port": str(p1), "target": "mid", "txlog": "0.05", **common})
    Definitions(b).setup("ab", {"type": "S", "port": str(p1), "log-slave": "on", **common})
    Definitions(b).setup("bc", {"type": "M", "host": "127.0.0.1", "port": str(p2), "target": "far", "txlog": "0.05", **common})
    Definitions(c).setup("bc", {"type": "S", "port": str(p2), **common})
    a.create_account("acme", "DL")
    for name in ("inv", "cust"):
        a.create_file("acme", name, None, 7, "DL")
        a.create_file("acme", name, name, 7, "DL")
    return a, b, c


def start_all(a, b, c):
    sv.start(c, "bc")
    sv.start(b, "ab")
    sv.start(b, "bc")
    sv.start(a, "ab")


def test_three_system_cascade_survives_a_restart_of_the_middle(home):
    a, b, c = cascade(home)
    start_all(a, b, c)
    log = oracle.WriteLog()
    write_many(a, log, 2000)
    procs.wait_applied(b, "ab", log.last, 60)
    # the middle system re-queued what it applied, in its own queue, for C
    procs.wait_until(lambda: store_apply.last_applied(c, "bc") >= len(log.writes), 60, "C to apply what B re-queued")
    sv.stop(b, "bc")
    sv.stop(b, "ab")
    write_many(a, log, 2000, start=2000)  # A keeps writing while B is down
    sv.start(b, "ab")
    sv.start(b, "bc")
    write_many(a, log, 1000, start=4000)
    procs.wait_applied(b, "ab", log.last, 60)
    procs.wait_until(lambda: a.queue.cursor("ab") is not None and a.queue.cursor("ab") >= log.last, 30, "A to see B's last ack")
    oracle.check(a, b, "ab", log)
    last_b = b.queue.last_tno()
    assert last_b >= len(log.writes), "every update B applied was re-queued"
    procs.wait_until(lambda: store_apply.last_applied(c, "bc") >= last_b, 60, f"C to apply B's queue up to {last_b}")
    procs.wait_until(lambda: b.queue.cursor("bc") == last_b, 30, "B to see C's last ack")
    assert b.queue.state().depth == 0
    # C's numbers are B's, not A's: the oracle gets the same writes in the same order, numbered as
    # C's master numbered them (each of A's writes is one of B's transactions, in order).
    log_c = oracle.WriteLog([replace(w, tno=i + 1) for i, w in enumerate(log.writes)])
    oracle.check(b, c, "bc", log_c)
    oracle.check(a, c, "bc", log_c)
    assert c.queue.last_tno() == 0, "log slave updates is off on C: it queues nothing"
    for system, name in ((b, "ab"), (c, "bc")):
        assert sv.statistics(system, name)["slave"]["log_slave_updates"] == ("ON" if system is b else "OFF")


def test_dm_control_files_are_never_modified_by_a_slave_even_with_log_all(home):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"),))
    m.set_meta("log_mode", "all")
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    before = {name: set(s.file("dm", name).ids()) for name in ("accounts", "jobs", "devs", "users")}
    evil = {}
    for name in ("accounts", "jobs", "devs", "users"):
        evil[name] = m.file("dm", name).write("from-master", "must not reach the slave")
        assert isinstance(evil[name], int), f"log ALL queues dm,{name}"
    m.file("dm", "hb.log").write("zz", "not a definition")  # the slave's own definitions live there
    inv = m.file("acme", "inv")
    for i in range(200):
        log.write(inv, f"k{i}", f"v{i}")
    procs.wait_applied(s, "hb", log.last, 60)
    oracle.check(m, s, "hb", log, contiguous=False)
    for name, ids in before.items():
        assert set(s.file("dm", name).ids()) == ids, f"dm,{name} was modified on the slave"
    assert s.file("dm", "hb.log").read("zz") is None
    stats = sv.statistics(m, "hb")["slave"]
    assert stats["transactions_skipped"] >= 5
