"""The full-screen console: a :class:`~d3hb.menu.session.Session` on urwid.

:class:`ConsoleApp` turns keys into session input and session outputs into
widgets.  Actions never run on the UI thread: each runs in a daemon thread
and reports back through a queue (``post``), which the urwid loop drains
(``pump``) when woken through ``watch_pipe``; so the screen keeps answering
while a start, a save or a resync runs, and shows its progress.  An action
that asks something (``ctx.confirm``, ``ctx.ask``) waits for the answer,
typed in the input line.  Every second (``tick``) the session's poll actions
refresh the server state in the header and the queue-depth chart, off the UI
thread too.  Tests drive the same object with ``threads=False``: actions run
inline and the screen is rendered to text.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import urwid

from d3hb.menu.model import (
    BACK, Echo, Exit, Message, Mode, Output, Prompt, RunAction, ShowChoices, ShowForm, ShowHelp, ShowMenu, ShowOutput,
)  # fmt: skip
from d3hb.menu.registry import Registry
from d3hb.menu.session import Session
from d3hb.ui.console import keymap
from d3hb.ui.console.palette import PALETTE, Style, style_from_env
from d3hb.ui.console.widgets import OutputView, Screen, choices_box, form_box, help_box, menu_box, text_box
from d3hb.ui.line import CtxFactory, execute, new_session

logger = logging.getLogger(__name__)

REFRESH = 1.0  # s between live refreshes of the header and charts
MESSAGES_KEPT = 50
INTRO = (
    "Type an option number and press Enter.",
    "Up and Down move the highlight; Enter on an empty line chooses it.",
    "Esc or X goes back (from the main menu: exit).",
    "? shows help; in a form, ? explains the field.",
    "",
    "The server's state at the top refreshes by itself.",
)


@dataclass
class Question:
    """An action asking the user something from its worker thread."""

    kind: str  # "confirm" or "ask"
    text: str
    help: str = ""
    answer: object = None
    event: threading.Event = field(default_factory=threading.Event)


class ConsoleApp:
    """Keys in, widgets out; see the module docstring."""

    def __init__(self, session: Session, registry: Registry, ctx_factory: CtxFactory, *, style: Style | None = None, threads: bool = True) -> None:
        self.session = session
        self.registry = registry
        self.ctx_factory = ctx_factory
        self.style = style or style_from_env()
        self.threads = threads
        self.screen = Screen(self.style, self.on_key)
        self.events: queue.Queue[tuple] = queue.Queue()
        self.wake: Callable[[], None] = lambda: None
        self.on_exit: Callable[[int], None] = lambda status: None
        self.exit_status: int | None = None
        self.closing = False
        self.messages: list[tuple[str, str]] = []
        self.menu_out: ShowMenu | None = None
        self.highlight = 0
        self.choice_highlight = 0
        self.panel: object = None  # OutputView, ShowForm, ShowChoices, or None
        self.help: ShowHelp | None = None
        self.prompt: Prompt | None = None
        self.question: Question | None = None
        self.running: RunAction | None = None
        self.started = 0.0
        self.progress: tuple[int, int | None, str] | None = None
        self._latest_progress: tuple[int, int | None, str] | None = None

    @property
    def top(self) -> Screen:
        return self.screen

    def text(self, size: tuple[int, int] = (80, 24)) -> str:
        return self.screen.text(size)

    def start(self) -> None:
        self.apply(self.session.start())

    # ------------------------------------------------------------ keys

    def on_key(self, key: str, size: tuple[int, ...] = (80, 24)) -> bool:
        width = size[0] if size else 80
        if not isinstance(key, str):
            return True  # mouse events: not used
        command = keymap.command(key, self.screen.input.text == "")
        if command == "redraw":
            self.redraw()
        elif self.question is not None:
            self._answer_key(key, command, width)
        elif self.session.mode is Mode.RUNNING:
            if command in ("page up", "page down") and isinstance(self.panel, OutputView):
                self.panel.scroll(-10 if command == "page up" else 10)
            elif command == "back":
                self._message(f"{self.running.label if self.running else 'An operation'} is still running; wait for it to end", "error")
        elif self.session.mode is Mode.CONFIRM and key in ("y", "Y", "n", "N"):
            self.feed(key)
        elif command == "back" or (command == "back-key" and self.session.mode in (Mode.MENU, Mode.CHOICE, Mode.REVIEW)):
            self.screen.input.clear()
            self.feed(BACK)
        elif command == "help":
            self.screen.input.clear()
            self.feed("?")
        elif command in ("up", "down", "first", "last"):
            self._move(command)
        elif command in ("page up", "page down"):
            if isinstance(self.panel, OutputView):
                self.panel.scroll(-10 if command == "page up" else 10)
        elif command == "submit":
            self.feed(self._submitted())
        else:
            self.screen.input.type_key(key, width)
            self._follow_typed()
        self.redraw()
        return True

    def _submitted(self) -> str:
        text = self.screen.input.text
        self.screen.input.clear()
        mode = self.session.mode
        if text == "" and mode is Mode.MENU and self.menu_out:
            return str(self.menu_out.menu.items[self.highlight].number)
        if text == "" and mode is Mode.CHOICE and isinstance(self.panel, ShowChoices) and self.panel.choices:
            return str(self.choice_highlight + 1)
        return text

    def _move(self, command: str) -> None:
        if self.session.mode is Mode.MENU and self.menu_out:
            last = len(self.menu_out.menu.items) - 1
            self.highlight = {"up": max(0, self.highlight - 1), "down": min(last, self.highlight + 1), "first": 0, "last": last}[command]
            self.screen.input.clear()
        elif self.session.mode is Mode.CHOICE and isinstance(self.panel, ShowChoices):
            last = len(self.panel.choices) - 1
            self.choice_highlight = {"up": max(0, self.choice_highlight - 1), "down": min(last, self.choice_highlight + 1), "first": 0, "last": last}[command]
        elif isinstance(self.panel, OutputView):
            self.panel.scroll({"up": -1, "down": 1, "first": -(10**9), "last": 10**9}[command])

    def _follow_typed(self) -> None:
        """Typed digits move the highlight to that option, so what Enter will do is visible."""
        text = self.screen.input.text.strip()
        if self.session.mode is Mode.MENU and self.menu_out and text.isdecimal():
            for i, item in enumerate(self.menu_out.menu.items):
                if item.number == int(text):
                    self.highlight = i

    def _answer_key(self, key: str, command: str | None, width: int) -> None:
        q = self.question
        assert q is not None
        if q.kind == "confirm":
            if key in ("y", "Y"):
                self._answer(True)
            elif key in ("n", "N", "enter") or command == "back":
                self._answer(False)
            return
        if command == "back":
            self._answer(None)
        elif command == "submit":
            text = self.screen.input.text
            self.screen.input.clear()
            if text.strip() == "?":
                self.help = ShowHelp(q.text, tuple((q.help or "No help.").splitlines()))
            else:
                self._answer(None if text.strip().lower() == "q" else text.strip())
        else:
            self.screen.input.type_key(key, width)

    def _answer(self, value: object) -> None:
        q = self.question
        assert q is not None
        self.question = None
        self.help = None
        q.answer = value
        q.event.set()
        self._set_prompt()

    # ------------------------------------------------------------ session outputs

    def feed(self, text: str) -> None:
        self.apply(self.session.feed(text))

    def apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, ShowMenu):
                if self.menu_out is None or (out.menu.name, out.depth) != (self.menu_out.menu.name, self.menu_out.depth):
                    self.highlight = 0
                if out.full or not isinstance(self.panel, OutputView):
                    self.panel = None
                self.menu_out = out
                self.help = None
            elif isinstance(out, ShowOutput):
                self.panel = OutputView(out.title, out.chart, self.style)
                self.help = None
            elif isinstance(out, ShowForm):
                self.panel = out
                self.help = None
            elif isinstance(out, ShowChoices):
                self.panel = out
                self.choice_highlight = 0
                self.help = None
            elif isinstance(out, ShowHelp):
                self.help = out
            elif isinstance(out, Echo):
                if isinstance(self.panel, OutputView):
                    self.panel.append(out.text)
            elif isinstance(out, Message):
                self._message(out.text, out.level)
            elif isinstance(out, Prompt):
                self.prompt = out
                self._set_prompt()
            elif isinstance(out, RunAction):
                self.submit(out)
            elif isinstance(out, Exit):
                self.exit_status = out.status
                self.closing = True
                self.on_exit(out.status)
        self.redraw()

    def _message(self, text: str, level: str) -> None:
        self.messages.append((level, text))
        del self.messages[:-MESSAGES_KEPT]

    def _set_prompt(self) -> None:
        q, p = self.question, self.prompt
        if q is not None:
            caption = f"{q.text} (Y/N) " if q.kind == "confirm" else f"{q.text} "
            self.screen.input.set_prompt(caption)
        elif p is not None:
            if p.kind == "field":
                caption = f"{p.text}{f' [{p.default}]' if p.default else ''}: "
            elif p.kind == "confirm":
                caption = f"{p.text} (Y/N) "
            elif p.kind == "tcl":
                caption = ":"
            else:
                caption = f"{p.text} "
            self.screen.input.set_prompt(caption, p.secret)

    # ------------------------------------------------------------ running actions

    def submit(self, run: RunAction) -> None:
        """Run an action off the UI thread (inline when ``threads`` is off)."""
        if run.purpose in ("run", "capture"):
            self.running = run
            self.started = time.monotonic()
            self.progress = None
        ctx = self.ctx_factory(run.server)
        ctx.confirm = (lambda question: True) if run.confirmed else self._confirm_from_worker
        ctx.ask = self._ask_from_worker
        ctx.progress = lambda done, total, unit: self._report_progress(done, total, unit)
        ctx.interactive = True
        show = (lambda line: self.post(("out", run.id, line))) if run.purpose == "run" else None

        def work() -> None:
            self.post(("done", run.id, execute(self.registry, ctx, run, show)))

        if self.threads:
            threading.Thread(target=work, name=f"d3hb {run.name}", daemon=True).start()
        else:
            work()
            self.pump()

    def _report_progress(self, done: int, total: int | None, unit: str) -> None:
        # An action may report progress for every block: keep only the latest, wake the UI once.
        first = self._latest_progress is None
        self._latest_progress = (done, total, unit)
        if first:
            self.post(("progress",))

    def post(self, event: tuple) -> None:
        """From any thread: queue an event for the UI thread and wake it."""
        self.events.put(event)
        try:
            self.wake()
        except OSError:  # the loop is gone; the event stays queued and is dropped with it
            pass

    def pump(self) -> None:
        """On the UI thread: apply what the workers reported."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            kind = event[0]
            if kind == "out":
                if isinstance(self.panel, OutputView):
                    self.panel.append(event[2])
            elif kind == "done":
                if self.running is not None and self.running.id == event[1]:
                    self.running = None
                    self.progress = None
                self.apply(self.session.done(event[1], event[2]))
            elif kind == "progress":
                latest, self._latest_progress = self._latest_progress, None
                if latest is not None and self.running is not None:
                    self.progress = latest
            elif kind == "question":
                self.question = event[1]
                self._set_prompt()
            elif kind == "log":
                self._message(event[2], event[1])
        self.redraw()

    def _confirm_from_worker(self, question: str) -> bool:
        return bool(self._wait_answer(Question("confirm", question)))

    def _ask_from_worker(self, prompt: str, help_text: str) -> str | None:
        answer = self._wait_answer(Question("ask", prompt, help_text))
        return answer if isinstance(answer, str) else None

    def _wait_answer(self, q: Question) -> object:
        if not self.threads:
            self._message(f"cannot ask {q.text!r} here; answered no", "error")
            return None
        self.post(("question", q))
        while not q.event.wait(0.5):
            if self.closing:
                return None
        return q.answer

    def tick(self) -> None:
        """Start the live refreshes the session wants (header state, chart samples)."""
        for run in self.session.poll():
            self.submit(run)
        self.redraw()

    # ------------------------------------------------------------ drawing

    def redraw(self) -> None:
        s = self.screen
        s.header.set(self.session.header())
        s.messages.set(self.messages)
        out = self.menu_out
        if out is None:
            return
        active = self.session.mode in (Mode.MENU, Mode.CONFIRM) and self.question is None
        panel = self._panel()
        if panel is None and out.parent is not None:
            s.left.original_widget = menu_box(out.parent, out.depth - 1, None, self.style, active=False)
            s.right.original_widget = menu_box(out.menu, out.depth, self.highlight, self.style, active=active)
        else:
            s.left.original_widget = menu_box(out.menu, out.depth, self.highlight, self.style, active=active)
            s.right.original_widget = panel or text_box("d3hb", INTRO, self.style)

    def _panel(self) -> urwid.Widget | None:
        panel = self.panel
        widget: urwid.Widget | None = None
        if isinstance(panel, OutputView):
            if panel.depth is not None:
                panel.set_samples(self.session.samples())
            if self.running is not None and self.running.purpose == "run":
                elapsed = int(time.monotonic() - self.started)
                text = f"Running {self.running.label}... {elapsed // 60:02d}:{elapsed % 60:02d}"
                if self.progress:
                    done, total, unit = self.progress
                    panel.set_status(f"{text} {done}{'/' + str(total) if total else ''} {unit}", done, total)
                else:
                    panel.set_status(text)
            else:
                panel.set_status("")
            widget = panel
        elif isinstance(panel, ShowForm):
            widget = form_box(panel.title, panel.rows, self.style)
        elif isinstance(panel, ShowChoices):
            widget = choices_box(panel.title, panel.choices, self.choice_highlight, self.style)
        if self.help is not None:
            helpw = help_box(self.help.title, self.help.lines, self.style)
            return urwid.Pile([widget, helpw]) if widget is not None else helpw
        return widget


