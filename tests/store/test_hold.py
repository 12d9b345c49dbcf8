"""store.hold and store.jobs, and the slave's options handler over them (no processes)."""

from __future__ import annotations

import pytest

from d3hb.servers.handlers import GapError
from d3hb.servers.options import HELD, HELPER, SlaveOptions
from d3hb.store import Home, Kind, Transaction
from d3hb.store import apply as A
from d3hb.store import hold as H
from d3hb.store import jobs as J
from d3hb.store import park as P


@pytest.fixture
def pair(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    h = Home(tmp_path)
    m, s = h.create("pick0", small=True), h.create("backup", small=True)
    s.set_meta("replica", "on")
    m.create_account("acme", "DL")
    for name in ("inv", "cust"):
        m.create_file("acme", name, None, 7, "DL")
        m.create_file("acme", name, name, 7, "DL")
    yield m, s
    m.close()
    s.close()


def queued(m, after=0):
    return m.queue.read(after, limit=100_000)


def test_keys_conflict_per_file_and_per_account():
    inv, cust, acct = ("F", "acme", "inv"), ("F", "acme", "cust"), ("A", "acme")
    assert H.conflicts(inv, inv) and not H.conflicts(inv, cust)
    assert H.conflicts(acct, inv) and H.conflicts(cust, acct)
    assert not H.conflicts(("F", "other", "inv"), inv)
    assert H.conflicts(H.ALL, inv) and not H.conflicts(None, inv)
    assert H.txn_key(Transaction(1, Kind.TEST)) is None
    assert H.txn_key(Transaction(1, Kind.WRITE, 5, "dm", "hb.log", "hb.log", b"x")) is None


def test_apply_off_holds_in_order_then_apply_held_applies_each_once(pair):
    m, s = pair
    f = m.file("acme", "inv")
    for i in range(30):
        f.write(f"k{i % 7}", f"v{i}")
    txns = queued(m)
    h = SlaveOptions(s, "hb", apply=False)
    r = h.handle(txns[:20])
    assert r.outcomes[HELD] == 20 and r.stored == 20 and r.applied == 0
    r = h.handle(txns[15:])  # an overlap: the numbers already held are skipped, never held twice
    assert r.skipped == 5 and r.stored == len(txns) and r.applied == 0
    assert H.held_count(s, "hb") == len(txns) == h.n_held
    assert A.last_stored(s, "hb") == len(txns) and A.last_applied(s, "hb") == 0
    assert not s.has_account("acme"), "apply updates off: the slave database is quiescent"
    assert H.apply_held(s, "hb", relog=False, auto_create=False) == len(txns)
    assert H.apply_held(s, "hb", relog=False, auto_create=False) == 0
    g = s.file("acme", "inv")
    assert {g.read(f"k{k}") for k in range(7)} == {f"v{i}".encode() for i in range(23, 30)}
    assert A.last_applied(s, "hb") == len(txns)


def test_turning_apply_on_drains_while_new_batches_for_held_files_wait_their_turn(pair):
    m, s = pair
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    h = SlaveOptions(s, "hb")
    h.handle(queued(m))  # the account and files, applied
    h.apply_on = False
    last = queued(m)[-1].tno
    for i in range(10):
        inv.write("a", f"old{i}")
    first = queued(m, last)
    h.handle(first)
    assert h.n_held == 10
    h.apply_on = True
    last = first[-1].tno
    inv.write("a", "new")  # must not overtake the held writes of the same item
    cust.write("c", "live")  # another file: applied at once
    r = h.handle(queued(m, last))
    assert r.outcomes[HELD] == 1 and r.outcomes[A.APPLIED] == 1
    assert s.file("acme", "cust").read("c") == b"live"
    blocked: set = set()
    after = 0
    while True:
        n, nxt = h.drain(after, blocked)
        if nxt == after:
            break
        after = nxt
    assert s.file("acme", "inv").read("a") == b"new" and h.n_held == 0 and H.held_count(s, "hb") == 0
    assert A.last_applied(s, "hb") == A.last_stored(s, "hb") == queued(m)[-1].tno


def test_a_gap_rolls_the_whole_batch_back(pair):
    m, s = pair
    m.file("acme", "inv").write("a", "1")
    txns = queued(m)
    h = SlaveOptions(s, "hb", apply=False)
    with pytest.raises(GapError):
        h.handle([txns[0], txns[2]])
    assert H.held_count(s, "hb") == 0 and A.last_stored(s, "hb") == 0 and h.n_held == 0


def test_big_clear_becomes_a_job_and_the_file_is_held_until_it_is_done(pair):
    m, s = pair
    f = m.file("acme", "inv")
    with m.transaction():
        for i in range(50):
            f.write(f"k{i}", "x")
    h = SlaveOptions(s, "hb", relog=True, min_items=20)
    h.handle(queued(m))
    last = queued(m)[-1].tno
    f.clear()
    f.write("after", "survives")
    m.file("acme", "cust").write("c", "1")
    r = h.handle(queued(m, last))
    assert r.outcomes[HELPER] == 1 and r.outcomes[HELD] == 1 and r.outcomes[A.APPLIED] == 1
    jobs = J.pending(s, "hb")
    assert [(j.kind, j.relog) for j in jobs] == [(J.CLEAR, True)]
    assert r.applied == r.stored - 2, "applied stops below the first held transaction"  # held: the write after the clear
    assert s.file("acme", "inv").count() == 50, "the clear is the helper's work"
    # the helper, run here in-process, and a rerun after a 'crash' are both harmless
    s2 = Home(s.path.parent).open("backup")
    assert J.run(s2, jobs[0], chunk=7) == 50
    assert J.run(s2, jobs[0]) == 0 and J.pending(s2, "hb") == []
    s2.close()
    assert [t.kind for t in s.queue.read(0, 100_000)][-2:] == [Kind.WRITE, Kind.CLEAR], "the clear is re-queued when done"
    h.job_done(jobs[0].tno)
    n, _ = h.drain(0, set())
    assert n == 1 and s.file("acme", "inv").read("after") == b"survives" and s.file("acme", "inv").count() == 1


def test_apply_held_finishes_an_unfinished_job_first(pair):
    m, s = pair
    f = m.file("acme", "inv")
    with m.transaction():
        for i in range(30):
            f.write(f"k{i}", "x")
    h = SlaveOptions(s, "hb", min_items=10)
    h.handle(queued(m))
    last = queued(m)[-1].tno
    f.clear()
    f.write("k1", "after")
    h.handle(queued(m, last))
    assert len(J.pending(s, "hb")) == 1 and H.held_count(s, "hb") == 1
    assert H.apply_held(s, "hb", relog=False, auto_create=False) == 1
    g = s.file("acme", "inv")
    assert list(g.ids()) == [b"k1"] and g.read("k1") == b"after"
    assert J.pending(s, "hb") == [] and A.last_applied(s, "hb") == A.last_stored(s, "hb")


def test_large_create_starts_at_101_with_a_resize_job(pair):
    m, s = pair
    m.create_file("acme", "big", None, 7, "DL")
    m.create_file("acme", "big", "big", 997, "DL")
    h = SlaveOptions(s, "hb")
    r = h.handle(queued(m))
    assert r.outcomes[A.APPLIED] >= 1
    big = s.find_file("acme", "big", "big")
    assert big is not None and big.modulo == 101
    job, = J.pending(s, "hb")
    assert (job.kind, job.modulo, job.fof) == (J.RESIZE, 997, big.fof)
    J.run(s, job)
    assert s.find_file("acme", "big", "big").modulo == 997


def test_held_transaction_for_a_missing_file_is_parked_when_applied(pair):
    m, s = pair
    m.file("acme", "inv").write("a", "1")
    txns = [t for t in queued(m) if t.kind is Kind.WRITE]
    h = SlaveOptions(s, "hb", apply=False)
    s.set_meta("x", "y")
    from d3hb.store import apply as store_apply
    store_apply.record_applied(s, "hb", txns[0].tno - 1)
    h.handle(txns)
    assert H.apply_held(s, "hb", relog=False, auto_create=False) == 1
    assert P.parked_count(s, "hb") == 1 and H.held_count(s, "hb") == 0


def test_a_slave_with_other_fof_numbers_updates_the_right_file_and_says_so(pair):
    m, s = pair
    s.create_account("local", "D", log=False)
    s.create_file("local", "pad", None, 7, "D", log=False)  # shifts this slave's numbering
    h = SlaveOptions(s, "hb", auto_create=False)
    txns = queued(m)
    h.handle(txns)
    last = txns[-1].tno
    m.file("acme", "inv").write("a", "1")
    m.file("acme", "inv").write("b", "2")
    h.handle(queued(m, last))
    assert s.file("acme", "inv").read("a") == b"1"
    assert s.find_file("acme", "inv", "inv").fof != m.find_file("acme", "inv", "inv").fof
    _, _, named = h.take_events()
    fof, here = m.find_file("acme", "inv", "inv").fof, s.find_file("acme", "inv", "inv").fof
    assert named == [f"acme,inv is FOF {fof} on the master but FOF {here} here: its updates are matched by name"]
