"""Menu scripts: selections and answers played unattended (``d3hb menu --script FILE``).

A script is what an administrator would type, one step a line, checked as
it goes (the format is in d3hb-menus(5))::

    # nightly switchover of the pair hbs
    menu hot-backup
    server hbs
    choose 9                  # Special Operations
    choose Switchover
    expect prompt Switchover:
    yes
    expect "switched"

Steps: ``menu NAME``, ``server NAME``, ``choose OPTION`` (number or label),
``enter [TEXT]`` (a field value, a name, a TCL command; nothing: Enter),
``yes`` / ``no``, ``back`` (X), and ``expect [prompt|message|menu|output]
TEXT`` (case ignored; what appeared since the last step), ``expect error
[TEXT]``, ``expect ok``.  The first mismatch stops the script: the line and
what was wrong go to ``err``, the exit status is 1 (2 for a script that
cannot be read: bad syntax, a missing menu).  An error shown by a step —
an action that failed, an option out of range — is a mismatch unless the
next step is ``expect error``.  With ``dry_run`` no action is run: each is
shown as ``would run: hot-backup switchover hbs``, and steps that depend on
what an action would have printed or asked are noted, not checked.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from d3hb.errors import D3hbError, UsageError
from d3hb.menu.model import (
    BACK, Echo, Exit, Message, Mode, Output, Prompt, Result, RunAction, ShowChoices, ShowForm, ShowHelp, ShowMenu, ShowOutput,
)  # fmt: skip
from d3hb.menu.loader import load_menus
from d3hb.menu.registry import Registry
from d3hb.menu.session import Session
from d3hb.ui.line import CtxFactory, execute, form_text

VERBS = ("menu", "server", "choose", "enter", "yes", "no", "back", "expect")
EXPECT_KINDS = ("prompt", "message", "menu", "output", "error", "ok")
DEFAULT_MENU = "hot-backup"


class ScriptError(UsageError):
    """The script itself cannot be played (syntax, unknown step, missing menu)."""


class Mismatch(Exception):
    def __init__(self, line: int, text: str) -> None:
        super().__init__(text)
        self.line = line
        self.text = text


@dataclass(frozen=True)
class Step:
    line: int
    verb: str
    text: str = ""
    kind: str = ""  # for expect: one of EXPECT_KINDS, or "" for anywhere
    source: str = ""

    def __str__(self) -> str:
        return self.source


def parse(text: str, name: str = "script") -> list[Step]:
    """Script text -> steps; :class:`ScriptError` names the line of the first bad one."""
    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        verb, _, rest = line.partition(" ")
        verb, rest = verb.lower(), rest.strip()
        if verb == "answer" and rest.lower() in ("yes", "no", "y", "n"):
            verb, rest = ("yes" if rest.lower().startswith("y") else "no"), ""
        if verb not in VERBS:
            raise ScriptError(f"{name} line {n}: unknown step {verb!r}", f"steps are: {', '.join(VERBS)} (see d3hb-menus(5))")
        kind = ""
        if verb == "expect":
            m = re.match(r"(prompt|message|menu|output|error|ok)\b\s*(.*)$", rest, re.IGNORECASE)
            if m:  # a kind written with quotes ("ok") is text, not a kind
                kind, rest = m.group(1).lower(), m.group(2)
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise ScriptError(f"{name} line {n}: {exc}", "close the quotes") from None
        text_arg = " ".join(words)
        needs = verb in ("menu", "server", "choose") or (verb == "expect" and kind not in ("error", "ok"))
        if needs and not text_arg:
            raise ScriptError(f"{name} line {n}: '{verb}' needs {'a name' if verb != 'expect' else 'the text to expect'}", f"write {verb} ...")
        if verb in ("yes", "no", "back") and text_arg:
            raise ScriptError(f"{name} line {n}: '{verb}' takes nothing after it", f"write just {verb}")
        steps.append(Step(n, verb, text_arg, kind, line))
    return steps


def _strip_comment(line: str) -> str:
    """Drop ``# ...`` that starts a line or follows a blank, outside quotes (``s3cr#t`` stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def command_text(run: RunAction) -> str:
    """A request as the command line would give it: ``hot-backup start hbs key=value (o``; secrets starred."""
    group, _, verb = run.name.partition(".")
    hidden = {v for k, v in run.request.fields.items() if k in run.secret and v}
    args = ("********" if a in hidden else _quote(a) for a in run.request.args)
    fields = (f"{k}={'********' if k in run.secret else _quote(v)}" for k, v in run.request.fields.items())
    words = [group, verb, *args, *fields]
    if run.request.options:
        words.append(f"({run.request.options}")
    return " ".join(words)


def _quote(word: str) -> str:
    return shlex.quote(word) if word else "''"


