"""TCL verbs on items: write/read round trip, ct, copy, delete, list/sort/count, msg."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from d3hb.errors import NotFound, UsageError
from d3hb.store import messages

sys.path.insert(0, str(Path(__file__).parent))
from test_tcl_files import Tcl  # noqa: E402  the same driver


@pytest.fixture
def tcl(tmp_path: Path) -> Tcl:
    t = Tcl(tmp_path / "home")
    t("create-file", "inv")
    return t


def test_write_read_round_trip(tcl):
    body = "abc\nx]y\\z\n\n10\n".encode()
    tcl("write", "inv", "1", stdin=body)
    with tcl.system() as s:
        assert s.file("dm", "inv").read("1") == b"abc\xfex\xfdy\xfcz\xfe\xfe10"
    tcl("read", "inv", "1")
    assert tcl.stdout.getvalue() == body


def test_caret_form_and_raw(tcl):
    tcl("write", "inv", "2", "(c", stdin=b"a^b]c^\n")
    tcl("read", "inv", "2")
    assert tcl.stdout.getvalue() == b"a\nb]c\n\n"
    raw = b"line1\nstill attribute one\xfe\xfd]literal"
    tcl("write", "inv", "3", stdin=raw, raw=True)
    tcl("read", "inv", "3", raw=True)
    assert tcl.stdout.getvalue() == raw


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r]\\", blacklist_categories=("Cs",)), max_size=8), min_size=1, max_size=4))
def test_utf8_text_round_trips(tcl, attrs):
    text = "".join(a + "\n" for a in attrs).encode()
    tcl("write", "inv", "u", stdin=text)
    tcl("read", "inv", "u")
    expected = text if any(attrs) or len(attrs) > 1 else b""
    assert tcl.stdout.getvalue() == expected


def test_read_missing_and_bad_ids(tcl):
    with pytest.raises(NotFound):
        tcl("read", "inv", "nope")
    with pytest.raises(UsageError, match="too long"):
        tcl("write", "inv", "x" * 101, "a")
    with pytest.raises(NotFound):
        tcl("write", "nofile", "1", "a")


def test_ct(tcl):
    tcl("write", "inv", "7", "abc", "x]y")
    assert tcl("ct", "inv", "7", "8") == 1
    assert tcl.lines == ["", "    7", "001 abc", "002 x]y", "[202] '8' not on file."]


def test_copy_and_delete(tcl):
    tcl("create-file", "archive")
    tcl("write", "inv", "1", "a")
    tcl("write", "inv", "2", "b")
    assert tcl("copy", "inv", "1", "2", "to:", "archive") == 0
    assert tcl.lines[-1] == "[ 2 items copied ]"
    assert tcl("copy", "inv", "1", "to=archive") == 1  # exists, no (o
    tcl("write", "inv", "1", "new")
    tcl("copy", "inv", "1", "to:", "archive", "1b", "(o")
    tcl("copy", "inv", "2", "to:", "archive", "(od")
    with tcl.system() as s:
        a, i = s.file("dm", "archive"), s.file("dm", "inv")
        assert (a.read("1"), a.read("1b"), a.read("2")) == (b"a", b"new", b"b")
        assert i.read("2") is None
    with pytest.raises(UsageError, match="target"):
        tcl("copy", "inv", "1")
    with pytest.raises(UsageError, match="'z'"):
        tcl("copy", "inv", "1", "to:", "archive", "(z")
    assert tcl("delete", "archive", "1", "zz") == 1
    tcl("delete", "archive", "*")
    with tcl.system() as s:
        assert s.file("dm", "archive").count() == 0


def test_list_sort_count(tcl):
    for iid, a1, a2 in [("3", "x", "20"), ("1", "y", "5"), ("10", "x", "100"), ("b", "z", "7")]:
        tcl("write", "inv", iid, a1, a2)
    tcl("list", "inv")
    ids = [line.split()[0] for line in tcl.lines[2:-1]]
    with tcl.system() as s:
        assert ids == [i.decode() for i in s.file("dm", "inv").ids()]  # group order
    tcl("sort", "inv")
    assert [line.split()[0] for line in tcl.lines[2:-1]] == ["1", "10", "3", "b"]
    tcl("list", "inv", "with", "a1", "=", "x", "by", "a2", "a2")
    assert [line.split() for line in tcl.lines[2:]] == [["3", "20"], ["10", "100"], ["[405]", "2", "items", "listed."]]
    tcl("sort", "inv", "with", "a2", ">", "10", "or", "with", "a1", "=", "z", "by-dsnd", "a2")
    assert [line.split()[0] for line in tcl.lines[2:-1]] == ["10", "3", "b"]
    tcl("count", "inv", "with", "a1", "#", "x")
    assert tcl.lines == ["[407] 2 items counted."]
    tcl("count", "inv", "with", "a1", "=", "[x", "and", "with", "a2", "<", "50")
    assert tcl.lines == ["[407] 1 item counted."]
    tcl("list", "inv", "with", "a9")
    assert tcl.lines == ["[401] No items present."]
    tcl("write", "dict", "inv", "amount", "A", "2")
    tcl("list", "inv", "with", "amount", "=", "5", "amount")
    assert tcl.lines[2].split() == ["1", "5"]
    with pytest.raises(UsageError, match="unknown attribute"):
        tcl("list", "inv", "by", "nosuch")


def test_msg(tcl):
    tcl("msg", "dm", "hello", "there")
    tcl("msg", "!0", "console")
    with tcl.system() as s:
        assert messages.read(s.path, "dm")[-1].endswith("hello there")
        assert messages.read(s.path, "!0")[-1].endswith("console")
    with pytest.raises(UsageError):
        tcl("msg", "dm")
    with pytest.raises(UsageError):
        tcl("msg", "a b", "x")
