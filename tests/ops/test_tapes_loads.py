"""t-dump / t-load, and transaction tapes loaded exactly once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from d3hb.errors import NotFound, Refused, TapeError
from d3hb.ops import saves
from d3hb.store import Home, digests

AM = "\xfe"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("D3HB_HOME", str(tmp_path / "home"))
    return Home(tmp_path / "home")


def _file(s, name: str, code: str = "D", n: int = 10):
    if not s.has_account("sales"):
        s.create_account("sales")
    s.create_file("sales", name, None, 3, code)
    s.create_file("sales", name, name, 11, code)
    f = s.file("sales", name)
    for i in range(n):
        f.write(str(i), f"v{i}{AM}{i}")
    return f


def _dump(s, ref: str, **kw) -> bytes:
    out = io.BytesIO()
    saves.t_dump(s, "sales", ref, out, **kw)
    return out.getvalue()


def test_t_dump_and_t_load_into_another_file_and_system(home: Home) -> None:
    a = home.open("pick0")
    src = _file(a, "cust", n=25)
    src.write("y" * 100, "long id")
    data = _dump(a, "cust")
    b = home.create("other")
    dst = _file(b, "clients", n=0)
    r = saves.t_load(b, "sales", "clients", io.BytesIO(data))
    assert r.items == 26 and r.label.kind == "t-dump"
    assert dst.digest() == src.digest()


def test_t_load_keeps_existing_items_unless_o(home: Home) -> None:
    a = home.open("pick0")
    _file(a, "cust", n=5)
    data = _dump(a, "cust")
    b = home.create("other")
    dst = _file(b, "cust", n=0)
    dst.write("1", "mine")
    r = saves.t_load(b, "sales", "cust", io.BytesIO(data))
    assert (r.items, r.skipped) == (4, 1) and dst.read("1") == b"mine"
    assert any("[223]" in n for n in r.notes)
    r = saves.t_load(b, "sales", "cust", io.BytesIO(data), overwrite=True)
    assert r.items == 5 and dst.read("1") == b"v1\xfe1"


def test_t_load_v_only_verifies(home: Home) -> None:
    a = home.open("pick0")
    _file(a, "cust", n=5)
    data = _dump(a, "cust")
    b = home.create("other")
    dst = _file(b, "cust", n=0)
    r = saves.t_load(b, "sales", "cust", io.BytesIO(data), verify_only=True)
    assert r.items == 5 and dst.count() == 0 and "verified" in r.notes[0]
    with pytest.raises(TapeError):
        saves.t_load(b, "sales", "cust", io.BytesIO(data[:-10]), verify_only=True)


def test_t_dump_of_some_items_and_a_truncated_t_load_changes_nothing(home: Home) -> None:
    a = home.open("pick0")
    _file(a, "cust", n=300)
    some = _dump(a, "cust", ids=["1", "2", "nosuch"])
    b = home.create("other")
    dst = _file(b, "cust", n=0)
    r = saves.t_load(b, "sales", "cust", io.BytesIO(some))
    assert r.items == 2
    before = dst.digest()
    whole = _dump(a, "cust")
    with pytest.raises(TapeError):
        saves.t_load(b, "sales", "cust", io.BytesIO(whole[: len(whole) - 100]), overwrite=True)
    assert dst.digest() == before and dst.count() == 2
    with pytest.raises(TapeError, match="t-dump"):
        out = io.BytesIO()
        saves.save(a, out, keep_queue=True)
        saves.t_load(b, "sales", "cust", io.BytesIO(out.getvalue()))


def _txn_tape(s, **kw) -> bytes:
    out = io.BytesIO()
    saves.txn_dump(s, out, **kw)
    return out.getvalue()


def _pair(home: Home):
    a = home.open("pick0")
    _file(a, "inv", "DL", n=5)
    out = io.BytesIO()
    saves.save(a, out)  # clears the queue: the slave starts from here
    saves.restore(home.system_path("b"), "b", io.BytesIO(out.getvalue()))
    return a, home.open("b")


def test_a_transaction_tape_loaded_twice_applies_nothing_twice(home: Home) -> None:
    a, b = _pair(home)
    inv = a.file("sales", "inv")
    for i in range(10):
        inv.write(f"n{i}", f"new {i}")
    inv.delete("0")
    a.create_file("sales", "fresh", None, 3, "DL")
    a.create_file("sales", "fresh", "fresh", 3, "DL")
    a.file("sales", "fresh").write("k", "v")
    tape1 = _txn_tape(a)
    r = saves.txn_load(b, io.BytesIO(tape1))
    assert r.txns == a.queue.state().depth and r.skipped == 0
    assert digests(b) == digests(a)
    again = saves.txn_load(b, io.BytesIO(tape1))
    assert again.txns == 0 and again.skipped == r.txns
    assert digests(b) == digests(a)
    # A later tape overlapping the first applies only what is new.
    inv.write("n0", "changed")
    tape2 = _txn_tape(a)
    r2 = saves.txn_load(b, io.BytesIO(tape2))
    assert (r2.txns, r2.skipped) == (1, r.txns)
    assert digests(b) == digests(a)
    row = b.q("SELECT tno FROM applied WHERE server=?", (f"tape:{a.history_id}",)).fetchone()
    assert row[0] == a.queue.last_tno()


def test_a_gap_before_the_tape_is_refused(home: Home) -> None:
    a, b = _pair(home)
    inv = a.file("sales", "inv")
    first = inv.write("1", "a")
    inv.write("2", "b")
    late = _txn_tape(a, first=first + 1)
    with pytest.raises(Refused, match="missing"):
        saves.txn_load(b, io.BytesIO(late))
    assert b.file("sales", "inv").read("2") == b"v2\xfe2"  # nothing applied


def test_a_hot_backup_row_of_the_same_history_moves_with_the_tape(home: Home) -> None:
    a = home.open("pick0")
    _file(a, "inv", "DL", n=2)
    out = io.BytesIO()
    saves.save(a, out)
    saves.restore(home.system_path("b"), "b", io.BytesIO(out.getvalue()), servers=["hbslave"])
    b = home.open("b")
    last = a.file("sales", "inv").write("x", "y")
    saves.txn_load(b, io.BytesIO(_txn_tape(a)))
    assert b.q("SELECT tno FROM applied WHERE server='hbslave'").fetchone()[0] == last


def test_a_system_without_a_starting_point_refuses_a_transaction_tape(home: Home) -> None:
    a = home.open("pick0")
    _file(a, "inv", "DL", n=2)
    b = home.create("stranger")
    with pytest.raises(Refused, match="restore a full save"):
        saves.txn_load(b, io.BytesIO(_txn_tape(a)))


def test_txn_load_v_verifies_and_a_truncated_tape_applies_nothing(home: Home) -> None:
    a, b = _pair(home)
    for i in range(200):
        a.file("sales", "inv").write(f"t{i}", "x" * 100)
    data = _txn_tape(a)
    before = digests(b)
    assert saves.txn_load(b, io.BytesIO(data), verify_only=True).txns == 200
    assert digests(b) == before
    with pytest.raises(TapeError):
        saves.txn_load(b, io.BytesIO(data[: len(data) // 2]))
    assert digests(b) == before
    with pytest.raises(NotFound):
        _txn_tape(a, first=1)  # cleared by the save
