"""The menu engine, sans-IO: text in, outputs out; the front ends do the I/O.

A front end calls :meth:`Session.start`, then :meth:`Session.feed` with each
line the user enters (a menu option, a field value, a Y/N answer, a TCL
command; :data:`BACK` is Esc).  What comes back is a list of outputs
(:mod:`d3hb.menu.model`): screens to show, the prompt to ask, messages for
the message section, and :class:`RunAction` — an action the front end must
run through the registry, then report with :meth:`Session.done`.  The
session never runs anything, reads a file, sleeps or draws; so every front
end behaves alike and the whole menu tree is tested as transcripts.

Live data (the header's server state, the queue-depth chart) comes the same
way: :meth:`Session.poll` returns the read-only actions to run now, and their
results, fed to :meth:`Session.done`, update :meth:`Session.header` and
:meth:`Session.samples`; a change of server state becomes a
"Notice from server 'NAME'" message.
"""

from __future__ import annotations

import shlex
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from d3hb.errors import D3hbError
from d3hb.menu.model import (
    BACK, Echo, Exit, Form, FormRow, Header, Item, Menu, MenuSet, Message, Mode, Output, Prompt, Result, RunAction,
    Sample, Scope, ShowChoices, ShowForm, ShowHelp, ShowMenu, ShowOutput, fill,
)  # fmt: skip
from d3hb.menu.registry import Request, parse_words

__all__ = ["Session", "BACK", "Mode"]

# At the ":" prompt these words start a command of another group, as on the command line.
COMMAND_GROUPS = ("hot-backup", "tape-socket", "system", "vault")
SAMPLES_KEPT = 60
OPTION_PROMPT = "Enter option:"
_Then = Callable[[Result], list[Output]]


@dataclass
class _FormState:
    form: Form
    item: Item | None
    values: dict[str, str]
    readonly: frozenset[str]
    index: int = 0
    editing_one: bool = False
    on_saved: Callable[[dict[str, str]], list[Output]] | None = None

    def askable(self) -> list[int]:
        return [i for i, f in enumerate(self.form.fields) if not (f.readonly or f.key in self.readonly) and f.applies(self.values)]


@dataclass
class _ChoiceState:
    item: Item
    names: tuple[str, ...]


@dataclass
class _ConfirmState:
    question: str
    label: str
    on_yes: Callable[[], list[Output]]
    on_no: Callable[[], list[Output]] | None = None


@dataclass
class _Waiting:
    run: RunAction
    then: _Then
    resume: Mode = Mode.MENU


