"""What a menu file means, and what the menu engine says, as frozen data.

The first half is the menu model: menus, items, forms, fields, scopes.  The
loader (:mod:`d3hb.menu.loader`) builds these from ``menus/*.toml`` and
checks them; the session (:mod:`d3hb.menu.session`) walks them.  The second
half is the session's vocabulary with its front ends: the outputs it emits
(screens, prompts, messages, actions to run) and the :class:`Result` a front
end hands back after running an action.  Nothing here reads files or talks
to a terminal.  The one piece of behaviour kept
with the data is field validation (:meth:`Field.check`), because the rules
(choices, ranges, patterns, required) are declared in the menu files and a
form must apply them the same way in every front end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Union

from d3hb.errors import UsageError
from d3hb.menu.registry import Request

# How an item uses the server selected in its menu's scope.
SERVER_MODES = ("none", "required", "optional", "check")
FIELD_KINDS = ("text", "int", "number")
SERVER_TOKEN = "{server}"


def fill(template: str, server: str | None) -> str:
    """Put the selected server into a template (``{server}``); plain replace, so other braces are text."""
    return template.replace(SERVER_TOKEN, server or "")


class FieldError(UsageError):
    """A value typed into a form field is not valid; the text names the field."""


@dataclass(frozen=True)
class Field:
    """One prompt of a form, with its validation rules declared as data."""

    key: str  # the Request.fields key the action receives
    label: str  # D3's wording, shown to the user
    help: str = ""
    default: str = ""
    required: bool = False
    kind: str = "text"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    pattern_help: str = ""  # what the pattern asks for, in words
    max_length: int | None = None
    readonly: bool = False  # shown and sent, never asked (D3: "Cannot be modified")
    secret: bool = False  # never shown, never pre-filled; empty means "leave as it is"
    when: tuple[tuple[str, str], ...] = ()  # asked only when these other fields hold these values
    line: int = 0

    def applies(self, values: Mapping[str, str]) -> bool:
        return all(values.get(k, "").lower() == v.lower() for k, v in self.when)

    def rules(self, required: bool = True) -> str:
        """The rules in words, for ``?`` and for error messages."""
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.kind != "text":
            what = "a whole number" if self.kind == "int" else "a number"
            if self.minimum is not None and self.maximum is not None:
                what += f" from {_num(self.minimum)} to {_num(self.maximum)}"
            elif self.minimum is not None:
                what += f" of at least {_num(self.minimum)}"
            elif self.maximum is not None:
                what += f" of at most {_num(self.maximum)}"
            parts.append(what)
        if self.pattern:
            parts.append(self.pattern_help or f"matching {self.pattern}")
        if self.max_length:
            parts.append(f"at most {self.max_length} characters")
        if self.required and required:
            parts.append("required")
        return "; ".join(parts)

    def check(self, value: str) -> str:
        """The value as the action should get it, or :class:`FieldError` naming the field."""
        value = value.strip()
        if value == "":
            if self.required:
                raise FieldError(f"{self.label}: a value is required", self.rules(required=False) or "type a value")
            return ""
        if self.choices:
            for choice in self.choices:
                if choice.lower() == value.lower():
                    return choice
            raise FieldError(f"{self.label}: {value!r} is not one of {', '.join(self.choices)}", f"type one of {', '.join(self.choices)}")
        if self.kind in ("int", "number"):
            try:
                number = float(int(value)) if self.kind == "int" else float(value)
            except (ValueError, OverflowError):
                raise FieldError(f"{self.label}: {value!r} is not {'a whole number' if self.kind == 'int' else 'a number'}", self.rules(required=False)) from None
            if not math.isfinite(number) or (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
                raise FieldError(f"{self.label}: {value} is out of range", self.rules(required=False))
        if self.max_length is not None and len(value) > self.max_length:
            raise FieldError(f"{self.label}: {len(value)} characters is too long", self.rules(required=False))
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise FieldError(f"{self.label}: {value!r} is not valid", self.pattern_help or self.rules(required=False))
        return value


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


@dataclass(frozen=True)
class Form:
    """A server definition screen and the action it files."""

    name: str
    title: str
    action: str
    fields: tuple[Field, ...]
    help: str = ""
    args: tuple[str, ...] = ()  # fields also passed as positional arguments, in this order (NAME)
    source: Path = Path()
    line: int = 0
    refs: tuple[tuple[str, int], ...] = ()

    def field(self, key: str) -> Field | None:
        return next((f for f in self.fields if f.key == key), None)


@dataclass(frozen=True)
class Select:
    """How an item picks the server its scope works on."""

    list_action: str | None = None  # prints the known servers
    list_format: str = "lines"  # "lines": one name a line; "table": header, rule, then name first
    verify: str | None = None  # fails when the typed server does not exist
    create: str | None = None  # form offered when it does not exist
    fixed: str | None = None  # select this one without asking
    prompt: str = "Server name"
    after: str = "stay"  # "back": return to the menu that opened this one


@dataclass(frozen=True)
class Item:
    """A numbered line of a menu; exactly one of action, menu, form, select, tcl."""

    number: int
    label: str
    help: str = ""
    action: str | None = None
    menu: str | None = None
    form: str | None = None
    select: Select | None = None
    tcl: bool = False
    server: str = "none"
    confirm: str = ""
    chart: bool = False
    prefill: str | None = None  # action printing the current values for the form
    readonly: tuple[str, ...] = ()  # form fields this item does not let the user change
    args: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    options: str = ""
    line: int = 0
    refs: tuple[tuple[str, int], ...] = ()  # (action named, its line), for error messages

    @property
    def kind(self) -> str:
        for kind in ("action", "menu", "form", "select"):
            if getattr(self, kind) is not None:
                return kind
        return "tcl"

    def actions(self) -> list[str]:
        names = [n for n in (self.action, self.prefill) if n]
        if self.select:
            names += [n for n in (self.select.list_action, self.select.verify) if n]
        return names


@dataclass(frozen=True)
class Scope:
    """What "the selected server" means for a family of menus (hot backup, tape-socket)."""

    name: str
    label: str = "Server"
    server_field: str = ""  # pass the server as this field; "" passes it as the first argument
    default_server: str | None = None
    state: str | None = None  # one short line about the server, for the header
    sample: str | None = None  # "depth=<int> lag=<int> lag_s=<float>", for the charts
    autoselect: str | None = None  # lists the servers; exactly one is selected on entry
    source: Path = Path()
    line: int = 0
    refs: tuple[tuple[str, int], ...] = ()

    def actions(self) -> list[str]:
        return [n for n in (self.state, self.sample, self.autoselect) if n]


@dataclass(frozen=True)
class Menu:
    name: str
    title: str
    items: tuple[Item, ...]
    scope: str | None = None
    help: str = ""
    source: Path = Path()

    def item(self, number: int) -> Item | None:
        return next((i for i in self.items if i.number == number), None)

    def find(self, text: str) -> Item | None:
        """An item by number (``3``) or by its label, case ignored (``start server``)."""
        text = text.strip()
        if text.isdecimal():
            return self.item(int(text))
        folded = text.casefold()
        return next((i for i in self.items if i.label.casefold() == folded), None)


@dataclass(frozen=True)
class MenuSet:
    """Every menu, form and scope, checked and cross-referenced."""

    menus: Mapping[str, Menu] = field(default_factory=dict)
    forms: Mapping[str, Form] = field(default_factory=dict)
    scopes: Mapping[str, Scope] = field(default_factory=dict)

    def menu(self, name: str) -> Menu:
        try:
            return self.menus[name]
        except KeyError:
            from d3hb.errors import NotFound

            raise NotFound(f"no menu {name!r}", f"menus are: {', '.join(sorted(self.menus)) or 'none'}") from None

    def actions(self) -> dict[str, tuple[Path, int]]:
        """Every action any menu names -> where (file, line) it is first named."""
        found: dict[str, tuple[Path, int]] = {}

        def note(names: list[str], source: Path, line: int, refs: tuple[tuple[str, int], ...]) -> None:
            lines = dict(refs)
            for n in names:
                found.setdefault(n, (source, lines.get(n, line)))

        for scope in self.scopes.values():
            note(scope.actions(), scope.source, scope.line, scope.refs)
        for menu in self.menus.values():
            for item in menu.items:
                note(item.actions(), menu.source, item.line, item.refs)
        for form in self.forms.values():
            note([form.action], form.source, form.line, form.refs)
        return found


# ====================================================================== session events

BACK = "\x1b"  # fed by a front end for Esc: back out of anything, whatever is being typed


class Mode(str, Enum):
    """What the session expects next."""

    MENU = "menu"  # an option number (or label)
    FIELD = "field"  # a form field's value
    REVIEW = "review"  # a field number to change, Y to save, X to cancel
    CONFIRM = "confirm"  # Y or N
    CHOICE = "choice"  # a server, by number or name
    TCL = "tcl"  # a TCL command at the ":" prompt
    RUNNING = "running"  # nothing: an action is running
    ENDED = "ended"  # nothing: the user left the main menu


@dataclass(frozen=True)
class Header:
    """The top of every screen: where we are and which server we work on."""

    title: str
    label: str  # "Server"
    server: str | None
    state: str  # one short line from the scope's state action, "" when unknown


@dataclass(frozen=True)
class ShowMenu:
    """Show a menu.  ``full`` is False when it is only shown again after an action."""

    menu: Menu
    parent: Menu | None
    server: str | None
    header: Header
    full: bool
    depth: int


@dataclass(frozen=True)
class FormRow:
    number: int | None  # what to type to change it at the review; None: not changeable
    key: str
    label: str
    value: str  # as shown: secrets are starred
    current: bool
    readonly: bool


@dataclass(frozen=True)
class ShowForm:
    """A form with the values so far; ``current`` is the field being asked (None: review)."""

    title: str
    rows: tuple[FormRow, ...]
    current: str | None
    start: bool


@dataclass(frozen=True)
class ShowChoices:
    title: str
    choices: tuple[str, ...]


@dataclass(frozen=True)
class ShowHelp:
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ShowOutput:
    """A fresh panel for what an action prints, titled with the option's label."""

    title: str
    chart: bool  # draw the queue-depth and lag chart beside it


