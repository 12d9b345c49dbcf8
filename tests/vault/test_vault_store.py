"""Vault state on both sides: the source's volume history and code, the target's archive; block audit."""

from __future__ import annotations

import io
import time

import pytest

from d3hb.ops import saves
from d3hb.ops.vaultcheck import _check_blocks
from d3hb.protocol import tape
from d3hb.protocol import vault as vp
from d3hb.store import Home, System
from d3hb.store.vaultstore import ACTIVE, DELETED, PENDING, UNAVAILABLE, USABLE, Archive, ArchiveObject, Volume, VolumeHistory


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    return Home(tmp_path)


def vol(name: str, vset: str = "save-1", part: int = 1, status: str = PENDING) -> Volume:
    return Volume(name, "offsite", vset, part, "save", 1000.0 + part, 100 * part, f"d{part}", status, 0, "")


def test_volume_history_set_becomes_usable_at_once(home):
    s = home.create("pick0", small=True)
    h = VolumeHistory(s)
    h.add(vol("save-1.001"))
    h.add(vol("save-1.002", part=2))
    h.add(vol("save-2.001", vset="save-2"))
    assert {v.status for v in h.volumes("offsite", "save-1")} == {PENDING}
    h.complete_set("save-1")
    assert [(v.volume, v.status) for v in h.volumes("offsite")] == [("save-1.001", USABLE), ("save-2.001", PENDING), ("save-1.002", USABLE)]
    h.set_status(["save-1.002"], UNAVAILABLE)
    assert h.get("save-1.002").status == UNAVAILABLE
    h.delete(["save-2.001"])
    assert [v.volume for v in h.volumes()] == ["save-1.001", "save-1.002"]


def test_code_and_history_are_lost_by_a_full_restore(home, tmp_path):
    s = home.create("pick0", small=True)
    s.create_account("acme", "D")
    s.create_file("acme", "inv", None, 7, "D")
    s.create_file("acme", "inv", "inv", 7, "D")
    s.file("acme", "inv").write("k1", "v1")
    h = VolumeHistory(s)
    h.set_code("offsite", b"c" * 32)
    h.add(vol("save-1.001"))
    buf = io.BytesIO()
    saves.save(s, buf, keep_queue=True)
    s.close()
    saves.restore(home.system_path("pick0"), "pick0", io.BytesIO(buf.getvalue()))
    with System.open(home.system_path("pick0")) as r:
        h2 = VolumeHistory(r)
        assert h2.code("offsite") is None  # the TSM case forcesync=yes exists for
        assert h2.volumes() == []
        assert r.file("acme", "inv").read("k1") == b"v1"


def test_archive_nodes_and_purge_after_retention(home):
    s = home.create("vaulthost", small=True)
    with Archive(s.path) as a:
        a.register("pick0", vp.password_key("pick0", "pw"), 3600.0)
        a.register("nopolicy", vp.password_key("nopolicy", "pw"), None)
        assert a.node("pick0").archretain == 3600.0 and a.node("nopolicy").archretain is None
        assert a.node("ghost") is None
        a.set_code("pick0", b"k" * 32)
        assert a.node("pick0").code == b"k" * 32
        for name in ("v.001", "v.002"):
            p = a.path("pick0", name)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"data")
            a.add(ArchiveObject("pick0", name, "v", 1, "save", 1.0, 4, "x", ACTIVE, time.time()))
        t0 = 10_000.0
        assert a.mark("pick0", ["v.001"], DELETED, now=t0) == 1
        assert a.purge(now=t0 + 3599) == []  # retention not over: kept
        assert a.path("pick0", "v.001").exists()
        assert a.purge(now=t0 + 3600) == [("pick0", "v.001")]
        assert not a.path("pick0", "v.001").exists()
        assert [o.name for o in a.objects("pick0")] == ["v.002"]  # the active one is never purged
        assert a.mark("pick0", ["v.002"], ACTIVE) == 1 and a.object("pick0", "v.002").marked is None
        with pytest.raises(Exception, match="still has archive objects"):
            a.remove_node("pick0")


def test_archive_refuses_path_tricks(home):
    s = home.create("vaulthost", small=True)
    with Archive(s.path) as a, pytest.raises(Exception, match="illegal volume name"):
        a.path("pick0", "../../etc/passwd")


def _tape(n_items: int = 400) -> bytes:
    w = tape.TapeWriter(tape.Label("t-dump", "pick0", "h" * 32, 1.0, block_size=1024))
    out = bytearray(w.start())
    out += w.add(tape.File(30, "acme", "inv", "inv", "D", 7))
    for i in range(n_items):
        out += w.add(tape.Item(30, f"k{i}".encode(), b"v" * 50))
    out += w.finish()
    return bytes(out)


def test_block_check_finds_a_flipped_byte():
    data = _tape()
    blocks, damage = _check_blocks(data, 0, True)
    assert blocks > 10 and damage == []
    bad = bytearray(data)
    bad[5000] ^= 0x01
    blocks2, damage2 = _check_blocks(bytes(bad), 0, True)
    assert blocks2 == blocks and len(damage2) == 1 and "fails its checksum" in damage2[0]


def test_block_check_sees_a_cut_and_a_gap():
    data = _tape()
    _, damage = _check_blocks(data[:-10], 0, True)
    assert damage and "cut short" in damage[-1]
    _, damage = _check_blocks(data, 3, True)  # the history says the volume starts at block 3
    assert "where block 3 belongs" in damage[0]
