"""Line mode: the menus as plain lines on any text stream.

``1. Status`` ... ``Enter option:`` on a dumb terminal, a pipe or a serial
port (:mod:`d3hb.ui.serialio` supplies that terminal): no cursor
addressing, nothing redrawn.  A menu is printed in full when it is entered
or when an empty line is typed; after an action only the prompt comes back,
so a slow line is not flooded with the same menu again and again.

This module also holds :func:`execute`, the one place a front end runs an
action from a :class:`~d3hb.menu.model.RunAction` and turns how it ended
into a :class:`~d3hb.menu.model.Result` (the console and the script runner
use it too).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol, TextIO

from d3hb.errors import D3hbError
from d3hb.menu.loader import load_menus
from d3hb.menu.model import (
    Echo, Exit, Message, Output, Prompt, Result, RunAction, ShowChoices, ShowForm, ShowHelp, ShowMenu, ShowOutput,
)  # fmt: skip
from d3hb.menu.registry import Context, Registry
from d3hb.menu.session import Session

logger = logging.getLogger(__name__)

CtxFactory = Callable[[str | None], Context]
WIDTH = 79


class Terminal(Protocol):
    """What line mode needs from a terminal: write text, read a line (None at the end)."""

    def write(self, text: str) -> None: ...

    def read_line(self, secret: bool = False) -> str | None: ...


class StreamTerminal:
    """A pair of text streams (stdin/stdout, a pipe, StringIO in tests)."""

    def __init__(self, infile: TextIO, outfile: TextIO) -> None:
        self.infile = infile
        self.outfile = outfile

    def write(self, text: str) -> None:
        self.outfile.write(text)
        self.outfile.flush()

    def read_line(self, secret: bool = False) -> str | None:
        line = self.infile.readline()
        if line == "":
            return None
        return line.rstrip("\r\n")


def execute(registry: Registry, ctx: Context, run: RunAction, show: Callable[[str], None] | None = None) -> Result:
    """Run ``run`` through the registry; every line it prints is kept (and passed to ``show``)."""
    lines: list[str] = []

    def out(line: object = "") -> None:
        for part in str(line).split("\n"):
            lines.append(part)
            if show is not None:
                show(part)

    ctx.out = out
    try:
        status = registry.run(run.name, ctx, run.request)
    except D3hbError as exc:
        return Result(exc.status, tuple(lines), str(exc), type(exc).__name__)
    except Exception as exc:  # an action's bug must not take the menus down with it
        logger.exception("action %s failed", run.name)
        return Result(1, tuple(lines), f"{run.label}: internal error ({type(exc).__name__}: {exc}); please report it", "InternalError")
    return Result(status, tuple(lines))


def menu_text(out: ShowMenu, width: int = WIDTH) -> list[str]:
    """A menu as lines: title with the selected server on the right, the items, then X."""
    head = out.header
    right = f"{head.label}: {out.server or '(none selected)'}"
    lines = [out.menu.title + " " * max(2, width - len(out.menu.title) - len(right)) + right]
    if head.state:
        lines.append(head.state)
    wide = len(out.menu.items) > 9
    for item in out.menu.items:
        lines.append(f" {item.number:>2}. {item.label}" if wide else f" {item.number}. {item.label}")
    back = "Exit" if out.depth == 1 else "Back"
    lines.append(f" {'X':>2}. {back}" if wide else f" X. {back}")
    return lines


def form_text(out: ShowForm) -> list[str]:
    """The review of a form: numbered fields (what to type to change them) and their values."""
    width = max(len(r.label) for r in out.rows) + 2
    lines = []
    for row in out.rows:
        number = f"{row.number:>3}." if row.number is not None else "    "
        lines.append(f"{number} {row.label:.<{width}} {row.value}")
    return lines


def prompt_text(p: Prompt) -> str:
    if p.kind == "option":
        return f"{p.text} "
    if p.kind == "field":
        return f"{p.text}{f' [{p.default}]' if p.default else ''}: "
    if p.kind == "confirm":
        return f"{p.text} (Y/N) "
    if p.kind == "tcl":
        return p.text
    return f"{p.text} "


class LineFrontEnd:
    """Drives a :class:`Session` on a :class:`Terminal`."""

    def __init__(self, session: Session, registry: Registry, ctx_factory: CtxFactory, term: Terminal, *, width: int = WIDTH) -> None:
        self.session = session
        self.registry = registry
        self.ctx_factory = ctx_factory
        self.term = term
        self.width = width
        self._secret = False
        self._progress_next = 0.0

    def say(self, line: str = "") -> None:
        self.term.write(line + "\n")

    def run(self) -> int:
        pending: deque[Output] = deque(self.session.start())
        while True:
            while pending:
                out = pending.popleft()
                if isinstance(out, Exit):
                    return out.status
                if isinstance(out, RunAction):
                    pending.extendleft(reversed(self.session.done(out.id, self.run_action(out))))
                else:
                    self.render(out)
            line = self.term.read_line(secret=self._secret)
            if line is None:  # end of input: leave as X would, nothing half-done
                self.say()
                return 0
            pending.extend(self.session.feed(line))

    def run_action(self, run: RunAction) -> Result:
        ctx = self.ctx_factory(run.server)
        ctx.confirm = (lambda question: True) if run.confirmed else self.confirm
        ctx.ask = self.ask
        ctx.progress = self.progress
        self._progress_next = 0.0
        return execute(self.registry, ctx, run, self.say if run.purpose == "run" else None)

    def render(self, out: Output) -> None:
        if isinstance(out, ShowMenu):
            if out.full:
                self.say()
                for line in menu_text(out, self.width):
                    self.say(line)
        elif isinstance(out, Message):
            self.say(("*** " if out.level != "info" else "") + out.text)
        elif isinstance(out, ShowHelp):
            self.say(out.title)
            for line in out.lines:
                self.say(f"  {line}" if line else "")
        elif isinstance(out, ShowChoices):
            for i, name in enumerate(out.choices, 1):
                self.say(f" {i:>2}. {name}")
        elif isinstance(out, ShowForm):
            if out.start:
                self.say()
                self.say(out.title)
            if out.current is None:
                for line in form_text(out):
                    self.say(line)
        elif isinstance(out, ShowOutput):
            if out.title == "TCL":
                self.say()
        elif isinstance(out, Prompt):
            self._secret = out.secret
            self.term.write(prompt_text(out))
        elif isinstance(out, Echo):
            pass  # the user's own line is already on the screen

    # -- what actions ask of the front end

    def confirm(self, question: str) -> bool:
        while True:
            self.term.write(f"{question} (Y/N) ")
            answer = self.term.read_line()
            if answer is None:
                return False
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no", "", "x"):
                return False

    def ask(self, prompt: str, help_text: str) -> str | None:
        while True:
            self.term.write(f"{prompt} ")
            answer = self.term.read_line()
            if answer is None or answer.strip().lower() == "q":
                return None
            if answer.strip() == "?":
                self.say(help_text or "No help.")
                continue
            return answer.strip()

    def progress(self, done: int, total: int | None, unit: str) -> None:
        # Every 10 %, or at doubling counts when the total is unknown: a slow line is never flooded.
        if total:
            if done >= self._progress_next or done >= total:
                self.say(f"  {done} of {total} {unit} ({100 * done // total}%)")
                self._progress_next = done + total / 10
        elif done >= self._progress_next:
            self.say(f"  {done} {unit}")
            self._progress_next = max(1.0, done * 2.0)


def run_terminal(menu: str, ctx_factory: CtxFactory, registry: Registry, term: Terminal, server: str | None = None, width: int = WIDTH) -> int:
    """The menus on any :class:`Terminal`; the exit status is 0 when the user leaves."""
    return LineFrontEnd(new_session(menu, ctx_factory, registry, server), registry, ctx_factory, term, width=width).run()


def new_session(menu: str, ctx_factory: CtxFactory, registry: Registry, server: str | None = None) -> Session:
    """Load the menus (shipped, then ``$D3HB_HOME/menus``) and open a session on ``menu``."""
    menus = load_menus(home=ctx_factory(None).home, registry=registry)
    scope = menus.menu(menu).scope
    return Session(menus, menu, servers={scope: server} if server and scope else None)


def run(menu: str, ctx_factory: CtxFactory, registry: Registry, infile: TextIO, outfile: TextIO, server: str | None = None) -> int:
    """``d3hb menu --line``: the menu ``menu`` on text streams (stdin/stdout)."""
    return run_terminal(menu, ctx_factory, registry, StreamTerminal(infile, outfile), server)