@dataclass(frozen=True)
class Echo:
    """A line to add to the output panel as typed (the TCL prompt's commands)."""

    text: str


@dataclass(frozen=True)
class Message:
    """For the message section; ``level`` is info, error or notice (from a server)."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Prompt:
    """What to ask now.  ``kind``: option, field, review, confirm, choice or tcl."""

    text: str
    kind: str
    default: str = ""
    secret: bool = False
    help: str = ""


@dataclass(frozen=True)
class RunAction:
    """Run ``registry.run(name, ctx, request)`` and report with ``Session.done(id, Result)``.

    ``purpose``: ``run`` (show what it prints), ``capture`` (the session reads
    the lines: lists, pre-filled forms, checks), ``state`` or ``sample`` (live
    data, polled).  ``confirmed``: the user already said yes to the menu's own
    question, so the action's ``ctx.confirm`` is answered yes.  ``server``:
    the selected server, for the front end's ``ctx_factory``.
    """

    id: int
    name: str
    request: Request
    label: str
    purpose: str
    server: str | None
    confirmed: bool = False
    secret: frozenset[str] = frozenset()  # field keys a transcript must not show (passwords, codes)


@dataclass(frozen=True)
class Exit:
    status: int = 0


@dataclass(frozen=True)
class Result:
    """How an action ended, as a front end reports it back."""

    status: int = 0
    lines: tuple[str, ...] = ()
    error: str | None = None  # str(D3hbError)
    kind: str | None = None  # the error's class name: NotFound, Refused, ...
    dry_run: bool = False  # not run at all (script --dry-run)


@dataclass(frozen=True)
class Sample:
    depth: int
    lag: int
    lag_s: float


Output = Union[ShowMenu, ShowForm, ShowChoices, ShowHelp, ShowOutput, Echo, Message, Prompt, RunAction, Exit]
