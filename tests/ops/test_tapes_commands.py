"""The TCL tape verbs and the tape-socket commands, through the action registry."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import d3hb.menu.actions.tapesocket  # noqa: F401 — registers tape-socket.* and the tcl tape verbs
from d3hb.errors import NotFound, UsageError
from d3hb.menu.registry import REGISTRY, Context, parse_words
from d3hb.store import Home, digests


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    return tmp_path


def run(home: Path, command: str, *, system: str = "pick0", stdin: bytes = b"", answers: dict | None = None) -> tuple[int, list[str], bytes]:
    lines: list[str] = []
    out = io.BytesIO()
    group, verb, *rest = command.split()
    ctx = Context(home=home, system=system, account="sales", out=lines.append, stdin=io.BytesIO(stdin), stdout=out,
                  confirm=lambda q: True, ask=lambda prompt, help_text: (answers or {}).get(prompt))
    req = parse_words(rest, fields=group != "tcl")
    return REGISTRY.run(f"{group}.{verb}", ctx, req), lines, out.getvalue()


def test_set_device_save_and_restore_through_the_attached_device(home: Path) -> None:
    a = Home(home).open("pick0")
    a.create_account("sales")
    a.create_file("sales", "inv", None, 3)
    a.create_file("sales", "inv", "inv", 7)
    a.file("sales", "inv").write("1", "one")
    a.close()
    tape = home / "t1"
    code, lines, _ = run(home, f"tcl set-device 1 {tape} f")
    assert code == 0 and "Tape device 1 attached" in lines[0]
    code, lines, _ = run(home, "tcl set-device")
    assert any("attached" in ln and str(tape) in ln for ln in lines)
    code, lines, _ = run(home, "tcl save monthly (h")
    assert code == 0 and "monthly" in lines[0] and lines[-1].startswith("save:")
    Home(home).create("copy").close()
    run(home, f"tcl set-device 0 {tape} f", system="copy")
    code, lines, _ = run(home, "tcl restore", system="copy")
    assert code == 0 and lines[-1].startswith("restore:")
    b, a = Home(home).open("copy"), Home(home).open("pick0")
    assert digests(b) == digests(a)


def test_stdout_and_stdin_devices_carry_a_t_dump(home: Path) -> None:
    a = Home(home).open("pick0")
    a.create_account("sales")
    for ref in ("dict inv", "inv"):
        name = ref.split()[-1]
        a.create_file("sales", name, None if ref.startswith("dict") else name, 3)
    a.file("sales", "inv").write("1", "one")
    a.close()
    run(home, "tcl set-device 0 - -")
    code, lines, tape = run(home, "tcl t-dump inv")
    assert code == 0 and tape.startswith(b"D3HBTAPE")
    code, lines, _ = run(home, "tcl t-load inv (v", stdin=tape)
    assert any("verified" in ln for ln in lines)
    code, lines, _ = run(home, "tcl t-load inv", stdin=tape)
    assert any("[223]" in ln for ln in lines)


def test_tape_socket_setup_show_keywords_and_abbreviations(home: Path) -> None:
    code, lines, _ = run(home, f"tape-socket setup name=ssave role=output pipe={home}/p host=hostb port=3001 callrep=5")
    assert code == 0 and "port=3001" in lines[0]
    code, lines, _ = run(home, "tape-socket setarg name=. port=?", answers={"port=": "3002"})
    assert "port=3002" in lines[0] and "Server 'ssave'" in lines[0]
    code, lines, _ = run(home, "tape-socket show name=ssave")
    assert any("3002" in ln for ln in lines) and any("hostb" in ln for ln in lines)
    code, lines, _ = run(home, "tape-socket sta")
    assert any("ssave" in ln and "Stopped" in ln for ln in lines)
    code, lines, _ = run(home, "tape-socket lp")
    assert any("missing" in ln for ln in lines)
    code, lines, _ = run(home, "tape-socket vers")
    assert "tape format" in lines[0]
    code, lines, _ = run(home, "tape-socket tltest")
    assert code == 0 and "operational" in lines[0]
    run(home, "tape-socket tron name=ssave")
    assert (home / "pick0" / "ts-ssave.trace").exists()
    run(home, "tape-socket troff ssave")
    assert not (home / "pick0" / "ts-ssave.trace").exists()
    with pytest.raises(UsageError):
        run(home, "tape-socket setarg name=ssave port=?")  # the user quit
    with pytest.raises(UsageError):
        run(home, "tape-socket setup name=x role=sideways")
    with pytest.raises(NotFound):
        run(home, "tape-socket show name=nosuch")
    for short in ("ch", "dr", "lp", "q", "ss", "sr", "sta", "sto", "stopa", "tron", "troff", "vers"):
        assert f"tape-socket.{short}" in REGISTRY
