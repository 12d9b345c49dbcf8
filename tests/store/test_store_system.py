"""Systems: creation with the dm account and its control files, FOF numbering, the system verbs."""

from __future__ import annotations

from pathlib import Path

import pytest

from d3hb.errors import AlreadyExists, NotFound, Refused, UsageError
from d3hb.menu.registry import Context, Request, load_actions
from d3hb.store import DEFAULT_SYSTEM, Home, System
from d3hb.store.control import CONTROL_FILES


def test_new_system_has_dm_and_its_control_files(tmp_path: Path):
    with System.create(tmp_path / "s") as s:
        assert [a.name for a in s.accounts()] == ["dm"]
        files = s.files()
        assert (files[0].fof, files[0].dict_name, files[0].code) == (1, "file-of-files", "DX")
        assert (files[1].fof, files[1].dict_name) == (2, "mds")
        assert {f.dict_name for f in files} == {n for n, _ in CONTROL_FILES}
        fofs = [f.fof for f in files]
        assert fofs == list(range(1, len(fofs) + 1))
        with pytest.raises(Refused):
            s.set_code(files[0], "D")
        with pytest.raises(Refused):
            s.delete_file(files[1])
        with pytest.raises(Refused):
            s.delete_account("dm")


def test_fof_numbers_sequential_and_never_reused(tmp_path: Path):
    with System.create(tmp_path / "s", small=True) as s:
        d = s.create_file("dm", "a", None, 7)
        data = s.create_file("dm", "a", "a", 31)
        assert data.fof == d.fof + 1
        s.delete_file(data)
        again = s.create_file("dm", "a", "a", 31)
        assert again.fof == data.fof + 1


def test_file_levels_and_dictionary_rules(tmp_path: Path):
    with System.create(tmp_path / "s", small=True) as s:
        with pytest.raises(NotFound):
            s.create_file("dm", "inv", "inv", 7)  # a data section needs its dictionary
        s.create_file("dm", "inv", None, 7)
        s.create_file("dm", "inv", "inv", 31)
        s.create_file("dm", "inv", "2026", 13)
        assert s.file_info("dm", "inv,2026").modulo == 13
        assert s.file_info("dm", "dict inv").data_name is None
        with pytest.raises(AlreadyExists):
            s.create_file("dm", "inv", "2026", 13)
        with pytest.raises(Refused):
            s.delete_file(s.file_info("dm", "dict inv"))
        with pytest.raises(UsageError):
            s.create_file("dm", "bad,name", None, 7)
        with pytest.raises(UsageError):
            s.create_file("dm", "x", None, 0)


def test_accounts_pass_their_flags_to_new_files(tmp_path: Path):
    with System.create(tmp_path / "s", small=True) as s:
        s.create_account("sales", "DL")
        assert s.create_file("sales", "inv", None, 7).code == "DL"
        s.create_account("scratch", "DX")
        assert s.create_file("scratch", "tmp", None, 7).code == "DX"
        with pytest.raises(AlreadyExists):
            s.create_account("sales")
        with pytest.raises(NotFound):
            s.account("nobody")


def _ctx(home: Path, lines: list[str], yes: bool = False) -> Context:
    return Context(home=home, out=lines.append, confirm=lambda q: yes)


def test_system_verbs(tmp_path: Path):
    reg = load_actions()
    home = tmp_path / "home"
    out: list[str] = []
    reg.run("system.list", _ctx(home, out))
    assert "No systems" in out[-1]
    reg.run("system.create", _ctx(home, out), Request(("vm1",)))
    with pytest.raises(AlreadyExists):
        reg.run("system.create", _ctx(home, out), Request(("vm1",)))
    out.clear()
    reg.run("system.list", _ctx(home, out))
    assert any(line.startswith("vm1 ") for line in out)
    out.clear()
    reg.run("system.show", _ctx(home, out), Request(("vm1",)))
    assert any("file-of-files" in line and "DX" in line for line in out)
    with pytest.raises(UsageError):
        reg.run("system.delete", _ctx(home, out), Request(("vm1",)))  # not confirmed
    assert Home(home).exists("vm1")
    reg.run("system.delete", _ctx(home, out, yes=True), Request(("vm1",)))
    assert not Home(home).exists("vm1")
    with pytest.raises(NotFound):
        reg.run("system.show", _ctx(home, out), Request(("vm1",)))
    with pytest.raises(UsageError):
        reg.run("system.create", _ctx(home, out), Request(("bad name",)))


def test_default_system_created_on_first_use(tmp_path: Path):
    home = Home(tmp_path / "home")
    assert not home.exists(DEFAULT_SYSTEM)
    home.open(DEFAULT_SYSTEM).close()
    assert home.names() == [DEFAULT_SYSTEM]
    with pytest.raises(NotFound):
        home.open("other")
