"""The list/sort/count selection language, parsed and evaluated without a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from d3hb.errors import UsageError
from d3hb.ops import query
from d3hb.ops.query import Condition
from d3hb.store import System


def test_parse():
    q = query.parse(["inv", "1", "2", "with", "a1", "=", "x", "and", "with", "no", "a3", "or", "with", "a2", "gt", "5",
                     "by-dsnd", "a2", "by", "a0", "a1", "a4"])
    assert q.file_ref == "inv" and q.ids == (b"1", b"2")
    assert q.where == ((Condition(1, "eq", b"x"), Condition(3, "any", b"", True)), (Condition(2, "gt", b"5"),))
    assert q.by == ((2, True), (0, False)) and q.columns == (1, 4)
    assert query.parse(["dict", "inv"]).file_ref == "dict inv"
    assert query.parse(["inv", "with", "price", ">", "3"], dictionary={"PRICE": 4}).where[0][0].attr == 4


@pytest.mark.parametrize("words", [[], ["inv", "with"], ["inv", "with", "a1", "="], ["inv", "by", "x"], ["inv", "by", "a1", "junk"]])
def test_parse_errors(words):
    with pytest.raises(UsageError):
        query.parse(words)


@pytest.mark.parametrize("value, op, want, result", [
    (b"10", "gt", b"9", True),  # numbers compare as numbers
    (b"10", "gt", b"9x", False),  # else as bytes
    (b"abc", "eq", b"ab]", True), (b"abc", "eq", b"[bc", True), (b"abc", "eq", b"[b]", True), (b"abc", "eq", b"b]", False),
    (b"", "le", b"a", True),
])
def test_compare(value, op, want, result):
    assert query.holds(Condition(1, op, want), b"id", value) is result


def test_multivalues_any_and_ne():
    body = b"a\xfdb\xfcc"
    assert query.holds(Condition(1, "eq", b"c"), b"i", body)
    assert not query.holds(Condition(1, "ne", b"b"), b"i", body)  # some value is b
    assert query.holds(Condition(0, "eq", b"i"), b"i", body)


def test_run_over_a_file(tmp_path: Path):
    with System.create(tmp_path / "s", small=True) as s:
        s.create_file("dm", "f", None, 1)
        s.create_file("dm", "f", "f", 5)
        f = s.file("dm", "f")
        for i in range(20):
            f.write(str(i), f"{i % 3}\xfe{i}")
        q = query.parse(["f", "with", "a1", "=", "0", "by-dsnd", "a2", "a2"], sort=True)
        assert [r.values for r in query.run(f, q)] == [(str(i).encode(),) for i in (18, 15, 12, 9, 6, 3, 0)]
        assert query.count(f, query.parse(["f", "with", "a2", ">=", "10"])) == 10
        assert [r.id for r in query.run(f, query.parse(["f", "5", "99", "1"], sort=True))] == [b"1", b"5"]
