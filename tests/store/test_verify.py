"""Verify digests and history judgements, without servers."""

from __future__ import annotations

import pytest

from d3hb.store import Home, Kind
from d3hb.store import apply as store_apply
from d3hb.store import history
from d3hb.store import verify as sv
from d3hb.store.history import Position


@pytest.fixture
def pair(tmp_path):
    h = Home(tmp_path)
    m, s = h.create("pick0", small=True), h.create("backup", small=True)
    for system in (m, s):
        system.create_account("acme", "DL")
        system.create_file("acme", "inv", None, 7, "DL")
        system.create_file("acme", "inv", "inv", 7, "DL")
        system.create_account("misc", "D")
        system.create_file("misc", "notes", None, 7, "D")  # not replicated: not verified
        system.create_file("misc", "notes", "notes", 7, "D")
    yield m, s
    m.close()
    s.close()


def _fill(system, n=50):
    f = system.file("acme", "inv")
    for i in range(n):
        f.write(f"k{i}", f"body {i}\xfeattr")


def _apply_marker(master, slave, tno):
    t = master.queue.get(tno)
    assert t is not None and t.kind is Kind.VERIFY
    with slave.transaction():
        out = store_apply.apply_transaction(slave, t)
    assert out.what == store_apply.SKIPPED


def test_marker_digests_agree_when_equal(pair):
    m, s = pair
    _fill(m)
    _fill(s)
    tno = sv.write_marker(m)
    _apply_marker(m, s, tno)
    mine, theirs = sv.load(m, tno), sv.load(s, tno)
    assert set(mine) == {"acme,inv", "acme,dict inv"}  # D files are not replicated, so not verified
    assert sv.compare(mine, theirs) == []


def test_changed_missing_and_extra_items_are_named(pair):
    m, s = pair
    _fill(m)
    _fill(s)
    fs = s.file("acme", "inv")
    s._put(fs.info, b"k7", b"tampered", log=False, guard=False)
    s._drop(fs.info, b"k8", log=False, guard=False)
    s._put(fs.info, b"zz", b"extra", log=False, guard=False)
    tno = sv.write_marker(m)
    _apply_marker(m, s, tno)
    diffs = sv.compare(sv.load(m, tno), sv.load(s, tno))
    got = {(d.file, d.item, d.what) for d in diffs}
    assert got == {("acme,inv", b"k7", "differs"), ("acme,inv", b"k8", "only on the master"), ("acme,inv", b"zz", "only on the slave")}


def test_digest_is_taken_at_the_marker_not_later(pair):
    m, s = pair
    _fill(m)
    _fill(s)
    tno = sv.write_marker(m)
    m.file("acme", "inv").write("k1", "after the marker")  # must not show in the master's digest
    _apply_marker(m, s, tno)
    assert sv.compare(sv.load(m, tno), sv.load(s, tno)) == []


def test_missing_file_on_slave(pair):
    m, s = pair
    m.create_file("acme", "cust", None, 7, "DL")
    m.create_file("acme", "cust", "cust", 7, "DL")
    tno = sv.write_marker(m)
    _apply_marker(m, s, tno)
    diffs = sv.compare(sv.load(m, tno), sv.load(s, tno))
    assert {d.line() for d in diffs} == {"acme,cust: file missing on the slave", "acme,dict cust: file missing on the slave"}


def test_not_reached_yet_is_none(pair):
    m, s = pair
    tno = sv.write_marker(m)
    assert sv.load(s, tno) is None


def test_prune_keeps_newest(pair):
    m, _ = pair
    marks = [sv.write_marker(m) for _ in range(4)]
    sv.prune(m, keep=2)
    assert sv.load(m, marks[0]) is None and sv.load(m, marks[-1]) is not None


H = "h" * 32


@pytest.mark.parametrize(
    ("peer", "ok", "first"),
    [
        (Position(H, 1, 100), True, 0),  # exactly the fork point
        (Position(H, 1, 90), True, 0),  # behind it: the new master's queue must have the rest
        (Position(H, 1, 105), False, 101),  # 101-105 never reached the new master
        (Position(H, 2, 150), True, 0),  # a follower of the new epoch
        (Position(H, 2, 250), False, 201),  # beyond what the master has
        (Position(H, 3, 10), False, 1),  # promoted after this master
        (Position("x" * 32, 1, 10), False, 1),  # another history
    ],
)
def test_judge(peer, ok, first):
    verdict = history.judge(Position(H, 2, 200), {1: 100}, peer)
    assert verdict.ok is ok and verdict.first == first
    if not ok:
        assert verdict.reason


def test_epoch_end_uses_later_forks():
    # Epoch 1 ended at 100, epoch 2 at 80 (a restore went back): a system of epoch 1 may keep only 80.
    assert history.epoch_end({1: 100, 2: 80}, 1) == 80
    assert history.epoch_end({1: 100}, 2) is None


def test_own_position_ignores_trailing_test_records(pair):
    m, _ = pair
    _fill(m, 3)
    last_data = m.queue.last_tno()
    m.enqueue(Kind.TEST, 0, "", "", None, body=b"tltest")
    sv.write_marker(m)
    pos = history.own_position(m)
    assert pos.last == last_data and m.queue.last_tno() == last_data + 2


def test_divergence_text_for_the_handshake(pair):
    m, _ = pair
    _fill(m, 5)
    history.record_fork(m, 1, 3)
    m.set_meta("epoch", "2")
    assert history.divergence(m, m.history_id, 1, 3) == ""
    text = history.divergence(m, m.history_id, 1, 4)
    assert text.startswith("resync required") and "holds transaction 4," in text