class ScriptRunner:
    """Plays steps against a :class:`Session`, running actions through the registry."""

    def __init__(self, steps: list[Step], session: Session, registry: Registry, ctx_factory: CtxFactory, *,
                 dry_run: bool = False, out: Callable[[str], None], name: str = "script") -> None:  # fmt: skip
        self.steps = steps
        self.session = session
        self.registry = registry
        self.ctx_factory = ctx_factory
        self.dry_run = dry_run
        self.out = out
        self.name = name
        self.i = 0
        self.step: Step | None = None
        self.seen: list[tuple[str, str]] = []
        self.error: tuple[int, str] | None = None  # an error shown, not yet expected
        self.ok = True  # the last action ended well
        self.ended = False
        self.asking_secret = False  # the open prompt is a secret field: its answer is starred in the transcript

    # -- playing

    def run(self) -> int:
        try:
            first = self.steps[0] if self.steps else None
            if first is not None and first.verb == "menu":
                self.i = 1
                self.step = first
                self.say(f"[{first.line}] {first}")
                self._start(first.text, first.line)
            else:
                self._start(DEFAULT_MENU, first.line if first else 0)
            while self.i < len(self.steps):
                step = self.steps[self.i]
                self.i += 1
                self.step = step
                if step.verb == "expect":
                    self._expect(step)
                    continue
                self._no_error_left()
                self.seen = []
                self.say(f"[{step.line}] {self._shown(step)}")
                self._input(step)
            self._no_error_left()
        except Mismatch as m:
            self.say(f"{self.name} line {m.line}: {m.text}" if m.line else f"{self.name}: {m.text}")
            return 1
        except ScriptError as exc:
            self.say(str(exc))
            return 2
        self.say(f"{self.name}: done{' (dry run: nothing was run)' if self.dry_run else ''}")
        return 0

    def _start(self, menu: str, line: int) -> None:
        try:
            self.session.start_menu = menu
            self.play(self.session.start())
        except D3hbError as exc:
            raise ScriptError(f"{self.name} line {line}: {exc}") from None

    def _no_error_left(self) -> None:
        if self.error is not None:
            line, text = self.error
            raise Mismatch(line, text)

    def _input(self, step: Step) -> None:
        mode = self.session.mode
        if self.ended:
            raise Mismatch(step.line, f"'{step}' but the menu has ended (X was chosen in the main menu)")
        if step.verb == "menu":
            try:
                self.play(self.session.open(step.text))
            except D3hbError as exc:
                raise ScriptError(f"{self.name} line {step.line}: {exc}") from None
        elif step.verb == "server":
            try:
                self.play(self.session.select(step.text))
            except D3hbError as exc:
                raise Mismatch(step.line, str(exc)) from None
        elif step.verb == "back":
            self.play(self.session.feed(BACK))
        elif step.verb in ("yes", "no"):
            if mode is not Mode.CONFIRM:
                return self._out_of_step(step)
            self.play(self.session.feed(step.verb))
        elif step.verb == "choose":
            if mode not in (Mode.MENU, Mode.CHOICE):
                return self._out_of_step(step)
            self.play(self.session.feed(step.text))
        else:  # enter
            if mode is Mode.CONFIRM:
                return self._out_of_step(step)
            self.play(self.session.feed(step.text))

    def _out_of_step(self, step: Step) -> None:
        asked = self.session.prompt.text if self.session.prompt else "nothing"
        if self.dry_run:
            self.say(f"  (dry run: '{step}' not played; the menu asks {asked!r})")
            return
        raise Mismatch(step.line, f"'{step}' does not answer what the menu asks: {asked!r}")

    def play(self, outputs: list[Output]) -> None:
        pending: deque[Output] = deque(outputs)
        while pending:
            out = pending.popleft()
            if isinstance(out, RunAction):
                pending.extendleft(reversed(self.session.done(out.id, self._run(out))))
            else:
                self.show(out)

    def _run(self, run: RunAction) -> Result:
        if self.dry_run:
            self.say(f"  would run: {command_text(run)}")
            return Result(dry_run=True)
        if run.purpose == "run":
            self.say(f"  run: {command_text(run)}")
        ctx = self.ctx_factory(run.server)
        ctx.confirm = (lambda question: True) if run.confirmed else self._confirm
        ctx.ask = self._ask
        ctx.interactive = False

        def show(line: str) -> None:
            self.seen.append(("output", line))
            self.say(f"  {line}")

        result = execute(self.registry, ctx, run, show if run.purpose == "run" else None)
        if run.purpose == "run":
            self.ok = not (result.error or result.status)
        return result

    def show(self, out: Output) -> None:
        step_line = self.step.line if self.step else 0
        if isinstance(out, ShowMenu):
            self.seen.append(("menu", out.menu.title))
            if out.full:
                self.say(f"  == {out.menu.title} ({out.header.label}: {out.server or 'none selected'})")
        elif isinstance(out, Message):
            self.seen.append(("message", out.text))
            self.say(f"  {'*** ' if out.level != 'info' else ''}{out.text}")
            if out.level == "error":
                self.error = (step_line, out.text)
        elif isinstance(out, Prompt):
            self.seen.append(("prompt", out.text))
            self.asking_secret = out.secret
        elif isinstance(out, ShowHelp):
            self.seen += [("help", out.title)] + [("help", ln) for ln in out.lines]
        elif isinstance(out, ShowChoices):
            self.seen += [("choices", c) for c in out.choices]
            self.say("  " + ", ".join(f"{i}. {c}" for i, c in enumerate(out.choices, 1)))
        elif isinstance(out, ShowForm):
            self.seen += [("form", f"{r.label} {r.value}") for r in out.rows]
            if out.current is None:
                for line in form_text(out):
                    self.say(f"  {line}")
        elif isinstance(out, Exit):
            self.ended = True
        elif isinstance(out, (ShowOutput, Echo)):
            pass

    # -- what actions ask: the next step answers

    def _next_is(self, *verbs: str) -> Step | None:
        if self.i < len(self.steps) and self.steps[self.i].verb in verbs:
            step = self.steps[self.i]
            self.i += 1
            return step
        return None

    def _confirm(self, question: str) -> bool:
        step = self._next_is("yes", "no")
        if step is None:
            self._fail_once(f"the action asked {question!r} and the script gives no yes or no for it")
            return False
        self.say(f"[{step.line}] {step}   ({question})")
        return step.verb == "yes"

    def _ask(self, prompt: str, help_text: str) -> str | None:
        step = self._next_is("enter")
        if step is None:
            self._fail_once(f"the action asked {prompt!r} and the script gives no 'enter' for it")
            return None
        self.say(f"[{step.line}] {step}")
        return step.text

    def _shown(self, step: Step) -> str:
        """The step as the transcript shows it: a secret field's answer is starred (transcripts get mailed)."""
        return f"{step.verb} ********" if step.verb == "enter" and step.text and self.asking_secret else str(step)

    def _fail_once(self, text: str) -> None:
        if self.error is None:  # the first thing that went wrong is the one to report
            self.error = (self.step.line if self.step else 0, text)

    # -- checking

    def _expect(self, step: Step) -> None:
        want = step.text.casefold()
        if step.kind in ("error", "ok"):
            if step.kind == "ok":
                good = self.error is None and self.ok
            else:
                good = self.error is not None and want in self.error[1].casefold()
            if good:
                if step.kind == "error":
                    self.error = None
                return
            got = self.error[1] if self.error else "no error"
            return self._miss(step, f"expected {'an error' if step.kind == 'error' else 'no error'}{' containing ' + repr(step.text) if step.text else ''}; got: {got}")
        pool = [(k, t) for k, t in self.seen if not step.kind or k == step.kind]
        if step.kind == "prompt":
            pool = [("prompt", self.session.prompt.text)] if self.session.prompt else []
        if step.kind == "menu":
            pool.append(("menu", self.session.menu.title))
        for _kind, text in pool:
            if want in text.casefold():
                if self.error is not None and want in self.error[1].casefold():
                    self.error = None  # the script expected this very error
                return
        last = [t for _k, t in pool][-3:]
        self._miss(step, f"expected {step.kind + ' ' if step.kind else ''}{step.text!r}; got: {' | '.join(last) or 'nothing'}")

    def _miss(self, step: Step, text: str) -> None:
        if self.dry_run:
            self.say(f"  (dry run: line {step.line} not checked: {text})")
            return
        raise Mismatch(step.line, text)

    def say(self, line: str) -> None:
        self.out(line)


