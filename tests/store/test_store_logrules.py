"""D3's eight logging rules as a table, and the same rules seen through real writes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from d3hb.errors import UsageError
from d3hb.store import System, dptr
from d3hb.store.logrules import decide

# (global, local, file code, is_dptr, dptr code, log_all) -> (logged, rule)
TABLE = [
    (False, True, "DL", False, "", False, False, 1),
    (False, False, "DL", True, "DL", True, False, 1),
    (True, False, "DL", False, "", True, False, 2),
    (True, True, "DX", False, "", True, False, 3),
    (True, True, "DY", False, "", True, False, 3),
    (True, True, "DX", True, "DL", True, False, 3),  # rule 3 looks at the holder, before rule 6
    (True, True, "DT", False, "", True, False, 4),
    (True, True, "DT", True, "DL", False, False, 4),
    (True, True, "D", True, "DL", False, True, 6),  # a DL pointer in a plain MD is logged
    (True, True, "DL", True, "D", False, False, 8),  # a D pointer in a DL MD is not (rule 6, not 7)
    (True, True, "DL", True, "D", True, True, 8),
    (True, True, "DL", False, "", False, True, 7),
    (True, True, "DLP", False, "", False, True, 7),
    (True, True, "D", False, "", False, False, 8),
    (True, True, "D", False, "", True, True, 8),
    (True, True, "DP", True, "DX", True, True, 8),
]


@pytest.mark.parametrize("g, l, code, is_dptr, dcode, log_all, logged, rule", TABLE)
def test_rule_table(g, l, code, is_dptr, dcode, log_all, logged, rule):
    d = decide(global_on=g, local_on=l, file_code=code, is_dptr=is_dptr, dptr_code=dcode, log_all=log_all)
    assert (d.log, d.rule) == (logged, rule)
    assert bool(d) is logged


CODES = ["D", "DL", "DX", "DY", "DT", "DXY", "DLP", "DS"]


def _expected(g, l, code, is_dptr, dcode, log_all):
    flags = set(code[1:])
    if not g:
        return False, 1
    if not l:
        return False, 2
    if "X" in flags or "Y" in flags:
        return False, 3
    if "T" in flags:
        return False, 4
    if is_dptr and "L" in dcode[1:]:
        return True, 6
    if not is_dptr and "L" in flags:
        return True, 7
    return log_all, 8


def test_every_combination():
    n = 0
    for g, l, code, is_dptr, dcode, log_all in itertools.product(
        (True, False), (True, False), CODES, (False, True), ("D", "DL", "DX"), (False, True)
    ):
        d = decide(global_on=g, local_on=l, file_code=code, is_dptr=is_dptr, dptr_code=dcode, log_all=log_all)
        assert (d.log, d.rule) == _expected(g, l, code, is_dptr, dcode, log_all), (g, l, code, is_dptr, dcode, log_all)
        n += 1
    assert n == 2 * 2 * len(CODES) * 2 * 3 * 2


@pytest.mark.parametrize("code", ["DLX", "DLY", "DXL", "DLT", "DNU"])
def test_invalid_codes_refused(code):
    with pytest.raises(UsageError):
        dptr.parse(code)


@pytest.fixture
def system(tmp_path: Path):
    s = System.create(tmp_path / "pick0", small=True)
    s.create_account("acct", "D")
    yield s
    s.close()


def _queued(s: System) -> int:
    return s.queue.state().depth


@pytest.mark.parametrize(
    "code, log_all, logged",
    [("D", False, False), ("DL", False, True), ("DX", True, False), ("DY", True, False), ("DT", True, False),
     ("D", True, True), ("DL", True, True)],
)
def test_writes_follow_the_rules(system, code, log_all, logged):
    s = system
    s.set_meta("log_mode", "all" if log_all else "dl")
    s.create_file("acct", "f", None, 3, "D", log=False)
    s.create_file("acct", "f", "f", 7, code, log=False)
    before = _queued(s)
    tno = s.file("acct", "f").write("1", "x")
    assert (tno is not None) is logged
    assert _queued(s) - before == int(logged)


def test_global_and_local_switches(system):
    s = system
    s.create_file("acct", "f", None, 3, "D", log=False)
    s.create_file("acct", "f", "f", 7, "DL", log=False)
    f = s.file("acct", "f")
    s.set_meta("enqueuing", "off")
    assert f.write("1", "a") is None
    s.set_meta("enqueuing", "on")
    s.set_meta("logging", "off")
    assert f.write("2", "a") is None
    s.set_meta("logging", "on")
    s.local_logging = False
    assert f.write("3", "a") is None
    s.local_logging = True
    assert f.write("4", "a") is not None
    assert [t.item for t in s.queue.read(0) if t.kind.value == "W"] == [b"4"]


def test_dptr_updates_judged_by_their_own_code(system):
    s = system
    before = _queued(s)
    s.create_file("acct", "plain", None, 3, "D")  # plain pointer, DL-only mode: rule 8, not logged
    assert _queued(s) == before
    s.create_file("acct", "logged", None, 3, "DL")  # rule 6: the pointer's own L
    assert _queued(s) == before + 1
