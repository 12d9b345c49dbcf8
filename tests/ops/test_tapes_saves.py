"""save / restore / account-save / account-restore on real tapes (files and byte streams)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from d3hb.errors import AlreadyExists, NotFound, Refused, TapeError
from d3hb.ops import saves
from d3hb.protocol import tape
from d3hb.store import Home, digests, dump
from d3hb.store.dump import OLD, RESTORING
from d3hb.store.system import DB_NAME

AM, VM, SVM = "\xfe", "\xfd", "\xfc"
CODES = ("D", "DL", "DX", "DY", "DT", "DF", "DP", "DN", "DU", "DS", "DQ", "DLF", "DXY")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("D3HB_HOME", str(tmp_path / "home"))
    return Home(tmp_path / "home")


def populate(s, n: int = 20) -> None:
    s.create_account("sales")
    for i, code in enumerate(CODES):
        name = f"f{i}"
        s.create_file("sales", name, None, 3, code)
        s.create_file("sales", name, name, 7 + i, code)
        f = s.file("sales", name)
        for k in range(n):
            f.write(f"{k}", f"name {k}{AM}a{VM}b{SVM}c{VM}{AM}{AM}{k * 7}")
        f.write("x" * 100, "hundred-character id")
    s.create_file("sales", "empty", None, 1)
    s.create_file("sales", "empty", "empty", 1)
    s.create_file("sales", "f1", "2026", 5, "DL")
    s.file("sales", "f1,2026").write("multi", AM.join(VM.join(SVM.join("abc") for _ in range(3)) for _ in range(4)))
    s.create_account("other", "DL")
    s.create_file("other", "o", None, 3)
    s.create_file("other", "o", "o", 3)
    s.file("other", "o").write("1", "one")


def save_bytes(s, **kw) -> bytes:
    out = io.BytesIO()
    saves.save(s, out, **kw)
    return out.getvalue()


def restore_bytes(home: Home, name: str, data: bytes, **kw) -> saves.Report:
    return saves.restore(home.system_path(name), name, io.BytesIO(data), **kw)


def test_save_restore_round_trip_keeps_every_saved_file(home: Home) -> None:
    a = home.open("pick0")
    populate(a)
    seen = []
    out = io.BytesIO()
    report = saves.save(a, out, progress=seen.append)
    assert seen and seen[-1].bytes == len(out.getvalue()) and seen[-1].total
    r = restore_bytes(home, "copy", out.getvalue())
    assert (r.accounts, r.files, r.items) == (report.accounts, report.files, report.items)
    b = home.open("copy")
    da, db = digests(a), digests(b)
    for f in a.files():
        if f.is_control:
            continue
        key = f.qualified
        if "X" in f.code:
            assert key not in db, key  # DX: not saved at all
            continue
        g = b.find_file(f.account, f.dict_name, f.data_name)
        assert g is not None and (g.fof, g.code, g.modulo) == (f.fof, f.code, f.modulo), key
        if "Y" in f.code:
            assert b.file_by_fof(g.fof) and b.q("SELECT count(*) FROM items WHERE fof=?", (g.fof,)).fetchone()[0] == 0
        else:
            assert da[key] == db[key], key
    assert b.file("sales", "f0").read("x" * 100) == b"hundred-character id"
    assert b.file("sales", "f1,2026").read("multi").count(VM.encode("latin-1")) == 8
    assert b.file("sales", "empty").count() == 0
    assert b.account("other").code == "DL"
    assert b.history_id == a.history_id and b.file_by_fof(1).code == "DX"
    assert "restored" in r.summary() or r.summary().startswith("restore:")


def test_renumbering_gives_sequential_fof_numbers_on_the_restored_system(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 2)
    a.delete_file(a.file_info("sales", "f0"))
    a.delete_file(a.file_info("sales", "dict f0"))
    assert a.file_by_fof(3) is not None and a.file_info("sales", "f1").fof > 3
    restore_bytes(home, "copy", save_bytes(a, renumber=True))
    b = home.open("copy")
    fofs = sorted(f.fof for f in b.files())
    assert fofs == list(range(1, len(fofs) + 1))  # no holes: 1, 2, 3, ...
    assert b.file_info("sales", "f1").fof < a.file_info("sales", "f1").fof
    assert digests(b)["sales,f1,2026"] == digests(a)["sales,f1,2026"]


def test_renumbering_is_refused_while_a_hot_backup_server_runs(home: Home) -> None:
    a = home.open("pick0")
    (a.path / "hbmaster.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(Refused, match="hbmaster"):
        save_bytes(a, renumber=True)
    (a.path / "hbmaster.pid").unlink()
    (a.path / "ts-default.pid").write_text(f"{os.getpid()}\n")  # a tape-socket server does not matter
    save_bytes(a, renumber=True)


def test_a_save_clears_the_queue_up_to_its_start_unless_h(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 3)
    assert a.queue.state().depth > 0
    save_bytes(a, keep_queue=True)
    kept = a.queue.state().depth
    assert kept > 0
    save_bytes(a)
    st = a.queue.state()
    assert st.depth == 0 and st.last >= kept
    assert a.file("sales", "f1").write("after", "x") == st.last + 1  # numbering continues


def test_a_save_refuses_to_clear_what_a_master_server_has_not_had_acknowledged(home: Home) -> None:
    a = home.open("pick0")
    a.queue.add_cursor("hbmaster")
    populate(a, 2)
    with pytest.raises(Refused, match="hbmaster"):
        save_bytes(a)
    assert a.queue.state().depth > 0
    save_bytes(a, keep_queue=True)  # (h: fine
    a.queue.ack("hbmaster", a.queue.last_tno())
    save_bytes(a)


def test_transactions_written_during_a_save_stay_queued(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 50)
    other = Home(home.path).open("pick0")
    out = io.BytesIO()
    wrote: list[int] = []

    def writer(_figures) -> None:
        if not wrote:
            wrote.append(other.file("sales", "f1").write("during", "the save"))

    report = saves.save(a, out, progress=writer)
    assert wrote and wrote[0] > report.label.start_tno
    assert [t.tno for t in a.queue.read(0)] == [wrote[0]]
    records = list(saves.iter_records(io.BytesIO(out.getvalue())))
    assert not any(isinstance(r, tape.Item) and r.item_id == b"during" for r in records)


def _live(home: Home) -> tuple[dict, str]:
    b = home.open("copy")
    try:
        return digests(b, include_control=True), b.history_id
    finally:
        b.close()


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "no trailer", "empty", "wrong kind"])
def test_a_bad_tape_leaves_the_live_system_untouched(home: Home, damage: str) -> None:
    a = home.open("pick0")
    populate(a, 30)
    data = save_bytes(a, block_size=4096)
    b = home.create("copy")
    b.create_account("precious")
    b.close()
    before = _live(home)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        pos = len(data) // 2
        data = data[:pos] + bytes([data[pos] ^ 0x40]) + data[pos + 1 :]
    elif damage == "no trailer":
        data = data[:-60]
    elif damage == "empty":
        data = b""
    else:
        out = io.BytesIO()
        saves.t_dump(a, "sales", "f2", out)
        data = out.getvalue()
    with pytest.raises(TapeError) as err:
        restore_bytes(home, "copy", data)
    if damage == "corrupt":
        assert "block" in str(err.value)
    assert _live(home) == before
    d = home.system_path("copy")
    assert not (d / RESTORING).exists() and not (d / OLD).exists()


def test_an_unknown_tape_version_is_refused(home: Home) -> None:
    a = home.open("pick0")
    data = bytearray(save_bytes(a))
    data[8:10] = (99).to_bytes(2, "big")
    with pytest.raises(TapeError, match="version 99"):
        restore_bytes(home, "copy", bytes(data))


def test_a_restore_is_refused_while_a_server_of_that_system_runs(home: Home) -> None:
    a = home.open("pick0")
    data = save_bytes(a)
    home.create("copy").close()
    (home.system_path("copy") / "ts-ssave.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(Refused, match="ts-ssave"):
        restore_bytes(home, "copy", data)
    (home.system_path("copy") / "ts-ssave.pid").write_text("999999999\n")  # stale: not running
    restore_bytes(home, "copy", data)


def test_a_crash_during_the_swap_is_finished_at_the_next_open(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    a = home.open("pick0")
    populate(a, 5)
    data = save_bytes(a)
    b = home.create("copy")
    b.create_account("old")
    b.close()
    real = os.replace
    calls = []

    def crash_after_first(src, dst):
        calls.append((src, dst))
        real(src, dst)
        if len(calls) == 1:
            raise KeyboardInterrupt("power cut between the two renames")

    monkeypatch.setattr(os, "replace", crash_after_first)
    monkeypatch.setattr(dump.Loader, "abort", lambda self: None)  # a dead process cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        restore_bytes(home, "copy", data)
    monkeypatch.undo()
    d = home.system_path("copy")
    assert not (d / DB_NAME).exists()  # the crash left no live database, only the marker
    c = home.open("copy")  # recover() finishes the swap
    assert c.has_account("sales") and not c.has_account("old")
    assert digests(c)["sales,f1"] == digests(a)["sales,f1"]


def test_restore_sets_the_starting_point_for_hot_backup(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 3)
    start = a.queue.last_tno()
    report = restore_bytes(home, "copy", save_bytes(a, keep_queue=True), servers=["hbslave"])
    assert report.label.start_tno == start
    b = home.open("copy")
    rows = dict(b.q("SELECT server, tno FROM applied").fetchall())
    assert rows == {"hbslave": start, f"tape:{a.history_id}": start}
    assert saves.restored_from(b)["start_tno"] == start
    assert b.queue.last_tno() == start
    assert saves.seed_applied(b, "later") == start
    assert saves.last_loaded(b, a.history_id) == start


def test_account_save_and_account_restore_into_a_live_system(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 5)
    out = io.BytesIO()
    rep = saves.save(a, out, accounts=["sales"], keep_queue=True)
    assert rep.label.kind == "account-save" and rep.accounts == 1
    b = home.open("copy") if home.exists("copy") else home.create("copy")
    b.create_account("mine")
    r = saves.account_restore(b, io.BytesIO(out.getvalue()), "sales")
    assert r.accounts == 1 and r.items > 0
    assert digests(b)["sales,f1,2026"] == digests(a)["sales,f1,2026"]
    assert b.has_account("mine")
    assert b.find_file("sales", "f2", "f2") is None  # f2 is DX
    with pytest.raises(AlreadyExists):
        saves.account_restore(b, io.BytesIO(out.getvalue()), "sales")
    r2 = saves.account_restore(b, io.BytesIO(out.getvalue()), "sales", new_name="sales2")
    assert r2.items == r.items and b.file("sales2", "f0").read("1") == a.file("sales", "f0").read("1")
    with pytest.raises(NotFound):
        saves.account_restore(b, io.BytesIO(out.getvalue()), "nosuch")


def test_a_truncated_account_restore_leaves_the_live_system_untouched(home: Home) -> None:
    a = home.open("pick0")
    populate(a, 30)
    data = save_bytes(a, keep_queue=True, block_size=1024)
    b = home.create("copy")
    before = digests(b, include_control=True)
    with pytest.raises(TapeError):
        saves.account_restore(b, io.BytesIO(data[: len(data) * 2 // 3]), "sales")
    assert not b.has_account("sales") and digests(b, include_control=True) == before


def test_an_exception_inside_the_swap_finishes_it_rather_than_losing_both(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    a = home.open("pick0")
    populate(a, 5)
    data = save_bytes(a)
    home.create("copy").close()
    real = os.replace
    calls = []

    def interrupted(src, dst):
        calls.append(src)
        real(src, dst)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        restore_bytes(home, "copy", data)
    monkeypatch.undo()
    d = home.system_path("copy")
    assert (d / DB_NAME).exists() and not (d / RESTORING).exists()
    assert home.open("copy").has_account("sales")
