"""The oracle itself: it must catch every way a slave can be wrong, and the writer's
journal must account for exactly what a master holds, even after a kill -9."""

from __future__ import annotations

import dataclasses
import signal

from d3hb.store import Home, System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs, writer


def _pair(home):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")))
    return m, s


def _ship(m: System, s: System, upto: int | None = None, after: int = 0) -> int:
    """What the slave server does, without the network: apply the queue in order and record the number."""
    last = after
    with s.transaction():
        for t in m.queue.read(after, limit=100_000):
            if upto is not None and t.tno > upto:
                break
            store_apply.apply_transaction(s, t, auto_create=True)
            last = t.tno
        store_apply.record_applied(s, "hb", last, m.history_id, m.epoch)
    return last


def _writes(m: System, log: oracle.WriteLog, n: int, start: int = 0) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n):
        f = inv if i % 2 else cust
        if i % 5 == 4:
            log.delete(f, f"k{(i - 2) % 20}") if f.read(f"k{(i - 2) % 20}") is not None else log.write(f, f"k{i % 20}", f"v{i}")
        else:
            log.write(f, f"k{i % 20}", f"v{i}")


def test_a_faithful_slave_passes_and_counts(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    _writes(m, log, 200)
    _ship(m, s)
    log.observe_ack(store_apply.last_applied(s, "hb"))
    rep = oracle.verify(m, s, "hb", log)
    assert rep.ok, rep.problems
    assert rep.writes == rep.acknowledged == 200 and rep.lost == rep.duplicated == rep.never_written == 0


def test_a_slave_behind_an_observed_acknowledgement_lost_writes(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    _writes(m, log, 100)
    half = log.writes[49].tno
    _ship(m, s, upto=half)
    assert oracle.verify(m, s, "hb", log, drained=False).ok, "behind but nothing acknowledged beyond: fine"
    log.observe_ack(log.last)  # the slave said it had everything, then came back with less
    rep = oracle.verify(m, s, "hb", log, drained=False)
    assert rep.lost == 50 and "acknowledged writes lost" in rep.problems[0]


def test_a_write_applied_again_after_its_delete_is_caught(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    log.write(inv, "a", "first")
    log.delete(inv, "a")
    _ship(m, s)
    first = m.queue.read(0, limit=100)
    write_a = next(t for t in first if t.item == b"a" and t.body == b"first")
    with s.transaction():  # the replay a broken exactly-once check would let through
        store_apply.apply_transaction(s, write_a)
    rep = oracle.verify(m, s, "hb", log, drained=False)
    assert rep.duplicated == 1 and "duplicated" in rep.problems[0]


def test_an_older_write_left_in_place_is_out_of_order(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    log.write(inv, "a", "one")
    log.write(inv, "a", "two")
    _ship(m, s)
    one = next(t for t in m.queue.read(0, limit=100) if t.body == b"one")
    with s.transaction():
        store_apply.apply_transaction(s, one)
    rep = oracle.verify(m, s, "hb", log, drained=False)
    assert rep.out_of_order == 1 and "out of order" in rep.problems[0]


def test_something_never_written_is_caught_and_digests_compared(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    _writes(m, log, 20)
    _ship(m, s)
    t = [t for t in m.queue.read(0, limit=1000) if t.body == b"v18"][-1]
    with s.transaction():
        store_apply.apply_transaction(s, dataclasses.replace(t, item=b"ghost", body=b"never"))
    rep = oracle.verify(m, s, "hb", log)
    assert rep.never_written == 1 and "never written" in rep.problems[0]
    assert not rep.ok


def test_a_gap_in_the_writers_numbers_is_caught(home):
    m, s = _pair(home)
    log = oracle.WriteLog()
    _writes(m, log, 10)
    del log.writes[4]
    _ship(m, s)
    try:
        oracle.check(m, s, "hb", log)
    except AssertionError as exc:
        assert "gap" in str(exc)
    else:
        raise AssertionError("a gap in the writer's numbers passed the oracle")


def test_the_journal_of_a_killed_writer_accounts_for_exactly_what_the_master_holds(home):
    m, s = _pair(home)
    m.queue.add_cursor("hb", 0)
    journals = []
    for wid in (1, 2, 3):
        j = home / f"w{wid}.journal"
        journals.append(j)
        proc = writer.spawn(m.path, "hb", j, wid=wid, seed=wid, refs=("acme,inv", "acme,cust"), batch=20, pause=0)
        procs.wait_until(lambda j=j: j.exists() and j.read_text().count('"ok"') >= 5 + 7 * wid, 30, f"writer {wid} to write")
        proc.send_signal(signal.SIGKILL)  # anywhere: between its journal line and its commit, or not
        proc.wait(10)
    log = oracle.WriteLog()
    for j in journals:
        log.extend(oracle.load_journal(j, m))
    # Replaying the resolved journal must give the master's content exactly (and nothing else).
    _ship(m, s)
    log.observe_ack(store_apply.last_applied(s, "hb"))
    with System.open(Home(home).path / "backup") as fresh:
        rep = oracle.verify(m, fresh, "hb", log, drained=True, contiguous=True)
    assert rep.ok, rep.problems
    assert rep.writes > 300
    tnos = [w.tno for w in log.writes]
    assert tnos == list(range(tnos[0], tnos[0] + len(tnos))), "nothing the writers committed is missing from their journals"
