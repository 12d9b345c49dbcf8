"""TCL verbs on accounts, files, D-pointers, logging switches and the queue."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from d3hb.errors import AlreadyExists, NotFound, Refused, UsageError
from d3hb.menu.registry import Context, load_actions, parse_words
from d3hb.store import Home

REG = load_actions()


@dataclass
class Tcl:
    home: Path
    account: str = "dm"
    lines: list[str] = field(default_factory=list)
    yes: bool = True

    def __call__(self, *words: str, stdin: bytes = b"", raw: bool = False) -> int:
        self.lines.clear()
        self.stdout = io.BytesIO()
        req = parse_words(list(words[1:]), fields=False)
        if raw:
            req = type(req)(req.args, {"raw": "yes"}, req.options)
        ctx = Context(home=self.home, account=self.account, out=self.lines.append, stdin=io.BytesIO(stdin),
                      stdout=self.stdout, confirm=lambda q: self.yes)
        return REG.run(f"tcl.{words[0]}", ctx, req)

    def system(self):
        return Home(self.home).open("pick0")


@pytest.fixture
def tcl(tmp_path: Path) -> Tcl:
    return Tcl(tmp_path / "home")


def test_create_file_both_levels_default_moduli(tcl):
    assert tcl("create-file", "invoices") == 0
    assert "dict invoices" in tcl.lines[0] and "modulo = 7" in tcl.lines[0]
    assert "'invoices'" in tcl.lines[1] and "modulo = 31" in tcl.lines[1]
    with tcl.system() as s:
        d, data = s.file_info("dm", "dict invoices"), s.file_info("dm", "invoices")
        assert data.fof == d.fof + 1 and (d.code, data.code) == ("D", "D")


def test_create_file_forms_and_options(tcl):
    tcl("create-file", "dict", "inv", "3", "(L")  # options are case-blind
    tcl("create-file", "data", "inv,2026", "11", "(l")
    tcl("create-file", "scratch", "1", "5", "(xy")
    with tcl.system() as s:
        assert (s.file_info("dm", "dict inv").modulo, s.file_info("dm", "dict inv").code) == (3, "DL")
        assert s.file_info("dm", "inv,2026").modulo == 11
        assert s.file_info("dm", "scratch").code == "DXY"
    with pytest.raises(UsageError, match="'z'"):
        tcl("create-file", "x", "(lz")
    with pytest.raises(UsageError, match="L with X"):
        tcl("create-file", "x", "(lx")
    with pytest.raises(UsageError, match="modulo"):
        tcl("create-file", "x", "seven")
    with pytest.raises(AlreadyExists):
        tcl("create-file", "data", "inv,2026")
    with pytest.raises(NotFound):
        tcl("create-file", "data", "nodict,x")
    with tcl.system() as s:
        assert s.find_file("dm", "x", None) is None  # nothing half-made


def test_unknown_account(tcl):
    tcl.account = "nobody"
    with pytest.raises(NotFound, match="nobody"):
        tcl("create-file", "x")


def test_delete_file_rules(tcl):
    tcl("create-file", "inv")
    tcl("create-file", "data", "inv,2026")
    with pytest.raises(Refused, match="data sections"):
        tcl("delete-file", "dict", "inv")
    tcl("delete-file", "inv,2026")
    with tcl.system() as s:
        assert s.find_file("dm", "inv", "2026") is None and s.find_file("dm", "inv", "inv")
    tcl("create-file", "data", "inv,2027")
    tcl("delete-file", "inv")  # a bare name: every data section, then the dictionary
    assert len(tcl.lines) == 3
    with tcl.system() as s:
        assert not [f for f in s.files("dm") if f.dict_name == "inv"]
    with pytest.raises(NotFound):
        tcl("delete-file", "inv")
    with pytest.raises(Refused):
        tcl("delete-file", "errors")


def test_clear_file(tcl):
    tcl("create-file", "inv")
    tcl("write", "inv", "1", "a")
    tcl("write", "dict", "inv", "a1", "A", "1")
    assert tcl("clear-file", "inv") == 0
    with tcl.system() as s:
        assert s.file("dm", "inv").count() == 0 and s.file("dm", "dict inv").count() == 1
    tcl("clear-file", "dict", "inv")
    with tcl.system() as s:
        assert s.file("dm", "dict inv").count() == 0


def test_accounts(tcl):
    tcl("create-account", "sales", "(l")
    tcl.account = "sales"
    tcl("create-file", "orders")
    with tcl.system() as s:
        assert s.account("sales").code == "DL" and s.file_info("sales", "orders").code == "DL"
    tcl.yes = False
    with pytest.raises(UsageError, match="not deleted"):
        tcl("delete-account", "sales")
    tcl.yes = True
    tcl("delete-account", "sales")
    with tcl.system() as s:
        assert not s.has_account("sales") and not s.files("sales")
    with pytest.raises(NotFound):
        tcl("delete-account", "sales")
    with pytest.raises(UsageError):
        tcl("create-account", "bad,name")


def test_set_dptr_display_levels_and_errors(tcl):
    tcl("create-file", "bp")
    tcl("create-file", "data", "bp,old")
    assert tcl("set-dptr", "bp") == 0
    assert [line.split()[0] for line in tcl.lines[2:]] == ["dm,dict", "dm,bp", "dm,bp,old"]
    tcl("set-dptr", "+l", "bp,bp")  # one level only
    assert tcl.lines[-1] == "1 file changed."
    with tcl.system() as s:
        assert [f.code for f in s.files("dm") if f.dict_name == "bp"] == ["D", "DL", "D"]
    tcl("set-dptr", "+x", "bp,old")
    status = tcl("set-dptr", "+l", "bp")  # bare name: dict and all data levels; the DX one is refused
    assert status == 1
    assert "1 file changed." in tcl.lines and tcl.lines[-1].startswith("error: dm,bp,old")
    with tcl.system() as s:
        assert [f.code for f in s.files("dm") if f.dict_name == "bp"] == ["DL", "DL", "DX"]
    tcl("set-dptr", "-l", "bp", "(q")
    assert tcl.lines == ["2 files changed."]
    with pytest.raises(UsageError, match="'w'"):
        tcl("set-dptr", "+l", "bp", "(w")
    assert tcl("set-dptr", "+l", "nosuch") == 1 and "nosuch" in tcl.lines[-1]


def test_set_dptr_accounts(tcl):
    tcl("create-account", "pa")
    tcl.account = "pa"
    tcl("create-file", "entity")
    tcl("set-dptr", "+l", "pa", "(a")
    assert tcl.lines[-1] == "3 files changed."
    with tcl.system() as s:
        assert s.account("pa").code == "DL"
        assert {f.code for f in s.files("pa")} == {"DL"}
        kinds = [t.kind.value for t in s.queue.read(0)]
        assert kinds.count("P") >= 1  # the account pointer's change is a logged D-pointer update


def test_file_of_files_stays_dx(tcl):
    assert tcl("set-dptr", "-x", "file-of-files") == 1
    assert "must stay DX" in tcl.lines[-1]


def _errors_log(tcl) -> list[bytes]:
    with tcl.system() as s:
        return [b for _, b in s.file("dm", "errors").items()]


def test_logging_and_enqueuing_switches_are_logged(tcl):
    tcl("create-file", "inv", "(l")
    tcl("stoplog")
    tcl("write", "inv", "1", "a")
    tcl("startlog")
    tcl("stop-enqueuing")
    tcl("write", "inv", "2", "a")
    tcl("start-enqueuing")
    tcl("write", "inv", "3", "a")
    with tcl.system() as s:
        assert [t.item for t in s.queue.read(0) if t.kind.value == "W"] == [b"3"]
    log = b"\n".join(_errors_log(tcl))
    for word in (b"transaction logging stopped", b"transaction logging started", b"enqueuing stopped", b"enqueuing started"):
        assert word in log


def test_tlqdisplay(tcl):
    tcl("create-file", "inv", "(l")
    tcl("write", "inv", "k1", "abc")
    tcl("tlqdisplay")
    assert tcl.lines[2].split() == ["TNo", "T", "FOF#", "Data"]
    assert tcl.lines[-1].split()[1:] == ["W", str(tcl.system().file_info("dm", "inv").fof), "inv", "k1"]
    tcl("tlqdisplay", "(d")
    assert tcl.lines[-1].endswith("inv k1 abc")
    tcl("tlqdisplay", "(m500")
    tcl("write", "inv", "k2", "x")
    with tcl.system() as s:
        assert s.queue.last_tno() == 500
    with pytest.raises(UsageError, match="'q'"):
        tcl("tlqdisplay", "(q")
    with pytest.raises(UsageError):
        tcl("tlqdisplay", "(m")


def test_tlqdisplay_m_refused_while_master_runs(tcl):
    with tcl.system() as s:
        (s.path / "hbm.pid").write_text(f"{os.getpid()}\n")
        last = s.queue.last_tno()
    with pytest.raises(Refused, match="hbm"):
        tcl("tlqdisplay", "(m900")
    with tcl.system() as s:
        assert s.queue.last_tno() == last
        (s.path / "hbm.pid").write_text("999999999\n")  # a dead server does not block
    tcl("tlqdisplay", "(m900")
