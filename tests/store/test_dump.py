"""Saves read a consistent snapshot; restores swap in whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from d3hb.store import Home, digests
from d3hb.store.dump import MARKER, OLD, RESTORING, Loader, recover, snapshot_records
from d3hb.store.records import File, Item
from d3hb.store.system import DB_NAME

AM, VM, SVM = "\xfe", "\xfd", "\xfc"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def _populate(s, n: int = 50) -> None:
    s.create_account("sales")
    for name, code in (("inv", "DL"), ("plain", "D"), ("scratch", "DX"), ("shape", "DY"), ("quiet", "DT")):
        s.create_file("sales", name, None, 7, code)
        s.create_file("sales", name, name, 13, code)
        f = s.file("sales", name)
        for i in range(n):
            f.write(f"{i}", f"name{i}{AM}a{VM}b{SVM}c{AM}{i * 7}")
    s.create_file("sales", "inv", "2026", 5, "DL")  # a second data section
    s.create_file("sales", "empty", None, 3, "D")
    s.create_file("sales", "empty", "empty", 3, "D")
    s.file("sales", "inv").write("x" * 100, "longest id")


def _restore(home: Home, source_system, target: str, **kw) -> None:
    src, records = snapshot_records(source_system, **kw)
    if not home.exists(target):
        home.create(target).close()
    loader = Loader(home.system_path(target), src, name=target)
    for rec in records:
        loader.add(rec)
    loader.commit()


def test_round_trip_keeps_every_saved_file_and_item(home: Home) -> None:
    a = home.open("pick0")
    _populate(a)
    _restore(home, a, "copy")
    b = home.open("copy")
    da, db = digests(a), digests(b)
    for key in ("sales,inv", "sales,dict inv", "sales,inv,2026", "sales,plain", "sales,quiet", "sales,empty"):
        assert da[key] == db[key], key
    assert b.file("sales", "inv").read("x" * 100) == b"longest id"
    # DX is not saved at all; DY keeps its structure but not its items.
    assert "sales,scratch" not in db
    assert b.file("sales", "shape").count() == 0
    assert b.file("sales", "shape").info.code == "DY"
    # FOF numbers and codes travel with the files.
    for f in a.files("sales"):
        if "X" in f.code:
            continue
        g = b.find_file("sales", f.dict_name, f.data_name)
        assert g is not None and (g.fof, g.code, g.modulo) == (f.fof, f.code, f.modulo)
    # The file-of-files exists again (FOF 1, DX) although a save never carries it.
    assert b.file_by_fof(1).code == "DX"


def test_restored_system_continues_the_source_history(home: Home) -> None:
    a = home.open("pick0")
    _populate(a, 5)
    start = a.queue.last_tno()
    _restore(home, a, "copy")
    b = home.open("copy")
    assert b.history_id == a.history_id
    assert b.queue.last_tno() == start
    assert b.file("sales", "inv").write("new", "z") == start + 1
    assert not b.log_all


def test_snapshot_is_consistent_while_a_writer_goes_on(home: Home) -> None:
    a = home.open("pick0")
    _populate(a, 20)
    before = a.file("sales", "plain").count()
    src, records = snapshot_records(a)
    writer = Home(home.path).open("pick0")
    for i in range(100, 130):
        writer.file("sales", "plain").write(str(i), "later")  # commits while the snapshot is open
    saved = [r for r in records if isinstance(r, Item) and r.fof == a.file_info("sales", "plain").fof]
    assert len(saved) == before
    assert a.file("sales", "plain").count() == before + 30


def test_renumbering_makes_fof_numbers_sequential(home: Home) -> None:
    a = home.open("pick0")
    _populate(a, 1)
    a.delete_file(a.file_info("sales", "plain"))  # leaves a hole in the numbering
    _, records = snapshot_records(a, renumber=True)
    fofs = [r.fof for r in records if isinstance(r, File)]
    assert fofs == [2] + list(range(3, 3 + len(fofs) - 1))


def test_an_aborted_load_leaves_the_live_system_untouched(home: Home) -> None:
    a = home.open("pick0")
    _populate(a, 10)
    target = home.create("copy")
    target.create_account("keep")
    before = digests(target)
    target.close()
    src, records = snapshot_records(a)
    loader = Loader(home.system_path("copy"), src, name="copy")
    for i, rec in enumerate(records):
        if i == 20:
            break  # the tape ended here
        loader.add(rec)
    loader.abort()
    b = home.open("copy")
    assert digests(b) == before and b.has_account("keep")
    assert not (home.system_path("copy") / RESTORING).exists()


@pytest.mark.parametrize("stage", ["loaded", "marked", "old-moved", "new-moved"])
def test_a_crash_at_any_swap_step_is_finished_at_next_open(home: Home, stage: str) -> None:
    """Replay each step of swap() by hand, stop there, and reopen."""
    a = home.open("pick0")
    _populate(a, 10)
    target = home.create("copy")
    target.create_account("old")
    target.close()
    d = home.system_path("copy")
    src, records = snapshot_records(a)
    loader = Loader(d, src, name="copy")
    for rec in records:
        loader.add(rec)
    # commit() without its final swap: build the file, then stop at a step.
    import d3hb.store.dump as dump

    real_swap = dump.swap
    dump.swap = lambda _dir: None
    try:
        loader.commit()
    finally:
        dump.swap = real_swap
    expect_new = stage != "loaded"
    if stage != "loaded":
        (d / MARKER).write_text("swap\n")
    if stage in ("old-moved", "new-moved"):
        os.replace(d / DB_NAME, d / OLD)
    if stage == "new-moved":
        os.replace(d / RESTORING, d / DB_NAME)
    b = home.open("copy")  # runs recover()
    assert b.has_account("sales") is expect_new
    assert b.has_account("old") is not expect_new
    assert not (d / MARKER).exists() and not (d / OLD).exists() and not (d / RESTORING).exists()
    recover(d)  # idempotent
