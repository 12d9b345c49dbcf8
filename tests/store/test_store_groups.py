"""Groups: a stable hash modulo the modulo; unsorted lists in group order; resize regroups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from d3hb.store import System
from d3hb.store.hashing import group


@pytest.fixture
def f(tmp_path: Path):
    s = System.create(tmp_path / "s", small=True)
    s.create_file("dm", "inv", None, 1)
    s.create_file("dm", "inv", "inv", 7)
    yield s.file("dm", "inv")
    s.close()


def test_numeric_ids_hash_to_their_value():
    assert [group(str(i).encode(), 7) for i in range(10)] == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]


def test_hash_is_stable_across_processes():
    ids = [b"alpha", b"beta", b"x" * 100]
    here = [group(i, 101) for i in ids]
    code = "from d3hb.store.hashing import group; print([group(i, 101) for i in (b'alpha', b'beta', b'x'*100)])"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=Path(__file__).parents[2]).stdout
    assert there.strip() == str(here)


def test_unsorted_list_follows_groups(f):
    ids = [b"zeta", b"10", b"3", b"alpha", b"7", b"beta", b"22"]
    for i in ids:
        f.write(i, b"body " + i)
    listed = list(f.ids())
    assert sorted(listed) == sorted(ids)
    groups = [group(i, 7) for i in listed]
    assert groups == sorted(groups)
    # inside a group, the order items entered it
    for g in set(groups):
        members = [i for i in listed if group(i, 7) == g]
        assert members == [i for i in ids if group(i, 7) == g]


@pytest.mark.parametrize("batch", [None, 3])
def test_resize_regroups_and_keeps_contents(f, batch):
    for n in range(40):
        f.write(str(n * 3), f"v{n}")
    f.write("name", "x")
    digest = f.digest()
    info = f.system.resize(f.info, 13, batch=batch)
    assert info.modulo == 13 and f.system.file_info("dm", "inv").modulo == 13
    f2 = f.system.file("dm", "inv")
    assert all(g == group(i, 13) for g, i in f2.groups())
    gs = [g for g, _ in f2.groups()]
    assert gs == sorted(gs) and max(gs) > 6
    assert f2.digest() == digest and f2.count() == 41
