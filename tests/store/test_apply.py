"""store.apply: one replicated transaction onto a slave system."""

from __future__ import annotations

import pytest

from d3hb.errors import NotFound, Refused
from d3hb.store import Home, Kind, Transaction
from d3hb.store import apply as A


@pytest.fixture
def pair(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    h = Home(tmp_path)
    m, s = h.create("pick0", small=True), h.create("backup", small=True)
    s.set_meta("replica", "on")
    yield m, s
    m.close()
    s.close()


def _queued(m):
    return m.queue.read(0, limit=10_000)


def test_master_updates_apply_and_match_by_fof_and_name(pair):
    m, s = pair
    m.create_account("acme", "DL")
    m.create_file("acme", "inv", None, 7, "DL")
    m.create_file("acme", "inv", "inv", 7, "DL")
    f = m.file("acme", "inv")
    f.write("1", "a\xfeb")
    f.write("2", "x")
    f.delete("2")
    outcomes = [A.apply_transaction(s, t) for t in _queued(m)]
    assert [o.what for o in outcomes] == [A.APPLIED] * 6
    assert all(not o.by_name for o in outcomes[1:])  # same FOF numbers on both sides
    assert s.file("acme", "inv").read("1") == b"a\xfeb"
    assert s.file("acme", "inv").read("2") is None
    assert s.file_info("acme", "inv").fof == m.file_info("acme", "inv").fof
    assert s.queue.state().depth == 0  # relog off: nothing re-queued


def test_names_win_over_a_fof_number_that_means_another_file(pair):
    m, s = pair
    for sysm in (m, s):
        sysm.create_account("acme", "DL")
    s.create_file("acme", "other", None, 7, "D", guard=False, log=False)  # shifts the slave's numbering
    for sysm in (m, s):
        sysm.create_file("acme", "inv", None, 7, "DL", log=False, guard=False)
        sysm.create_file("acme", "inv", "inv", 7, "DL", log=False, guard=False)
    assert m.file_info("acme", "inv").fof != s.file_info("acme", "inv").fof
    m.file("acme", "inv").write("k", "v")
    t = _queued(m)[-1]
    out = A.apply_transaction(s, t)
    assert out.by_name and out.file == "acme,inv"
    assert s.file("acme", "inv").read("k") == b"v"
    assert s.file("acme", "dict other").count() == 0


def test_missing_file_is_refused_or_auto_created(pair):
    m, s = pair
    t = Transaction(7, Kind.WRITE, 99, "acme", "inv", "inv", b"k", b"v", "DL", 7)
    with pytest.raises(NotFound, match="acme,inv"):
        A.apply_transaction(s, t)
    out = A.apply_transaction(s, t, auto_create=True)
    assert out.what == A.CREATED
    assert s.file("acme", "inv").read("k") == b"v"
    assert s.file_info("acme", "inv").fof == 99


def test_control_files_and_test_records_are_skipped(pair):
    _, s = pair
    before = s.file("dm", "hb.log").count()
    t = Transaction(1, Kind.WRITE, 5, "dm", "hb.log", "hb.log", b"evil", b"x", "D", 7)
    assert A.apply_transaction(s, t).what == A.SKIPPED
    assert A.apply_transaction(s, Transaction(2, Kind.TEST, body=b"tltest")).what == A.SKIPPED
    assert s.file("dm", "hb.log").count() == before


def test_relog_requeues_in_the_same_transaction(pair):
    m, s = pair
    m.create_account("acme", "DL")
    m.create_file("acme", "inv", None, 7, "DL")
    m.create_file("acme", "inv", "inv", 7, "DL")
    m.file("acme", "inv").write("k", "v")
    for t in _queued(m):
        A.apply_transaction(s, t, relog=True)
    kinds = [t.kind for t in _queued(s)]
    assert kinds == [Kind.CREATE_ACCOUNT, Kind.CREATE_FILE, Kind.CREATE_FILE, Kind.WRITE]


def test_apply_bypasses_the_slave_guard_but_local_writes_are_refused(pair):
    m, s = pair
    m.create_account("acme", "DL")
    m.create_file("acme", "inv", None, 7, "DL")
    m.create_file("acme", "inv", "inv", 7, "DL")
    for t in _queued(m):
        A.apply_transaction(s, t)
    with pytest.raises(Refused, match="hot-backup slave"):
        s.file("acme", "inv").write("local", "no")


def test_applied_number_and_history(pair):
    _, s = pair
    assert A.last_applied(s, "hb") == 0 and A.applied_history(s, "hb") is None
    A.record_applied(s, "hb", 5, "hist", 2)
    A.record_applied(s, "hb", 9)
    assert A.applied_history(s, "hb") == (9, "hist", 2)
    A.forget_applied(s, "hb")
    assert A.last_applied(s, "hb") == 0


def test_a_failed_apply_leaves_nothing_when_the_caller_rolls_back(pair):
    m, s = pair
    m.create_account("acme", "DL")
    with pytest.raises(NotFound):
        with s.transaction():
            A.apply_transaction(s, _queued(m)[0])
            A.record_applied(s, "hb", 1)
            A.apply_transaction(s, Transaction(2, Kind.WRITE, 50, "nope", "f", "f", b"k", b"v"))
    assert not s.has_account("acme") and A.last_applied(s, "hb") == 0
