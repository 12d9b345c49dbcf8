"""Line mode on plain text streams: ``1. Status`` ... ``Enter option:``, no cursor addressing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from menufake import FakeActions, factory_for

from d3hb.errors import NotFound
from d3hb.menu.registry import Context, Request
from d3hb.ui import line


def play(text: str, tmp_path: Path, fake: FakeActions | None = None, menu: str = "hot-backup", server: str | None = None) -> tuple[int, str, FakeActions]:
    fake = fake or FakeActions()
    out = io.StringIO()
    status = line.run(menu, factory_for(tmp_path), fake.registry, io.StringIO(text), out, server=server)
    return status, out.getvalue(), fake


def test_menu_is_printed_as_lines_then_the_prompt(tmp_path):
    status, out, _ = play("x\n", tmp_path)
    assert status == 0
    lines = out.splitlines()
    assert lines[1].startswith("Hot Backup Main Menu") and lines[1].endswith("Server: hbs") and len(lines[1]) == 79
    assert lines[2:12] == [" 1. Status", " 2. Query Server", " 3. Start Server", " 4. Stop Server", " 5. Show Server",
                           " 6. Show statistics", " 7. Display queue", " 8. Transaction log menu", " 9. Special Operations", " X. Exit"]  # fmt: skip
    assert lines[12] == "Enter option: "
    assert "\x1b" not in out, "no cursor addressing, no colour"


def test_an_action_prints_its_output_and_only_the_prompt_comes_back(tmp_path):
    status, out, fake = play("2\n\nx\n", tmp_path)
    assert "Enter option: hot-backup.query done\nEnter option: \n" in out, out
    assert out.count(" 1. Status") == 2, "the menu again only for the empty line"
    assert fake.names() == ["hot-backup.list", "hot-backup.query"]


def test_end_of_input_leaves_quietly(tmp_path):
    status, out, _ = play("9\n", tmp_path)
    assert status == 0 and out.endswith("Enter option: \n")


def test_bad_input_is_a_message(tmp_path):
    _, out, fake = play("42\n", tmp_path)
    assert "*** No option '42' in Hot Backup Main Menu; enter 1 to 9, ? for help, or X to exit\nEnter option: " in out
    assert fake.names() == ["hot-backup.list"]


def test_confirmation_and_form_prompts(tmp_path):
    _, out, fake = play("4\nn\n9\n1\n1\nhbm\nq\n", tmp_path)
    assert "Stop server 'hbs'? Updates stay queued on the master until it is started again. (Y/N) Stop Server: not done" in out
    assert "\nSetup Server\nServer Name: Server Type: *** Server Type: 'q' is not one of M, S; type one of M, S\nServer Type: " in out
    assert "hot-backup.stop" not in fake.names()


def test_form_review_is_printed_numbered(tmp_path):
    _, out, _ = play("9\n1\n2\n" + "\n" * 20, tmp_path)
    assert "  1. Server Type........ S\n" in out and "     Protocol........... inet\n" in out


def test_actions_questions_are_asked_on_the_stream(tmp_path):
    fake = FakeActions()
    answers = []

    def stop(ctx: Context, req: Request) -> None:
        answers.append(ctx.confirm("Really?"))
        answers.append(ctx.ask("pipe=", "the pipe's path"))
        ctx.progress(5, 10, "blocks")

    fake.on("tape-socket.stop", stop)
    _, out, _ = play("10\ny\n", tmp_path, fake, menu="tape-socket")
    assert answers == [True, None], "the menu's own confirmation answers the action's; EOF quits the ask"
    fake.calls.clear()
    answers.clear()
    fake.on("tape-socket.traceon", stop)
    _, out, _ = play("12\nmaybe\ny\n?\n/tmp/p\n", tmp_path, fake, menu="tape-socket")
    assert answers == [True, "/tmp/p"]
    assert "Really? (Y/N) Really? (Y/N) pipe= the pipe's path\npipe= " in out
    assert "  5 of 10 blocks (50%)" in out


def test_preselected_server_and_missing_menu(tmp_path):
    _, out, fake = play("3\n", tmp_path, menu="tape-socket", server="ssave")
    assert "Server: ssave" in out and fake.calls[-1].request.fields == {"name": "ssave"}
    with pytest.raises(NotFound, match="no menu 'nosuch'"):
        play("", tmp_path, menu="nosuch")


def test_execute_turns_failures_into_results(tmp_path):
    fake = FakeActions()
    fake.on("hot-backup.start", lambda ctx, req: 1 / 0)
    from d3hb.menu.model import RunAction

    run = RunAction(1, "hot-backup.start", Request(("hbs",)), "Start Server", "run", "hbs")
    result = line.execute(fake.registry, factory_for(tmp_path)("hbs"), run)
    assert result.status == 1 and result.kind == "InternalError"
    assert result.error.startswith("Start Server: internal error (ZeroDivisionError: division by zero)")
    run = RunAction(2, "hot-backup.nosuch", Request(), "x", "run", None)
    result = line.execute(fake.registry, factory_for(tmp_path)(None), run)
    assert result.status == 2 and result.kind == "UsageError" and "unknown command" in result.error
