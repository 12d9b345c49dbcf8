"""Menu scripts: pass, mismatch (non-zero, names the line), missing menu, dry run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from menufake import FakeActions, factory_for

from d3hb.errors import Refused
from d3hb.menu.registry import Context, Request
from d3hb.ui import script
from d3hb.ui.script import ScriptError, parse

SCRIPTS = Path(__file__).resolve().parents[1] / "data" / "scripts"


def play(source, tmp_path: Path, fake: FakeActions | None = None, dry_run: bool = False) -> tuple[int, str, FakeActions]:
    fake = fake or FakeActions()
    out = io.StringIO()
    status = script.run(source, factory_for(tmp_path), fake.registry, dry_run=dry_run, out=out)
    return status, out.getvalue(), fake


def test_nightly_script_passes(tmp_path):
    status, out, fake = play(SCRIPTS / "nightly-dl-only.txt", tmp_path)
    assert status == 0, out
    assert fake.names() == ["hot-backup.list", "hot-backup.query", "hot-backup.log-dl-only"]
    last = fake.calls[-1]
    assert last.server == "hbs"
    assert "  run: hot-backup log-dl-only" in out
    assert out.endswith("nightly-dl-only.txt: done\n")


def test_network_save_passes(tmp_path):
    status, out, fake = play(SCRIPTS / "network-save.txt", tmp_path)
    assert status == 0, out
    assert [(c.name, dict(c.request.fields)) for c in fake.calls][-2:] == [
        ("tape-socket.startsend", {"name": "ssave"}), ("tape-socket.shutdown", {"name": "ssave"})]


def test_mismatch_stops_with_the_line(tmp_path):
    status, out, fake = play(SCRIPTS / "mismatch.txt", tmp_path)
    assert status == 1
    last = out.splitlines()[-1]
    assert last == f"{SCRIPTS / 'mismatch.txt'} line 3: expected output 'Reading network'; got: hot-backup.status done"
    assert "hot-backup.start" not in fake.names(), "nothing after the mismatch runs"


def test_missing_menu_names_the_line(tmp_path):
    status, out, fake = play(SCRIPTS / "missing-menu.txt", tmp_path)
    assert status == 2
    assert out.splitlines()[-1].startswith(f"{SCRIPTS / 'missing-menu.txt'} line 4: no menu 'tape-sockets'; menus are: ")
    assert fake.names() == ["hot-backup.list", "hot-backup.status"]


def test_dry_run_shows_what_would_run_and_runs_nothing(tmp_path):
    status, out, fake = play(SCRIPTS / "nightly-dl-only.txt", tmp_path, dry_run=True)
    assert status == 0, out
    assert fake.calls == []
    assert "  would run: hot-backup log-dl-only" in out
    assert "(dry run: line 5 not checked: expected output 'hot-backup.query'" in out
    assert out.endswith("done (dry run: nothing was run)\n")


def test_an_error_not_expected_fails_at_its_line(tmp_path):
    fake = FakeActions()
    fake.on("hot-backup.start", Refused("server 'hbs' is already running", "stop it first"))
    status, out, _ = play("choose 3\nchoose 1\n", tmp_path, fake)
    assert status == 1 and out.splitlines()[-1] == "script line 1: server 'hbs' is already running; stop it first"
    assert "hot-backup.status" not in fake.names()
    status, out, _ = play("choose 3\nexpect error already running\nchoose 1\n", tmp_path, fake)
    assert status == 0, out
    status, out, _ = play("choose 42\n", tmp_path)
    assert status == 1 and "script line 1: No option '42'" in out


def test_expect_ok_and_error_kinds(tmp_path):
    assert play("choose 1\nexpect ok\n", tmp_path)[0] == 0
    status, out, _ = play("choose 1\nexpect error\n", tmp_path)
    assert status == 1 and "line 2: expected an error; got: no error" in out
    assert play('choose 1\nexpect "ok"\n', tmp_path)[0] == 1, "quoted: the text ok, not the kind"


def test_answers_for_an_actions_own_questions_come_from_the_next_step(tmp_path):
    fake = FakeActions()
    asked = []

    def traceon(ctx: Context, req: Request) -> None:
        asked.append(ctx.confirm("Trace everything?"))
        asked.append(ctx.ask("level=", "how much"))

    fake.on("tape-socket.traceon", traceon)
    status, out, _ = play("menu tape-socket\nchoose 12\nno\nenter 3\nexpect ok\n", tmp_path, fake)
    assert status == 0, out
    assert asked == [False, "3"]
    assert "[3] no   (Trace everything?)" in out
    asked.clear()
    status, out, _ = play("menu tape-socket\nchoose 12\nchoose 13\n", tmp_path, fake)
    assert status == 1 and "line 2: the action asked 'Trace everything?' and the script gives no yes or no for it" in out


def test_a_step_out_of_place(tmp_path):
    status, out, _ = play("yes\n", tmp_path)
    assert status == 1 and out.splitlines()[-1] == "script line 1: 'yes' does not answer what the menu asks: 'Enter option:'"
    status, out, _ = play("back\nchoose 1\n", tmp_path)
    assert status == 1 and "line 2: 'choose 1' but the menu has ended" in out


def test_form_through_a_script(tmp_path):
    text = """
        menu setup-server
        choose New Server
        enter hbm
        enter M
        enter slavehost
        enter
        enter
        expect prompt "Check period"
        enter 5
        enter
        enter
        enter s3cret-code
        enter
        enter
        enter
        enter
        enter
        enter
        enter
        expect prompt "Y to save"
        enter y
        expect ok
    """
    status, out, fake = play(text, tmp_path)
    assert status == 0, out
    assert fake.calls[-1].request.args == ("hbm",), "hot-backup setup NAME ..."
    assert dict(fake.calls[-1].request.fields) == {"name": "hbm", "type": "M", "host": "slavehost", "port": "2000", "target": "pick0",
                                                   "protocol": "inet", "check": "5", "txlog": "1", "notify": "dm", "code": "s3cret-code"}  # fmt: skip
    assert "s3cret-code" not in out, "a transcript never shows a secret field"
    assert " code=******** " in out or out.rstrip().endswith("code=********") or "code=********\n" in out


@pytest.mark.parametrize(("text", "error"), [
    ("chose 1\n", "script line 1: unknown step 'chose'; steps are:"),
    ("menu\n", "script line 1: 'menu' needs a name"),
    ('expect "open\n', "script line 1: No closing quotation; close the quotes"),
    ("back now\n", "script line 1: 'back' takes nothing after it"),
    ("# fine\n\nexpect\n", "script line 3: 'expect' needs the text to expect"),
])  # fmt: skip
def test_script_syntax_errors(tmp_path, text, error):
    with pytest.raises(ScriptError) as err:
        parse(text)
    assert str(err.value).startswith(error)
    status, out, fake = play(text, tmp_path)
    assert status == 2 and out.startswith(error) and fake.calls == []


def test_parse_steps():
    steps = parse("# c\nanswer yes\nexpect message Server 'x' selected\nexpect prompt \"a # b\"  # why\nenter s3cr#t # code\nenter\n")
    assert [(s.line, s.verb, s.kind, s.text) for s in steps] == [
        (2, "yes", "", ""), (3, "expect", "message", "Server x selected"), (4, "expect", "prompt", "a # b"), (5, "enter", "", "s3cr#t"),
        (6, "enter", "", "")]


def test_unreadable_script(tmp_path):
    status, out, _ = play(tmp_path / "nosuch.txt", tmp_path)
    assert status == 2 and out.startswith(f"cannot read script {tmp_path / 'nosuch.txt'}")
