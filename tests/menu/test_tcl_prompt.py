"""The ':' prompt: runs TCL lines, prints failures as one line and goes on."""

from __future__ import annotations

import io
from pathlib import Path

from d3hb.menu.registry import Context, load_actions
from d3hb.store import Home
from d3hb.ui.tclprompt import run


def _session(tmp_path: Path, text: str) -> tuple[int, str]:
    out = io.StringIO()
    ctx = Context(home=tmp_path / "home")
    status = run(ctx, load_actions(), io.StringIO(text), out)
    return status, out.getvalue()


def test_commands_errors_and_off(tmp_path: Path):
    status, out = _session(tmp_path, "\n".join([
        "create-file inv",
        "nosuch verb",
        'write inv 1 "two words" b]c',
        "ct inv 1",
        "create-file x (q",
        'msg dm "unclosed',
        "off",
        "count inv",  # after off: never run
    ]) + "\n")
    lines = out.splitlines()
    assert lines[0].startswith(":[417] File 'dict inv' created")
    errors = [line for line in lines if "d3hb: " in line]
    assert len(errors) == 3
    assert "unknown command 'tcl.nosuch'" in errors[0]
    assert "unknown option 'q' for create-file" in errors[1]
    assert "close the quotes" in errors[2]
    assert "001 two words" in lines and "002 b]c" in lines
    assert "items counted" not in out
    assert status == 2  # the last failure's status


def test_write_body_lines_and_eof(tmp_path: Path):
    status, out = _session(tmp_path, "create-file inv\nwrite inv 9\nfirst\nx]y\n.\nread inv 9\n")
    assert status == 0
    assert out.endswith(":first\nx]y\n:\n")  # read shows the body; end of input ends the session
    with Home(tmp_path / "home").open("pick0") as s:
        assert s.file("dm", "inv").read("9") == b"first\xfex\xfdy"


def test_empty_lines_and_quit(tmp_path: Path):
    status, out = _session(tmp_path, "\n   \nQUIT\n")
    assert status == 0 and out == ":::"
