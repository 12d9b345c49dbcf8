"""Log slave updates: a cascade A -> B -> C of real processes, and what a slave never touches."""

from __future__ import annotations

import threading
import time


from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import Definitions
from d3hb.store import Home, System, control, file_digest
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs

CODE = procs.CODE


def write_many(m: System, log: oracle.WriteLog, n: int, *, start: int = 0, per_txn: int = 50, pause: float = 0.0) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
        if pause:
            time.sleep(pause)  # pacing a writer, not waiting for a condition
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
    common = {"code": CODE, "timeout": "2", "check": "600"}  # no test records: see the count below
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

    # and an abrupt restart: kill -9 of both of B's servers while A writes and B forwards to C
    a2 = System.open(a.path)  # the writer's own connection: sqlite connections are per thread here
    writer = threading.Thread(target=write_many, args=(a2, log, 3000), kwargs={"start": 5000, "per_txn": 20, "pause": 0.01},
                              daemon=True)
    writer.start()
    procs.wait_until(lambda: store_apply.last_applied(b, "ab") > log.writes[5000].tno if len(log.writes) > 5000 else False,
                     30, "B to apply some of the new writes")
    procs.kill(b, "ab")
    procs.kill(b, "bc")
    procs.wait_stopped(b, "ab")
    procs.wait_stopped(b, "bc")
    killed_at = store_apply.last_applied(b, "ab")
    sv.start(b, "ab")
    sv.start(b, "bc")
    writer.join(120)
    assert not writer.is_alive() and len(log.writes) == 8000
    assert killed_at < log.last, "the kill came while A was still writing"
    a2.close()

    procs.wait_applied(b, "ab", log.last, 60)
    procs.wait_until(lambda: a.queue.cursor("ab") is not None and a.queue.cursor("ab") >= log.last, 30, "A to see B's last ack")
    oracle.check(a, b, "ab", log)
    last_b = b.queue.last_tno()
    assert last_b >= len(log.writes), "every update B applied was re-queued"
    procs.wait_until(lambda: store_apply.last_applied(c, "bc") >= last_b, 60, f"C to apply B's queue up to {last_b}")
    procs.wait_until(lambda: b.queue.cursor("bc") == last_b, 30, "B to see C's last ack")
    assert b.queue.state().depth == 0
    # B re-queued each of A's transactions exactly once, in order, whatever the kill interrupted (no
    # test record is written within the 600 s check period): B's numbers are A's.
    assert last_b == log.last, f"B queued {last_b} transactions for C, A sent {log.last}"
    log_c = log
    oracle.check(b, c, "bc", log_c)
    oracle.check(a, c, "bc", log_c)
    assert c.queue.last_tno() == 0, "log slave updates is off on C: it queues nothing"
    for system, name in ((b, "ab"), (c, "bc")):
        assert sv.statistics(system, name)["slave"]["log_slave_updates"] == ("ON" if system is b else "OFF")
    q = sv.format_query(sv.query(b, "ab"))
    assert "Log slave update ON. Auto-create OFF" in q, q


def test_dm_control_files_are_never_modified_by_a_slave_even_with_log_all(home):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"),))
    m.set_meta("log_mode", "all")
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    # The slave itself writes to two of them (its definitions in hb.log, incidents in errors): for those
    # only the master's items are checked; every other control file must stay exactly as it was.
    own = {"hb.log", "errors"}
    logged = [name for name, code in control.CONTROL_FILES if code == "D"]
    for name in ("errors", "jobs"):  # something for the master's clear-file to (not) clear
        s.file("dm", name).write("slave-own", f"an entry of the slave's own {name} file")
    before = {name: file_digest(s, s.file_info("dm", name).fof) for name in logged if name not in own}
    queued = 0
    for name in logged:
        tno = m.file("dm", name).write("from-master", f"must not reach the slave's {name}")
        assert isinstance(tno, int), f"log ALL queues dm,{name}"
        queued += 1
    for name in ("jobs", "errors"):  # a clear-file of a control file is queued too, and must not clear the slave's
        m.clear_file(m.file_info("dm", name))
        queued += 1
    inv = m.file("acme", "inv")
    for i in range(200):
        log.write(inv, f"k{i}", f"v{i}")
    procs.wait_drained(m, s, "hb", log.last)
    oracle.check(m, s, "hb", log, contiguous=False)
    for name, digest in before.items():
        assert file_digest(s, s.file_info("dm", name).fof) == digest, f"dm,{name} was modified on the slave"
    for name in own:
        assert s.file("dm", name).read("from-master") is None, f"the master's item reached the slave's dm,{name}"
    assert s.file("dm", "errors").read("slave-own") is not None, "the master's clear-file cleared the slave's errors file"
    stats = sv.statistics(s, "hb")["slave"]  # asked of the slave itself: no round trip over a busy link
    assert stats["transactions_skipped"] >= queued, f"{queued} control-file updates were sent and skipped"
