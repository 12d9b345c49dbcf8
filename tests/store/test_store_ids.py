"""Item-id validation and the display form of marks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from d3hb.errors import UsageError
from d3hb.store import System
from d3hb.store.marks import check_id, from_lines, to_caret, to_lines


def test_100_characters_ok_101_refused():
    assert check_id("a" * 100) == b"a" * 100
    with pytest.raises(UsageError, match="at most 100"):
        check_id("a" * 101)


@pytest.mark.parametrize("byte, name", [(255, "segment mark"), (254, "attribute mark"), (253, "value mark"),
                                        (252, "subvalue mark"), (251, "start-buffer mark"), (247, "byte 247")])
def test_marks_and_high_bytes_refused(byte, name):
    with pytest.raises(UsageError, match=name):
        check_id(b"ab" + bytes([byte]))


def test_byte_246_ok_and_empty_refused():
    assert check_id(bytes([246])) == b"\xf6"
    with pytest.raises(UsageError, match="empty"):
        check_id(b"")


def test_refused_id_leaves_the_file_untouched(tmp_path: Path):
    with System.create(tmp_path / "s", small=True) as s:
        s.create_file("dm", "f", None, 1)
        s.create_file("dm", "f", "f", 3)
        f = s.file("dm", "f")
        f.write("ok", "x")
        before = s.queue.last_tno()
        for bad in (b"", b"x" * 101, b"a\xfeb", b"\xf7"):
            with pytest.raises(UsageError):
                f.write(bad, "y")
        assert list(f.ids()) == [b"ok"] and s.queue.last_tno() == before


def test_lines_form():
    body = b"abc\xfex\xfdy\xfcz\xfe\xfe10"
    assert to_lines(body) == [b"abc", b"x]y\\z", b"", b"10"]
    assert from_lines(b"abc\nx]y\\z\n\n10\n") == body
    assert to_caret(body) == b"abc^x]y\\z^^10"


bodies = st.lists(
    st.lists(st.lists(st.binary(max_size=5).filter(lambda b: not set(b) & set(b"\n\r]\\\xfc\xfd\xfe")), min_size=1, max_size=3)
             .map(lambda svs: b"\xfc".join(svs)), min_size=1, max_size=3).map(lambda vs: b"\xfd".join(vs)),
    min_size=1, max_size=4,
).map(lambda attrs: b"\xfe".join(attrs))


@given(bodies)
def test_lines_round_trip(body):
    assert from_lines(b"\n".join(to_lines(body)) + b"\n") == body
