"""The transaction log queue: numbering that survives restarts and purges, explicit clears."""

from __future__ import annotations

from pathlib import Path

import pytest

from d3hb.errors import Refused
from d3hb.store import System
from d3hb.store.txn import Kind


def _open_with_dl(path: Path) -> System:
    s = System.create(path, small=True)
    s.create_file("dm", "inv", None, 1, "DL")
    s.create_file("dm", "inv", "inv", 7, "DL")
    return s


def test_numbering_continues_across_restarts(tmp_path: Path):
    path = tmp_path / "s"
    s = _open_with_dl(path)
    f = s.file("dm", "inv")
    first = [f.write(str(i), "x") for i in range(5)]
    assert first == list(range(first[0], first[0] + 5))
    s.close()
    with System.open(path) as s2:
        assert s2.file("dm", "inv").write("again", "y") == first[-1] + 1
        assert s2.queue.last_tno() == first[-1] + 1


def test_purged_numbers_are_never_reused(tmp_path: Path):
    path = tmp_path / "s"
    with _open_with_dl(path) as s:
        f = s.file("dm", "inv")
        last = [f.write(str(i), "x") for i in range(3)][-1]
        s.queue.add_cursor("hbm", acked=0)
        assert s.queue.ack("hbm", last) >= 3
        assert s.queue.state().depth == 0
    with System.open(path) as s:
        assert s.file("dm", "inv").write("new", "z") == last + 1
        assert [t.tno for t in s.queue.read(0)] == [last + 1]


def test_queue_kept_until_every_master_acknowledges(tmp_path: Path):
    with _open_with_dl(tmp_path / "s") as s:
        q = s.queue
        q.add_cursor("a")
        q.add_cursor("b")
        f = s.file("dm", "inv")
        t1, t2 = f.write("1", "x"), f.write("2", "x")
        q.ack("a", t2)
        assert [t.tno for t in q.read(0)] == [t1, t2]
        q.ack("b", t1)
        assert [t.tno for t in q.read(0)] == [t2]
        q.ack("a", t1)  # an older ack never moves a cursor back
        assert q.cursor("a") == t2


def test_clear_is_explicit_and_logged(tmp_path: Path):
    with _open_with_dl(tmp_path / "s") as s:
        f = s.file("dm", "inv")
        last = [f.write(str(i), "x") for i in range(4)][-1]
        assert s.queue.clear("test") >= 4
        assert s.queue.state().depth == 0
        errors = s.file("dm", "errors")
        logged = [b for _, b in errors.items()]
        assert any(b"queue cleared" in b and b"test" in b for b in logged)
        assert f.write("after", "y") == last + 1


def test_set_next(tmp_path: Path):
    with _open_with_dl(tmp_path / "s") as s:
        f = s.file("dm", "inv")
        t = f.write("1", "x")
        with pytest.raises(Refused):
            s.queue.set_next(t)
        s.queue.set_next(1000)
        assert f.write("2", "x") == 1000


def test_queue_records_carry_the_update(tmp_path: Path):
    with _open_with_dl(tmp_path / "s") as s:
        f = s.file("dm", "inv")
        t = f.write("k", b"a\xfeb")
        rec = s.queue.get(t)
        assert (rec.kind, rec.fof, rec.item, rec.body, rec.code) == (Kind.WRITE, f.info.fof, b"k", b"a\xfeb", "DL")
        d = f.delete("k")
        assert s.queue.get(d).kind == Kind.DELETE
        assert f.delete("k") is False