class _LogToMessages(logging.Handler):
    """While the screen is up, warnings go to the message section, not over the screen on stderr."""

    def __init__(self, app: ConsoleApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        self.app.post(("log", "error" if record.levelno >= logging.ERROR else "notice", record.getMessage()))


def run(menu: str, ctx_factory: CtxFactory, registry: Registry, server: str | None = None, *,
        screen: urwid.display.raw.Screen | None = None) -> int:  # fmt: skip
    """``d3hb menu``: the full-screen menus on this terminal; 0 when the user leaves.

    ``screen`` (default: the terminal) lets a test run the whole loop on a pty.
    """
    app = ConsoleApp(new_session(menu, ctx_factory, registry, server), registry, ctx_factory)
    screen = screen or urwid.display.raw.Screen()
    if not app.style.colour:
        screen.set_terminal_properties(colors=1)
    loop = urwid.MainLoop(app.top, PALETTE, screen=screen, handle_mouse=False)
    write_fd = loop.watch_pipe(lambda _data: app.pump())

    def wake() -> None:
        os.write(write_fd, b"!")

    def stop(_status: int) -> None:
        raise urwid.ExitMainLoop()

    def alarm(_loop: urwid.MainLoop, _data: object) -> None:
        app.tick()
        loop.set_alarm_in(REFRESH, alarm)

    app.wake = wake
    app.on_exit = stop
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [_LogToMessages(app)]
    try:
        app.start()
        loop.set_alarm_in(0, alarm)
        loop.run()
    finally:
        app.closing = True
        root.handlers = saved
    return app.exit_status or 0
