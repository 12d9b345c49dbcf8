"""The one action registry: menus, the command line, scripts and tests call it.

An action is a named function ``fn(ctx, req) -> int | None``.  Names are
dotted: ``hot-backup.query``, ``tape-socket.shutdown``, ``tcl.create-file``,
``system.list``.  The command line maps ``d3hb hot-backup query NAME a=b``
to ``hot-backup.query`` with ``Request(args=("NAME",), fields={"a": "b"})``;
a menu item names the same action and fills the same request from its form
and the selected server.  So the menus and the command line cannot drift.

Actions report through ``ctx.out`` (a line of text at a time) and fail by
raising :class:`d3hb.errors.D3hbError`; the return value is the exit status
(``None`` means 0).  They never print, never read the terminal directly, and
never call ``sys.exit``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from d3hb.errors import UsageError

ActionFn = Callable[["Context", "Request"], "int | None"]

# The modules whose import registers the actions; loaded lazily so that a
# front end pays only for what it uses and tests can import the registry alone.
ACTION_MODULES = (
    "d3hb.menu.actions.system",
    "d3hb.menu.actions.tcl",
    "d3hb.menu.actions.hotbackup",
    "d3hb.menu.actions.tapesocket",
    "d3hb.menu.actions.slaveopts",
    "d3hb.menu.actions.failover",
    "d3hb.menu.actions.vault",
)


@dataclass(frozen=True)
class Request:
    """What an action is asked to do: D3's ``VERB arg ... key=value (options``."""

    args: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    options: str = ""

    def arg(self, i: int, what: str) -> str:
        """The i-th positional argument, or a usage error naming ``what``."""
        try:
            return self.args[i]
        except IndexError:
            raise UsageError(f"missing {what}", f"give the {what} as argument {i + 1}") from None

    def has(self, letter: str) -> bool:
        """True when the D3 option letter was given (options are case-blind)."""
        return letter.lower() in self.options.lower()


@dataclass
class Context:
    """Where an action runs: which system, who is asking, where output goes."""

    home: Path
    system: str = "pick0"
    account: str = "dm"
    server: str | None = None  # the server selected in a menu
    out: Callable[[str], None] = print
    stdin: BinaryIO | None = None
    stdout: BinaryIO | None = None  # raw bytes output (ct --raw, tapes on stdout)
    # Ask a yes/no question; front ends answer from the user, scripts from the script.
    confirm: Callable[[str], bool] = lambda question: False
    # Ask for a value (tape-socket's keyword=?); None means the user quit.
    ask: Callable[[str, str], str | None] = lambda prompt, help_text: None
    interactive: bool = False
    # Progress of long operations: (done, total or None, unit) -> None.
    progress: Callable[[int, int | None, str], None] = lambda done, total, unit: None


@dataclass(frozen=True)
class FieldSpec:
    """A field an action understands; help for ``?`` and for ``--help``."""

    name: str
    help: str = ""


@dataclass(frozen=True)
class Action:
    name: str
    fn: ActionFn
    summary: str
    usage: str = ""
    fields: tuple[FieldSpec, ...] = ()


class Registry:
    """Name -> action.  Per instance, so tests can build their own."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self._aliases: dict[str, str] = {}

    def alias(self, short: str, name: str) -> None:
        """``tape-socket.ch`` -> ``tape-socket.check``: D3's abbreviations."""
        self._aliases[short] = name

    def resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def action(
        self,
        name: str,
        summary: str,
        usage: str = "",
        fields: tuple[FieldSpec, ...] = (),
    ) -> Callable[[ActionFn], ActionFn]:
        def register(fn: ActionFn) -> ActionFn:
            if name in self._actions:
                raise ValueError(f"action {name!r} registered twice")
            self._actions[name] = Action(name, fn, summary, usage, fields)
            return fn

        return register

    def get(self, name: str) -> Action:
        try:
            return self._actions[self.resolve(name)]
        except KeyError:
            group = name.split(".", 1)[0]
            known = ", ".join(n.split(".", 1)[1] for n in self.names(group)) or "none"
            raise UsageError(f"unknown command {name!r}", f"known {group} commands: {known}") from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) in self._actions

    def names(self, group: str | None = None) -> list[str]:
        return sorted(n for n in self._actions if group is None or n.split(".", 1)[0] == group)

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions[n] for n in self.names())

    def run(self, name: str, ctx: Context, req: Request | None = None) -> int:
        status = self.get(name).fn(ctx, req or Request())
        return 0 if status is None else status


REGISTRY = Registry()
action = REGISTRY.action


def load_actions(modules: tuple[str, ...] = ACTION_MODULES) -> Registry:
    """Import the action modules (once) and return the shared registry."""
    for module in modules:
        if module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A layer not written yet is absent, not an error; a broken import inside one is.
            if exc.name != module:
                raise
    return REGISTRY


_FIELD_RE = __import__("re").compile(r"^[A-Za-z][A-Za-z0-9_.-]*=")


def parse_words(words: list[str] | tuple[str, ...], fields: bool = True) -> Request:
    """D3's ``arg ... keyword=value ... (options`` -> :class:`Request`.

    ``(abc`` (a closing ``)`` optional) gives the option letters; with
    ``fields`` a ``keyword=value`` word is a field, otherwise it is an
    argument like any other (TCL item-ids may contain ``=``).
    """
    args: list[str] = []
    found: dict[str, str] = {}
    options = ""
    for word in words:
        if word.startswith("(") and len(word) > 1:
            options += word[1:].rstrip(")")
        elif fields and _FIELD_RE.match(word):
            key, value = word.split("=", 1)
            found[key.lower()] = value
        else:
            args.append(word)
    return Request(tuple(args), found, options)