class Session:
    """One user's walk through the menus; see the module docstring."""

    def __init__(self, menus: MenuSet, start: str = "hot-backup", servers: Mapping[str, str | None] | None = None) -> None:
        self.menus = menus
        self.start_menu = start
        self.stack: list[Menu] = []
        self.selected: dict[str, str | None] = {name: s.default_server for name, s in menus.scopes.items()}
        self.selected.update(servers or {})
        self.mode = Mode.MENU
        self.prompt: Prompt | None = None
        self.states: dict[str, str] = {}
        self._samples: dict[str, deque[Sample]] = {}
        self._chart_server: str | None = None
        self._ids = 0
        self._waiting: _Waiting | None = None
        self._polls: dict[int, RunAction] = {}
        self._form: _FormState | None = None
        self._choice: _ChoiceState | None = None
        self._confirm: _ConfirmState | None = None

    # ------------------------------------------------------------ what is shown

    @property
    def menu(self) -> Menu:
        return self.stack[-1]

    @property
    def parent(self) -> Menu | None:
        return self.stack[-2] if len(self.stack) > 1 else None

    @property
    def scope(self) -> Scope | None:
        for menu in reversed(self.stack):
            if menu.scope:
                return self.menus.scopes[menu.scope]
        return None

    @property
    def server(self) -> str | None:
        scope = self.scope
        return self.selected.get(scope.name) if scope else None

    def header(self) -> Header:
        scope = self.scope
        server = self.server
        return Header(self.menu.title if self.stack else "", scope.label if scope else "Server", server, self.states.get(server or "", ""))

    def samples(self, server: str | None = None) -> tuple[Sample, ...]:
        return tuple(self._samples.get(server or self._chart_server or "", ()))

    @property
    def chart_server(self) -> str | None:
        return self._chart_server

    # ------------------------------------------------------------ entry points

    def start(self) -> list[Output]:
        """The first screen (a missing menu raises :class:`~d3hb.errors.NotFound`)."""
        self.stack = [self.menus.menu(self.start_menu)]
        scope = self.scope
        if scope and scope.autoselect and not self.server:
            return self._run(scope.autoselect, Request(), "Select Server", "capture", self._autoselected)
        return self._show_menu(full=True)

    def open(self, name: str) -> list[Output]:
        """Go straight to a menu, as if it were the first (scripts' ``menu NAME``)."""
        menu = self.menus.menu(name)
        self.stack = [menu]
        self._form = self._choice = self._confirm = None
        return self._show_menu(full=True)

    def select(self, server: str, scope: str | None = None) -> list[Output]:
        """Make ``server`` the selected one of ``scope`` (default: the current menu's)."""
        target = scope or (self.scope.name if self.scope else None)
        if target is None or target not in self.menus.scopes:
            raise D3hbError(f"menu {self.menu.title!r} has no server to select", "open a hot-backup or tape-socket menu first")
        self.selected[target] = server
        return [Message(f"{self.menus.scopes[target].label} '{server}' selected")]

    def feed(self, text: str) -> list[Output]:
        """One line of input (or :data:`BACK`) -> what to show, ask and run next."""
        if self.mode is Mode.RUNNING:
            label = self._waiting.run.label if self._waiting else "an operation"
            return [Message(f"{label} is still running; wait for it to end", "error")]
        if self.mode is Mode.ENDED:
            return []
        handler = {
            Mode.MENU: self._feed_menu, Mode.FIELD: self._feed_field, Mode.REVIEW: self._feed_review,
            Mode.CONFIRM: self._feed_confirm, Mode.CHOICE: self._feed_choice, Mode.TCL: self._feed_tcl,
        }[self.mode]  # fmt: skip
        return handler(text)

    def done(self, run_id: int, result: Result) -> list[Output]:
        """The result of a :class:`RunAction`; stale or unknown ids are ignored."""
        if run_id in self._polls:
            return self._polled(self._polls.pop(run_id), result)
        waiting = self._waiting
        if waiting is None or waiting.run.id != run_id:
            return []
        self._waiting = None
        self.mode = waiting.resume
        return waiting.then(result)

    def poll(self) -> list[RunAction]:
        """Read-only actions to run now for the live header and charts (none already under way)."""
        scope, server = self.scope, self.server
        if scope is None or not server or self.mode is Mode.ENDED:
            return []
        busy = {r.purpose for r in self._polls.values()}
        runs = []
        if scope.state and "state" not in busy:
            runs.append(self._poll_run(scope.state, server, "state"))
        if scope.sample and self._chart_server and "sample" not in busy:
            runs.append(self._poll_run(scope.sample, self._chart_server, "sample"))
        return runs

    # ------------------------------------------------------------ menus

    def _show_menu(self, full: bool) -> list[Output]:
        self.mode = Mode.MENU
        self._form = self._choice = self._confirm = None
        return [ShowMenu(self.menu, self.parent, self.server, self.header(), full, len(self.stack)), self._ask(Prompt(OPTION_PROMPT, "option"))]

    def _ask(self, prompt: Prompt) -> Prompt:
        self.prompt = prompt
        return prompt

    def _reprompt(self) -> list[Output]:
        return [self.prompt] if self.prompt else []

    def _is_back(self, text: str) -> bool:
        return text == BACK or text.strip().lower() == "x"

    def _feed_menu(self, text: str) -> list[Output]:
        t = text.strip()
        if self._is_back(text):
            if len(self.stack) == 1:
                self.mode = Mode.ENDED
                return [Exit(0)]
            self.stack.pop()
            self._chart_server = None
            return self._show_menu(full=True)
        if t == "":
            return self._show_menu(full=True)
        if t == "?":
            return [self._menu_help()] + self._reprompt()
        if t.startswith("?") or t.endswith("?"):
            item = self.menu.find(t.strip("? "))
            if item is not None:
                return [ShowHelp(f"{item.number}. {item.label}", tuple((item.help or "No help for this option.").splitlines()))] + self._reprompt()
        item = self.menu.find(t)
        if item is None:
            last = self.menu.items[-1].number
            where = "exit" if len(self.stack) == 1 else "go back"
            return [Message(f"No option {t!r} in {self.menu.title}; enter 1 to {last}, ? for help, or X to {where}", "error")] + self._reprompt()
        return self._choose(item)

    def _menu_help(self) -> ShowHelp:
        lines = list(self.menu.help.splitlines()) if self.menu.help else []
        if lines:
            lines.append("")
        for item in self.menu.items:
            first = item.help.strip().splitlines()[0].rstrip(".") if item.help.strip() else ""
            lines.append(f"{item.number:>2}. {item.label}" + (f": {first}" if first else ""))
        lines += ["", "Type a number and Enter. X goes back (from the main menu: exit).", "?N shows the help of option N."]
        return ShowHelp(self.menu.title, tuple(lines))

    def _choose(self, item: Item) -> list[Output]:
        scope = self.scope
        if item.server in ("required", "check") and not self.server:
            label = scope.label.lower() if scope else "server"
            hint = self._select_hint()
            return [Message(f"{item.label}: no {label} is selected; {hint}", "error")] + self._reprompt()
        if item.kind == "menu":
            self.stack.append(self.menus.menu(item.menu or ""))
            self._chart_server = None
            return self._show_menu(full=True)
        if item.kind == "tcl":
            self.mode = Mode.TCL
            return [ShowOutput("TCL", False), Message("TCL: type a command; an empty line or X returns to the menu"), self._ask(Prompt(":", "tcl"))]
        if item.kind == "select":
            return self._start_select(item)
        if item.kind == "form":
            form = self.menus.forms[item.form or ""]
            if item.prefill:
                return self._run(item.prefill, self._server_request(self.server or "", {"format": "fields"}), item.label, "capture",
                                 lambda r: self._prefilled(item, form, r))  # fmt: skip
            return self._start_form(form, item, {})
        if item.confirm:
            return self._ask_confirm(fill(item.confirm, self.server), item.label, lambda: self._run_item(item, confirmed=True))
        return self._run_item(item)

    def _select_hint(self) -> str:
        """Where the select item of this scope is, as the option path from the first menu."""
        scope = self.scope
        root = self.stack[0]
        queue: deque[tuple[Menu, tuple[str, ...]]] = deque([(root, ())])
        seen = {root.name}
        while queue:
            menu, path = queue.popleft()
            for item in menu.items:
                step = path + (f"{item.number} {item.label}",)
                if item.select is not None and not item.select.fixed and menu.scope == (scope.name if scope else None):
                    return "select one with " + ", ".join(step)
                if item.menu and item.menu not in seen and item.menu in self.menus.menus:
                    seen.add(item.menu)
                    queue.append((self.menus.menus[item.menu], step))
        return "select one first"

    def _request(self, item: Item, extra: Mapping[str, str] | None = None) -> Request:
        server, scope = self.server, self.scope
        args = [fill(a, server) for a in item.args]
        fields = {k: fill(v, server) for k, v in item.fields}
        fields.update(extra or {})
        if item.server in ("required", "optional") and server and scope:
            if scope.server_field:
                fields.setdefault(scope.server_field, server)
            else:
                args.insert(0, server)
        return Request(tuple(args), fields, item.options)

    def _server_request(self, server: str, fields: Mapping[str, str] | None = None) -> Request:
        """A request naming ``server`` the way the current scope passes it."""
        scope = self.scope
        if scope and scope.server_field:
            return Request((), {scope.server_field: server, **(fields or {})})
        return Request((server,), dict(fields or {}))

    def _run_item(self, item: Item, confirmed: bool = False) -> list[Output]:
        return self._run(item.action or "", self._request(item), item.label, "run", self._after(item.label),
                         confirmed=confirmed, chart=item.chart)  # fmt: skip

    def _run(self, name: str, request: Request, label: str, purpose: str, then: _Then, *,
             confirmed: bool = False, chart: bool = False, panel: bool = True, resume: Mode = Mode.MENU,
             server: str | None = None, secret: frozenset[str] = frozenset()) -> list[Output]:  # fmt: skip
        self._ids += 1
        run = RunAction(self._ids, name, request, label, purpose, server or self.server, confirmed, secret)
        self._waiting = _Waiting(run, then, resume)
        self.mode = Mode.RUNNING
        outputs: list[Output] = []
        if purpose == "run" and panel:
            self._chart_server = self.server if chart else None
            outputs.append(ShowOutput(label, chart))
        outputs.append(run)
        return outputs

    def _after(self, label: str) -> _Then:
        def then(result: Result) -> list[Output]:
            return self._report(label, result) + self._show_menu(full=False)

        return then

    def _report(self, label: str, result: Result) -> list[Output]:
        if result.error:
            return [Message(result.error, "error")]
        if result.status:
            return [Message(f"{label}: ended with status {result.status}", "error")]
        if result.dry_run:
            return [Message(f"{label}: not run (dry run)")]
        return [] if result.lines else [Message(f"{label}: done")]

    def _autoselected(self, result: Result) -> list[Output]:
        names = [n.strip() for n in result.lines if n.strip()] if not result.error else []
        out: list[Output] = []
        if len(names) == 1 and self.scope:
            self.selected[self.scope.name] = names[0]
        return out + self._show_menu(full=True)

    # ------------------------------------------------------------ confirmations

    def _ask_confirm(self, question: str, label: str, on_yes: Callable[[], list[Output]],
                     on_no: Callable[[], list[Output]] | None = None) -> list[Output]:  # fmt: skip
        self._confirm = _ConfirmState(question, label, on_yes, on_no)
        self.mode = Mode.CONFIRM
        return [self._ask(Prompt(question, "confirm", default="N"))]

    def _feed_confirm(self, text: str) -> list[Output]:
        state = self._confirm
        assert state is not None
        answer = text.strip().lower()
        if answer in ("y", "yes"):
            self._confirm = None
            self.mode = Mode.MENU
            return state.on_yes()
        if answer in ("n", "no", "") or self._is_back(text):
            self._confirm = None
            self.mode = Mode.MENU
            if state.on_no:
                return state.on_no()
            return [Message(f"{state.label}: not done")] + self._show_menu(full=False)
        return [Message("Answer Y (yes) or N (no)", "error")] + self._reprompt()

    # ------------------------------------------------------------ forms

    def _prefilled(self, item: Item, form: Form, result: Result) -> list[Output]:
        if result.error:
            return [Message(result.error, "error")] + self._show_menu(full=False)
        values: dict[str, str] = {}
        for line in result.lines:
            text = line.strip()
            if "=" in text:
                key, _, value = text.partition("=")
            else:  # "key   value" columns, as tape-socket's show prints them
                key, value = (text.split(None, 1) + ["", ""])[:2]
            f = form.field(key.strip().lower())
            if f is not None and not f.secret:
                values[f.key] = value.strip()
        return self._start_form(form, item, values)

    def _start_form(self, form: Form, item: Item | None, values: Mapping[str, str], readonly: tuple[str, ...] = (),
                    on_saved: Callable[[dict[str, str]], list[Output]] | None = None) -> list[Output]:  # fmt: skip
        server = self.server
        filled = {f.key: ("" if f.secret else fill(f.default, server)) for f in form.fields}
        # The item's own fields (Modify Server's name={server}) seed the form; what was read overrides.
        filled.update({k: fill(v, server) for k, v in (item.fields if item else ()) if k in filled})
        filled.update({k: v for k, v in values.items() if k in filled})
        locked = frozenset(readonly) | frozenset(item.readonly if item else ())
        self._form = _FormState(form, item, filled, locked, on_saved=on_saved)
        return self._next_field(0, start=True)

    def _show_form(self, start: bool = False) -> ShowForm:
        state = self._form
        assert state is not None
        askable = state.askable()
        current = state.form.fields[state.index].key if self.mode is Mode.FIELD else None
        rows = []
        for i, f in enumerate(state.form.fields):
            if not f.applies(state.values):
                continue
            value = state.values.get(f.key, "")
            shown = ("*" * 8 if value else "") if f.secret else value
            number = askable.index(i) + 1 if i in askable else None
            rows.append(FormRow(number, f.key, f.label, shown, f.key == current, number is None))
        return ShowForm(state.form.title, tuple(rows), current, start)

    def _next_field(self, first: int, start: bool = False) -> list[Output]:
        state = self._form
        assert state is not None
        for i in state.askable():
            if i >= first:
                state.index = i
                self.mode = Mode.FIELD
                f = state.form.fields[i]
                prompt = Prompt(f.label, "field", "" if f.secret else state.values.get(f.key, ""), f.secret, f.help)
                return [self._show_form(start), self._ask(prompt)]
        return self._review(start)

    def _review(self, start: bool = False) -> list[Output]:
        self.mode = Mode.REVIEW
        assert self._form is not None
        self._form.editing_one = False
        return [self._show_form(start), self._ask(Prompt("Enter field number to change, Y to save, X to cancel:", "review"))]

    def _cancel_form(self) -> list[Output]:
        title = self._form.form.title if self._form else "Form"
        self._form = None
        return [Message(f"{title}: cancelled; nothing was changed")] + self._show_menu(full=False)

    def _feed_field(self, text: str) -> list[Output]:
        state = self._form
        assert state is not None
        f = state.form.fields[state.index]
        t = text.strip()
        if self._is_back(text):
            return self._cancel_form()
        if t == "?":
            lines = [*(f.help.splitlines() or ["No help for this field."])]
            if f.rules():
                lines += ["", f"Rules: {f.rules()}."]
            lines += ["", "Enter keeps the value shown; X cancels the form (\\X types a plain X)."]
            return [ShowHelp(f.label, tuple(lines))] + self._reprompt()
        if t.startswith("\\"):
            t = t[1:]
        value = t if t else ("" if f.secret else state.values.get(f.key, ""))
        try:
            value = f.check(value)
        except D3hbError as exc:
            return [Message(str(exc), "error")] + self._reprompt()
        state.values[f.key] = value
        if state.editing_one:
            return self._review()
        return self._next_field(state.index + 1)

    def _feed_review(self, text: str) -> list[Output]:
        state = self._form
        assert state is not None
        t = text.strip().lower()
        if self._is_back(text):
            return self._cancel_form()
        if t in ("y", "yes"):
            for i in state.askable():
                f = state.form.fields[i]
                try:
                    state.values[f.key] = f.check(state.values.get(f.key, ""))
                except D3hbError as exc:
                    state.index, state.editing_one, self.mode = i, True, Mode.FIELD
                    return [Message(str(exc), "error"), self._show_form(), self._ask(Prompt(f.label, "field", "", f.secret, f.help))]
            return self._submit_form()
        askable = state.askable()
        if t.isdecimal() and 1 <= int(t) <= len(askable):
            state.editing_one = True
            return self._next_field(askable[int(t) - 1])
        if t in ("", "?"):
            return self._review()
        return [Message(f"Enter a field number from 1 to {len(askable)}, Y to save, or X to cancel", "error")] + self._reprompt()

    def _submit_form(self) -> list[Output]:
        state = self._form
        assert state is not None
        fields = {f.key: state.values[f.key] for f in state.form.fields if f.applies(state.values) and state.values.get(f.key)}
        request = self._request(state.item, fields) if state.item else Request((), fields)
        # Fields the action takes as arguments (hot-backup setup NAME ...) go first, and stay fields too.
        lead = tuple(fields[k] for k in state.form.args if fields.get(k))
        request = Request(lead + request.args, request.fields, request.options)
        secret = frozenset(f.key for f in state.form.fields if f.secret)
        return self._run(state.form.action, request, state.form.title, "run", lambda r: self._filed(state, r), secret=secret)

    def _filed(self, state: _FormState, result: Result) -> list[Output]:
        if result.error or result.status:
            self._form = state
            return self._report(state.form.title, result) + self._review()
        out = [] if result.lines else [Message(f"{state.form.title}: saved")]
        self._form = None
        if state.on_saved:
            return out + state.on_saved(state.values)
        return out + self._show_menu(full=False)

    # ------------------------------------------------------------ selecting a server

    def _start_select(self, item: Item) -> list[Output]:
        sel = item.select
        assert sel is not None
        if sel.fixed:
            return self._selected(item, fill(sel.fixed, self.server))
        if sel.list_action:
            return self._run(sel.list_action, Request(), item.label, "capture", lambda r: self._listed(item, r))
        return self._ask_name(item, ())

    def _listed(self, item: Item, result: Result) -> list[Output]:
        if result.error:
            return [Message(result.error, "error")] + self._show_menu(full=False)
        sel = item.select
        assert sel is not None
        lines = [ln for ln in result.lines if ln.strip()]
        if sel.list_format == "table":
            rule = next((i for i, ln in enumerate(lines) if set(ln.strip()) <= {"-", " "}), None)
            lines = lines[rule + 1 :] if rule is not None else []
        names = tuple(dict.fromkeys(ln.split()[0] for ln in lines))
        if not names and not sel.create and not result.dry_run:
            label = self.scope.label.lower() if self.scope else "server"
            return [Message(f"{item.label}: no {label} is set up yet; set one up first (New Server)", "error")] + self._show_menu(full=False)
        return self._ask_name(item, names)

    def _ask_name(self, item: Item, names: tuple[str, ...]) -> list[Output]:
        self._choice = _ChoiceState(item, names)
        self.mode = Mode.CHOICE
        sel = item.select
        assert sel is not None
        shown: list[Output] = [ShowChoices(item.label, names)] if names else []
        text = "Enter number or name:" if names else f"{sel.prompt}:"
        return shown + [self._ask(Prompt(text, "choice"))]

    def _feed_choice(self, text: str) -> list[Output]:
        state = self._choice
        assert state is not None and state.item.select is not None
        sel, names, t = state.item.select, state.names, text.strip()
        if self._is_back(text):
            return self._show_menu(full=False)
        if t == "":
            return self._ask_name(state.item, names)
        if t == "?":
            lines = ["Type the number or the name of a server, then Enter; X returns to the menu."]
            if sel.create:
                lines.append("A name that does not exist yet is offered for creation.")
            return [ShowHelp(state.item.label, tuple(lines))] + self._reprompt()
        name = None
        if t.isdecimal() and names:
            if not 1 <= int(t) <= len(names):
                return [Message(f"No server number {t}; enter 1 to {len(names)}, a name, or X", "error")] + self._reprompt()
            name = names[int(t) - 1]
        else:
            name = next((n for n in names if n == t), None) or next((n for n in names if n.casefold() == t.casefold()), None)
        if name is not None:
            return self._selected(state.item, name)
        if names and not (sel.verify or sel.create):
            return [Message(f"No server {t!r}; enter one of: {', '.join(names)}", "error")] + self._reprompt()
        if sel.verify:
            return self._run(sel.verify, self._server_request(t), state.item.label, "capture", lambda r: self._verified(state, t, r),
                             server=t, resume=Mode.CHOICE)  # fmt: skip
        if sel.create:
            return self._offer_create(state, t)
        return self._selected(state.item, t)

    def _verified(self, state: _ChoiceState, name: str, result: Result) -> list[Output]:
        self._choice = state
        if not result.error and not result.status:
            return self._selected(state.item, name)
        if result.kind == "NotFound" and state.item.select and state.item.select.create:
            return self._offer_create(state, name)
        return [Message(result.error or f"server {name!r} could not be checked", "error")] + self._ask_name(state.item, state.names)

    def _offer_create(self, state: _ChoiceState, name: str) -> list[Output]:
        sel = state.item.select
        assert sel is not None and sel.create
        scope = self.scope
        label = scope.label if scope else "Server"
        form = self.menus.forms[sel.create]
        key = scope.server_field if scope and scope.server_field and form.field(scope.server_field) else "name"

        def create() -> list[Output]:
            return self._start_form(form, None, {key: name}, readonly=(key,), on_saved=lambda _v: self._selected(state.item, name))

        return self._ask_confirm(f"{label} '{name}' does not exist. Create it?", state.item.label, create,
                                 lambda: self._ask_name(state.item, state.names))  # fmt: skip

    def _selected(self, item: Item, name: str) -> list[Output]:
        scope = self.scope
        assert scope is not None
        self.selected[scope.name] = name
        out: list[Output] = [Message(f"{scope.label} '{name}' selected")]
        back = item.select is not None and item.select.after == "back" and len(self.stack) > 1
        if back:
            self.stack.pop()
        return out + self._show_menu(full=back)

    # ------------------------------------------------------------ the TCL prompt

    def _feed_tcl(self, text: str) -> list[Output]:
        t = text.strip()
        if t == "" or self._is_back(text):
            return self._show_menu(full=True)
        if t == "?":
            lines = ("Type a TCL command, e.g. 'list md' or 'count invoices'.",
                     "hot-backup, tape-socket and system commands work too: 'hot-backup query hbs'.",
                     "An empty line or X returns to the menu.")  # fmt: skip
            return [ShowHelp("TCL", lines)] + self._reprompt()
        try:
            words = shlex.split(t)
        except ValueError as exc:
            return [Message(f"cannot read the command ({exc}); close the quotes", "error")] + self._reprompt()
        verb = words[0].lower()
        if verb in COMMAND_GROUPS and len(words) > 1:
            name, request = f"{verb}.{words[1].lower()}", parse_words(words[2:])
        else:
            name, request = f"tcl.{verb}", parse_words(words[1:], fields=False)
        return [Echo(":" + t)] + self._run(name, request, t, "run", self._tcl_done, panel=False, resume=Mode.TCL)

    def _tcl_done(self, result: Result) -> list[Output]:
        out = [m for m in self._report("", result) if isinstance(m, Message) and m.level == "error"]
        return out + [self._ask(Prompt(":", "tcl"))]

    # ------------------------------------------------------------ live data

    def _poll_run(self, name: str, server: str, purpose: str) -> RunAction:
        self._ids += 1
        run = RunAction(self._ids, name, self._server_request(server), purpose, purpose, server)
        self._polls[run.id] = run
        return run

    def _polled(self, run: RunAction, result: Result) -> list[Output]:
        server = run.server or ""
        if run.purpose == "state":
            line = "" if result.error else next((ln.strip() for ln in result.lines if ln.strip()), "")
            old = self.states.get(server)
            self.states[server] = line
            if old is not None and line and _state_word(old) != _state_word(line):
                return [Message(f"Notice from server '{server}': {line}", "notice")]
            return []
        sample = None if result.error else next((s for s in map(parse_sample, result.lines) if s), None)
        if sample is not None:
            self._samples.setdefault(server, deque(maxlen=SAMPLES_KEPT)).append(sample)
        return []


def _state_word(line: str) -> str:
    """The state part of a header line ("Reading network  cur 12 ack 12" -> "Reading network")."""
    return line.split("  ", 1)[0].strip()


def parse_sample(line: str) -> Sample | None:
    """``depth=<int> lag=<int> lag_s=<float>`` -> :class:`Sample`; anything else -> None."""
    try:
        parts = dict(word.split("=", 1) for word in line.split())
        return Sample(int(parts["depth"]), int(parts["lag"]), float(parts.get("lag_s", "0")))
    except (KeyError, ValueError):
        return None
