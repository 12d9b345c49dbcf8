"""Hostile menu files and scripts: only one-line D3hbErrors, never another exception.

Menu files are the shipped ones with one of them damaged (bytes flipped,
cut short, lines dropped or duplicated, random text spliced in); scripts
are real scripts damaged the same way, or made of random script words.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d3hb.errors import D3hbError
from d3hb.menu import loader
from d3hb.ui import script

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "menu"))
from menufake import FakeActions, factory_for  # noqa: E402

MENUS = Path(__file__).resolve().parents[2] / "menus"
SCRIPTS = Path(__file__).resolve().parents[1] / "data" / "scripts"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MENU_FILES = sorted(p.name for p in MENUS.glob("*.toml"))
SCRIPT_TEXTS = [p.read_text() for p in sorted(SCRIPTS.glob("*.txt"))]
WORDS = ["menu", "choose", "expect", "output", "prompt", "ok", "error", "yes", "no", "back", "server", "type", "enter",
         "hot-backup", "tape-socket", "Query Server", "2", "99", "\"", "#", "\\", "\xfe", "=", "  ", "\t"]


def _damage(data: bytes, how: int, where: int, junk: bytes) -> bytes:
    if not data:
        return junk
    i = where % len(data)
    lines = data.splitlines(keepends=True)
    j = where % max(1, len(lines))
    if how == 0:
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    if how == 1:
        return data[:i]
    if how == 2:
        return b"".join(lines[:j] + lines[j + 1:])
    if how == 3:
        return b"".join(lines[:j] + [lines[j]] * 2 + lines[j + 1:]) if lines else data
    return data[:i] + junk + data[i:]


def _one_line(exc: D3hbError) -> None:
    text = str(exc)
    assert text and "\n" not in text.strip() and "Traceback" not in text, text


damage = st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=40))


@FUZZ
@given(name=st.sampled_from(MENU_FILES), how=damage)
def test_damaged_menu_files_give_one_line_errors(tmp_path_factory, name, how):
    d = tmp_path_factory.mktemp("menus")
    for p in MENUS.glob("*.toml"):
        shutil.copy(p, d / p.name)
    (d / name).write_bytes(_damage((MENUS / name).read_bytes(), *how))
    try:
        menus = loader.load_menus([d])
    except D3hbError as exc:
        _one_line(exc)
    else:
        assert menus is not None


@FUZZ
@given(text=st.text(min_size=0, max_size=400))
def test_random_text_as_a_menu_file(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("menus")
    (d / "random.toml").write_text(text, encoding="utf-8")
    try:
        loader.load_menus([d])
    except D3hbError as exc:
        _one_line(exc)


def _play(text: str, tmp_path: Path) -> tuple[int, str]:
    out = io.StringIO()
    status = script.run(text, factory_for(tmp_path), FakeActions().registry, dry_run=False, out=out)
    return status, out.getvalue()


@FUZZ
@given(base=st.sampled_from(SCRIPT_TEXTS), how=damage)
def test_damaged_scripts_fail_with_a_status_not_an_exception(tmp_path_factory, base, how):
    text = _damage(base.encode(), *how).decode("utf-8", errors="replace")
    try:
        script.parse(text)
    except D3hbError as exc:
        _one_line(exc)
    status, out = _play(text + "\n", tmp_path_factory.mktemp("home"))
    assert status in (0, 1, 2), status
    assert "Traceback" not in out


@FUZZ
@given(lines=st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=5).map(" ".join), min_size=1, max_size=12))
def test_scripts_of_random_words(tmp_path_factory, lines):
    text = "\n".join(lines) + "\n"
    try:
        script.parse(text)
    except D3hbError as exc:
        _one_line(exc)
    status, out = _play(text, tmp_path_factory.mktemp("home"))
    assert status in (0, 1, 2) and "Traceback" not in out
