"""D-pointer codes and set-dptr's combination rules."""

from __future__ import annotations

import pytest

from d3hb.errors import UsageError
from d3hb.store import dptr


@pytest.mark.parametrize("text, code", [("d", "D"), ("dl", "DL"), ("DXY", "DXY"), ("dyx", "DXY"), ("dtp", "DTP")])
def test_parse_normalises(text, code):
    assert dptr.parse(text) == code


@pytest.mark.parametrize("text", ["L", "", "DZ", "DLX", "DYL", "DLT", "DNU"])
def test_parse_refuses(text):
    with pytest.raises(UsageError):
        dptr.parse(text)


@pytest.mark.parametrize(
    "code, spec, new",
    [
        ("D", "+l", "DL"), ("DL", "-l", "D"), ("D", "+x", "DX"), ("DX", "-x", "D"), ("D", "+xy", "DXY"),
        ("DX", "-x+l", "DL"),  # removal happens first, so the x no longer blocks l
        ("DN", "+u", "DU"), ("DU", "+n", "DN"), ("DL", "+p", "DLP"), ("D", "+t", "DT"), ("DL", "-lx", "D"),
    ],
)
def test_apply_change(code, spec, new):
    assert dptr.apply_change(code, dptr.parse_change(spec)) == new


@pytest.mark.parametrize("code, spec", [("DX", "+l"), ("DY", "+l"), ("DT", "+l"), ("DL", "+x"), ("DL", "+y"), ("DL", "+t")])
def test_conflicts_leave_the_file_unaltered(code, spec):
    with pytest.raises(UsageError):
        dptr.apply_change(code, dptr.parse_change(spec))


@pytest.mark.parametrize("spec", ["+lx", "+ly", "+lt", "+nu", "+z", "+l1"])
def test_bad_change_specs(spec):
    with pytest.raises(UsageError):
        dptr.parse_change(spec)


def test_saved_flags():
    assert dptr.saved("DY") and not dptr.saved("DX")
    assert dptr.contents_saved("DL") and not dptr.contents_saved("DY")