def run(script_text_or_path: str | os.PathLike[str], ctx_factory: CtxFactory, registry: Registry, dry_run: bool = False,
        out: TextIO | None = None) -> int:  # fmt: skip
    """``d3hb menu --script FILE [--dry-run]``: play a script; 0 when every step matched.

    A :class:`~os.PathLike` (or a one-line string naming an existing file) is
    read as the script; any other string is the script's text.  The
    transcript and the failing line go to ``out`` (default standard output).
    """
    stream = out or sys.stdout

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    source = script_text_or_path
    name = "script"
    if isinstance(source, os.PathLike) or ("\n" not in source and source.strip() and Path(source).is_file()):
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            say(f"cannot read script {path}: {exc}; check the file name")
            return 2
    else:
        text = str(source)
    try:
        steps = parse(text, name)
    except ScriptError as exc:
        say(str(exc))
        return 2
    try:
        menus = load_menus(home=ctx_factory(None).home, registry=registry)
    except D3hbError as exc:
        say(f"{name}: {exc}")
        return 2
    return ScriptRunner(steps, Session(menus, DEFAULT_MENU), registry, ctx_factory, dry_run=dry_run, out=say, name=name).run()


__all__ = ["run", "parse", "ScriptRunner", "Step", "ScriptError", "command_text"]
