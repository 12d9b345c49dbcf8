"""The urwid console: screens rendered to text against golden files, keys, resizing, live refresh.

Regenerate the golden screens after a deliberate change with
``D3HB_REGEN_GOLDEN=1 python -m pytest tests/ui/test_ui_console.py`` and review the diff.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import urwid
from hypothesis import given, settings
from hypothesis import strategies as st
from menufake import FakeActions, factory_for

from d3hb.menu.model import Mode
from d3hb.menu.registry import Context, Request
from d3hb.ui import console
from d3hb.ui.console.app import ConsoleApp
from d3hb.ui.console.palette import PALETTE, Style, style_from_env
from d3hb.ui.line import new_session

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "screens"
PLAIN = Style(colour=False, ascii=True)
DEADLINE = 10.0


def make_app(tmp_path: Path, fake: FakeActions | None = None, menu: str = "hot-backup", threads: bool = False) -> ConsoleApp:
    fake = fake or FakeActions()
    factory = factory_for(tmp_path)
    app = ConsoleApp(new_session(menu, factory, fake.registry), fake.registry, factory, style=PLAIN, threads=threads)
    app.fake = fake  # type: ignore[attr-defined]
    app.start()
    if threads:
        wait_until(app, lambda: app.session.mode is Mode.MENU, "the first menu")
    return app


def keys(app: ConsoleApp, *names: str) -> None:
    for name in names:
        for key in ([name] if len(name) == 1 or " " in name or name in ("enter", "esc", "up", "down", "home", "end") else list(name)):
            app.top.keypress((80, 24), key)


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("D3HB_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    assert path.exists(), f"no golden screen {path}; run with D3HB_REGEN_GOLDEN=1 to create it"
    assert text + "\n" == path.read_text(), f"screen differs from {path}:\n{text}"


def test_main_menu_screen(tmp_path):
    app = make_app(tmp_path)
    app.tick()  # the live state line
    golden("main-menu", app.text())
    assert app.text().splitlines()[0].rstrip().endswith("Server: hbs")


def test_sub_menu_on_the_right(tmp_path):
    app = make_app(tmp_path)
    keys(app, "9", "enter", "down")
    golden("special-operations", app.text())


def test_setup_server_form_on_the_right(tmp_path):
    app = make_app(tmp_path)
    keys(app, "9", "enter", "1", "enter", "1", "enter", "hbm", "enter", "M", "enter")
    golden("setup-server-form", app.text())
    assert app.session.mode is Mode.FIELD and app.session.prompt.text == "Remote Host name"


def test_display_queue_with_its_chart(tmp_path):
    fake = FakeActions()
    depths = iter([3, 10, 25, 40, 31, 12, 5, 0])
    fake.on("hot-backup.sample", lambda ctx, req: ctx.out(f"depth={(d := next(depths))} lag={d // 4} lag_s={d / 10}"))
    fake.on("hot-backup.queue", ["Transactions in queue: 31", "Logging: DL files only", "Enqueuing: on",
                                 "Current transaction: 1843", "Last acknowledged: 1812"])  # fmt: skip
    app = make_app(tmp_path, fake)
    keys(app, "7", "enter")
    for _ in range(8):
        app.tick()
    golden("display-queue", app.text())
    samples = app.session.samples()
    assert [s.depth for s in samples] == [3, 10, 25, 40, 31, 12, 5, 0]
    assert app.panel.depth.data[0] == [[3], [10], [25], [40], [31], [12], [5], [0]]


def test_tape_socket_menu_fits_80x24(tmp_path):
    app = make_app(tmp_path, menu="tape-socket")
    golden("tape-socket", app.text())
    assert "14. Other Server" in app.text() and " X. Exit" in app.text()


def test_help_screen(tmp_path):
    app = make_app(tmp_path)
    keys(app, "?")
    golden("main-help", app.text())


def test_digits_and_enter_run_the_option(tmp_path):
    app = make_app(tmp_path)
    keys(app, "2", "enter")
    assert app.fake.names() == ["hot-backup.list", "hot-backup.query"]
    assert "hot-backup.query done" in app.text()


def test_arrows_move_the_highlight_and_enter_chooses_it(tmp_path):
    app = make_app(tmp_path)
    keys(app, "down", "down", "up", "down")
    assert "| >3. Start Server" in app.text()
    keys(app, "enter")
    assert app.fake.names()[-1] == "hot-backup.start"
    keys(app, "end")
    assert ">9. Special Operations" in app.text()


def test_typed_digits_move_the_highlight(tmp_path):
    app = make_app(tmp_path, menu="tape-socket")
    keys(app, "1", "4")
    assert ">14. Other Server" in app.text()


def test_esc_and_x_go_back_then_exit(tmp_path):
    app = make_app(tmp_path)
    keys(app, "8", "enter")
    assert app.session.menu.name == "txlog"
    keys(app, "esc")
    assert app.session.menu.name == "hot-backup"
    keys(app, "9", "enter", "x")
    assert app.session.menu.name == "hot-backup"
    exits = []
    app.on_exit = exits.append
    keys(app, "X")
    assert exits == [0] and app.exit_status == 0


def test_confirm_with_a_single_key(tmp_path):
    app = make_app(tmp_path)
    keys(app, "4", "enter")
    assert "Stop server 'hbs'?" in app.text()
    keys(app, "n")
    assert "Stop Server: not done" in app.text() and "hot-backup.stop" not in app.fake.names()
    keys(app, "4", "enter", "y")
    assert app.fake.names()[-1] == "hot-backup.stop"


def test_x_inside_a_value_is_typed_not_back(tmp_path):
    app = make_app(tmp_path)
    keys(app, "9", "enter", "1", "enter", "1", "enter", "hbm", "enter", "M", "enter", "xenon", "enter")
    rows = {r.key: r.value for r in app.panel.rows}
    assert rows["host"] == "xenon" and app.session.mode is Mode.FIELD


def test_bad_input_shows_in_the_message_section(tmp_path):
    app = make_app(tmp_path)
    keys(app, "4", "2", "enter")
    screen = app.text().splitlines()
    assert screen[19].startswith("-- Messages --") and screen[22].startswith(" No option '42' in Hot Backup Main Menu")
    assert app.fake.names() == ["hot-backup.list"]


def test_secret_fields_are_masked(tmp_path):
    app = make_app(tmp_path)
    keys(app, "9", "enter", "1", "enter", "2", "enter", *["enter"] * 6)
    assert app.session.prompt.text == "Verification code"
    keys(app, "topsecret")
    assert "*********" in app.text() and "topsecret" not in app.text()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 220), st.integers(1, 70))
def test_any_size_renders(tmp_path_factory, cols, rows):
    app = make_app(tmp_path_factory.mktemp("size"))
    keys(app, "7", "enter")
    canvas = app.top.render((cols, rows))
    assert canvas.cols() == cols and canvas.rows() == rows


def test_too_small_and_resizing(tmp_path):
    app = make_app(tmp_path)
    assert "Terminal too small (30x8)" in app.text((30, 8))
    wide = app.text((132, 40)).splitlines()
    assert len(wide) == 40 and wide[0].rstrip().endswith("Server: hbs") and len(wide[0]) > 100
    assert "Enter option:" in wide[-1]


def test_plain_ascii_and_no_colour():
    assert style_from_env({"TERM": "vt100"}) == Style(colour=False, ascii=True)
    assert not style_from_env({"TERM": "xterm", "NO_COLOR": "1"}).colour
    assert style_from_env({"TERM": "xterm", "NO_COLOR": ""}).colour, "NO_COLOR counts only when not empty"
    for name, _fg, _bg, mono in PALETTE:
        assert set(filter(None, mono.split(","))) <= {"bold", "underline", "standout"}, name


def test_ascii_screens_are_ascii(tmp_path):
    app = make_app(tmp_path)
    keys(app, "9", "enter", "1", "enter", "1", "enter")
    assert app.text().isascii()


def test_output_panel_keeps_the_last_lines():
    from d3hb.ui.console.widgets import OUTPUT_KEPT, OutputView

    view = OutputView("Status", False, PLAIN)
    for i in range(3 * OUTPUT_KEPT):
        view.append(f"line {i}")
    assert OUTPUT_KEPT <= len(view.lines) <= OUTPUT_KEPT + OUTPUT_KEPT // 4
    assert view.lines[-1] == f"line {3 * OUTPUT_KEPT - 1}"
    text = "\n".join(r.decode() for r in view.render((40, 6)).text)
    assert f"line {3 * OUTPUT_KEPT - 1}" in text, "the view follows the end"
    view.scroll(-100)
    assert f"line {3 * OUTPUT_KEPT - 1}" not in "\n".join(r.decode() for r in view.render((40, 6)).text)


def test_live_refresh_and_notices(tmp_path):
    fake = FakeActions()
    app = make_app(tmp_path, fake)
    app.tick()
    assert " Reading network  cur 1843 ack 1843" in app.text().splitlines()[1]
    fake.state = "Stopped"
    app.tick()
    text = app.text()
    assert text.splitlines()[1].startswith(" Stopped")
    assert " Notice from server 'hbs': Stopped" in text


def wait_until(app: ConsoleApp, condition, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        app.pump()
        time.sleep(0.005)
    app.pump()


def test_long_action_runs_off_the_ui_thread_and_the_screen_answers(tmp_path):
    fake = FakeActions()
    go = threading.Event()
    ran_on = []

    def start(ctx: Context, req: Request) -> None:
        ran_on.append(threading.current_thread())
        ctx.out("starting...")
        ctx.progress(1, 4, "steps")
        assert go.wait(DEADLINE)
        ctx.out("started")

    fake.on("hot-backup.start", start)
    app = make_app(tmp_path, fake, threads=True)
    keys(app, "3", "enter")
    wait_until(app, lambda: "starting..." in app.text(), "the first line")
    assert app.session.mode is Mode.RUNNING and ran_on[0] is not threading.main_thread()
    assert "Running Start Server..." in app.text()
    keys(app, "esc")  # the UI still answers
    assert "Start Server is still running; wait for it to end" in app.text()
    app.tick()
    wait_until(app, lambda: "Reading network" in app.text(), "the live state while the action runs")
    go.set()
    wait_until(app, lambda: app.session.mode is Mode.MENU, "the end of the action")
    assert "started" in app.text() and "Running" not in app.text()


def test_an_actions_question_is_answered_in_the_input_line(tmp_path):
    fake = FakeActions()
    answers = []

    def traceon(ctx: Context, req: Request) -> None:
        answers.append(ctx.confirm("Trace every block?"))
        answers.append(ctx.ask("level=", "1 to 9"))

    fake.on("tape-socket.traceon", traceon)
    app = make_app(tmp_path, fake, menu="tape-socket", threads=True)
    keys(app, "1", "2", "enter")
    wait_until(app, lambda: app.question is not None, "the question")
    assert "Trace every block? (Y/N)" in app.text()
    keys(app, "y")
    wait_until(app, lambda: app.question is not None, "the second question")
    keys(app, "?", "enter")
    assert "Help: level=" in app.text() and "1 to 9" in app.text()
    keys(app, "7", "enter")
    wait_until(app, lambda: app.session.mode is Mode.MENU, "the end of the action")
    assert answers == [True, "7"]


def test_whole_loop_on_a_pty(tmp_path):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    fake = FakeActions()
    out = os.fdopen(os.dup(slave), "w")
    inp = os.fdopen(os.dup(slave), "r")
    drained: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, drained), daemon=True)
    reader.start()

    def typist() -> None:  # keys only once the screen is up: going raw flushes what was typed before
        end = time.monotonic() + DEADLINE
        for wait_for, key in ((b"Enter option", b"2\r"), (b"query done", b"x")):  # Query Server, then X: the loop ends
            while wait_for not in b"".join(drained) and time.monotonic() < end:
                time.sleep(0.01)
            os.write(master, key)

    threading.Thread(target=typist, daemon=True).start()

    def hung(_signum, _frame):  # a loop that never ends fails the test instead of the run
        raise TimeoutError("the console loop did not end")

    old_handler = signal.signal(signal.SIGALRM, hung)
    signal.alarm(int(3 * DEADLINE))
    try:
        status = console.run("hot-backup", factory_for(tmp_path), fake.registry, screen=urwid.display.raw.Screen(input=inp, output=out))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
        out.close()
        inp.close()
        os.close(slave)
    assert status == 0
    assert "hot-backup.query" in fake.names()
    assert not any(isinstance(h, console.app._LogToMessages) for h in logging.getLogger().handlers), "logging restored"
    reader.join(DEADLINE)
    os.close(master)
    assert b"Hot Backup Main Menu" in b"".join(drained)


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        into.append(data)
