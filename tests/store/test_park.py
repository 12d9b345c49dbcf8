"""store.park: updates for files missing on a slave, parked in hb.log,<server>*<fof> and replayed."""

from __future__ import annotations

import pytest

from d3hb.store import Home, Kind, Transaction
from d3hb.store import apply as A
from d3hb.store import park as P


@pytest.fixture
def slave(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    s = Home(tmp_path).create("backup", small=True)
    s.set_meta("replica", "on")
    yield s
    s.close()


def w(tno: int, item: str, body: str, fof: int = 40, file: str = "inv") -> Transaction:
    return Transaction(tno, Kind.WRITE, fof, "acme", file, file, item.encode(), body.encode(), "DL", 7)


def test_missing_file_is_parked_in_its_section_with_modulo_31(slave):
    out = [P.apply_or_park(slave, "hb", t, relog=False, auto_create=False) for t in (w(1, "a", "1"), w(2, "b", "2"), w(3, "a", "3"))]
    assert [o.what for o in out] == [P.PARKED] * 3
    assert out[0].file == "hb.log,hb*40"
    sec = slave.find_file("dm", "hb.log", "hb*40")
    assert sec is not None and sec.modulo == 31
    assert P.parked_count(slave, "hb") == 3
    got = P.parked(slave, "hb")
    assert [(p.section, p.txn.tno, p.txn.item, p.txn.body) for p in got] == [
        ("hb.log,hb*40", 1, b"a", b"1"), ("hb.log,hb*40", 2, b"b", b"2"), ("hb.log,hb*40", 3, b"a", b"3")]
    # the section is listable like any file: the item shows kind, file and item before the encoded form
    body = slave.file("dm", "hb.log,hb*40").read(b"000000000001")
    assert body is not None and body.split(b"\xfe")[:3] == [b"write", b"acme,inv", b"a"]
    assert not slave.has_account("acme"), "auto-create off: nothing was created"


def test_replay_once_the_file_exists_applies_in_order_exactly_once(slave):
    for t in (w(1, "a", "1"), w(2, "b", "2"), w(3, "a", "3"), Transaction(4, Kind.DELETE, 40, "acme", "inv", "inv", b"b")):
        P.apply_or_park(slave, "hb", t, relog=False, auto_create=False)
    assert P.replay_parked(slave, "hb", relog=False, auto_create=False) == 0, "still missing: nothing replayed"
    assert P.parked_count(slave, "hb") == 4
    slave.create_account("acme", "DL", log=False, guard=False)
    slave.create_file("acme", "inv", None, 7, "DL", log=False, guard=False)
    slave.create_file("acme", "inv", "inv", 7, "DL", log=False, guard=False)
    # a later update for the same master file waits behind the parked ones, even though the file exists now
    assert P.apply_or_park(slave, "hb", w(5, "c", "5"), relog=False, auto_create=False).what == P.PARKED
    assert P.replay_parked(slave, "hb", relog=True, auto_create=False) == 5
    f = slave.file("acme", "inv")
    assert (f.read("a"), f.read("b"), f.read("c")) == (b"3", None, b"5")
    assert P.parked_count(slave, "hb") == 0 and P.sections(slave, "hb") == []
    assert not P.any_parked(slave, "hb")
    assert [t.kind for t in slave.queue.read(0)] == [Kind.WRITE, Kind.WRITE, Kind.WRITE, Kind.DELETE, Kind.WRITE], "relog re-queues each replayed update"
    assert P.replay_parked(slave, "hb", relog=False, auto_create=False) == 0, "a second replay finds nothing"
    # after the replay, updates apply directly again
    assert P.apply_or_park(slave, "hb", w(6, "d", "6"), relog=False, auto_create=False).what == A.APPLIED


def test_auto_create_on_creates_instead_of_parking(slave):
    o = P.apply_or_park(slave, "hb", w(1, "a", "1"), relog=False, auto_create=True)
    assert o.what == A.CREATED and P.parked_count(slave, "hb") == 0
    assert slave.file("acme", "inv").read("a") == b"1"


def test_replay_stops_a_section_at_the_first_update_still_missing(slave):
    P.apply_or_park(slave, "hb", w(1, "a", "1", fof=40, file="inv"), relog=False, auto_create=False)
    P.apply_or_park(slave, "hb", w(2, "x", "2", fof=41, file="cust"), relog=False, auto_create=False)
    slave.create_account("acme", "DL", log=False, guard=False)
    slave.create_file("acme", "cust", None, 7, "DL", log=False, guard=False)
    slave.create_file("acme", "cust", "cust", 7, "DL", log=False, guard=False)
    assert P.replay_parked(slave, "hb", relog=False, auto_create=False) == 1
    assert [p.section for p in P.parked(slave, "hb")] == ["hb.log,hb*40"]
    assert slave.file("acme", "cust").read("x") == b"2"


def test_sections_of_another_server_are_not_touched(slave):
    P.apply_or_park(slave, "hb", w(1, "a", "1"), relog=False, auto_create=False)
    P.apply_or_park(slave, "hbx", w(1, "a", "1"), relog=False, auto_create=False)
    assert P.parked_count(slave, "hb") == 1 and P.parked_count(slave, "hbx") == 1
    assert [f.data_name for f in P.sections(slave, "hb")] == ["hb*40"]


def test_create_file_of_a_data_section_whose_dictionary_is_missing(slave):
    t = Transaction(1, Kind.CREATE_FILE, 40, "shop", "orders", "orders", code="DL", modulo=11)
    assert P.apply_or_park(slave, "hb", t, relog=False, auto_create=False).what == P.PARKED, "auto-create off: parked, not lost"
    assert slave.find_file("shop", "orders", None) is None
    t2 = Transaction(1, Kind.CREATE_FILE, 41, "shop", "items", "items", code="DL", modulo=11)
    assert P.apply_or_park(slave, "hb", t2, relog=False, auto_create=True).what == A.APPLIED
    d, f = slave.find_file("shop", "items", None), slave.find_file("shop", "items", "items")
    assert d is not None and f is not None and (f.code, f.modulo, f.fof) == ("DL", 11, 41)
