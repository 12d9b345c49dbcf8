"""Read ``menus/*.toml`` into a checked :class:`~d3hb.menu.model.MenuSet`.

Where menu files come from, lowest priority first:

1. the menus shipped with d3hb: the installed package ``d3hb.menudata``,
   or the ``menus/`` directory of a source checkout;
2. the site directory ``$D3HB_HOME/menus`` (``home/menus``): a file there
   with the name of a shipped one replaces it, any other file adds a menu.

A menu's name is its file name without ``.toml``.  Everything is checked
before any menu is shown: unknown keys, missing keys, wrong types, duplicate
or missing item numbers, dangling sub-menus and forms, unknown actions.
``tomllib`` reports no line numbers for these, so :class:`_Lines` finds the
line of the offending table or key by scanning the text; every error names
the file and the line, then what to do.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import d3hb
from d3hb.errors import D3hbError
from d3hb.menu.model import FIELD_KINDS, SERVER_MODES, SERVER_TOKEN, Field, Form, Item, Menu, MenuSet, Scope, Select

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$")


class MenuFileError(D3hbError):
    """A menu file is malformed; the text names the file and the line."""


class _Source(Protocol):  # a Path or an importlib.resources Traversable
    name: str

    def read_text(self, encoding: str = ...) -> str: ...


class _Lines:
    """Where each table and key of a TOML text is, found by a light scan.

    Tables are addressed as tuples: ``("menu",)``, ``("item", 2)`` for the
    third ``[[item]]``, ``("form", "server", "field", 0)``.  Multi-line
    strings and arrays are skipped so their contents are not taken for keys.
    """

    _HEADER = re.compile(r"^\[(\[?)\s*([^\]]+?)\s*\]\]?")
    _KEY = re.compile(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=\s*(.*)$""")

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple, int] = {}
        self.keys: dict[tuple, int] = {}
        table: tuple = ()
        counters: dict[tuple, int] = {}
        skip_until: str | None = None
        depth = 0
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if skip_until is not None:
                if skip_until in line:
                    skip_until = None
                continue
            if depth > 0:
                depth += _bracket_balance(line)
                continue
            if not line or line.startswith("#"):
                continue
            header = self._HEADER.match(line)
            if header:
                path = tuple(p.strip().strip("\"'") for p in header.group(2).split("."))
                if header.group(1):  # [[array]]
                    index = counters.get(path, 0)
                    counters[path] = index + 1
                    path = path + (index,)
                table = path
                self.headers.setdefault(table, n)
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault(table + (key.group(1).strip("\"'"),), n)
                value = key.group(2)
                for quote in ('"""', "'''"):
                    if value.startswith(quote) and value.count(quote) == 1:
                        skip_until = quote
                depth = max(0, _bracket_balance(value))

    def find(self, table: tuple, key: str | None = None) -> int:
        """The key's line, else its table's, else (an inline table) the key naming that table."""
        while True:
            if key is not None and table + (key,) in self.keys:
                return self.keys[table + (key,)]
            if table in self.headers:
                return self.headers[table]
            if not table:
                return 0
            table, key = table[:-1], str(table[-1])


def _bracket_balance(text: str) -> int:
    depth, quote = 0, ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    return depth


# ---------------------------------------------------------------- locations


def builtin_dir() -> _Source:
    """The menus shipped with d3hb: the installed package first, else the checkout's ``menus/``."""
    try:
        found = importlib.resources.files("d3hb.menudata")
        if any(entry.name.endswith(".toml") for entry in found.iterdir()):
            return found
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    return Path(d3hb.__file__).resolve().parents[1] / "menus"


def site_dir(home: Path | None = None) -> Path:
    """``$D3HB_HOME/menus``: a site's own menus, and its replacements for shipped ones."""
    if home is None:
        from d3hb.store.home import default_home

        home = Path(os.environ["D3HB_HOME"]) if os.environ.get("D3HB_HOME") else default_home()
    return Path(home) / "menus"


def menu_sources(dirs: Iterable[Any]) -> dict[str, _Source]:
    """File name stem -> file; a later directory's file replaces an earlier one's."""
    found: dict[str, _Source] = {}
    for directory in dirs:
        try:
            entries = sorted(directory.iterdir(), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.endswith(".toml") and not entry.name.startswith("."):
                found[entry.name[: -len(".toml")]] = entry
    return found


# ---------------------------------------------------------------- loading


def load_menus(
    dirs: Iterable[Any] | None = None,
    *,
    home: Path | None = None,
    registry: Any = None,
) -> MenuSet:
    """Every menu file from ``dirs`` (default: shipped, then site), checked.

    With ``registry`` every action a menu names must be registered there,
    except that a whole group with nothing registered yet (its layer not
    installed) is only logged, so the other menus stay usable.
    """
    if dirs is None:
        dirs = [builtin_dir(), site_dir(home)]
    sources = menu_sources(dirs)
    if not sources:
        raise MenuFileError("no menu files found", f"reinstall d3hb, or put menus in {site_dir(home)}")
    parts = [_FileReader(name, src).read() for name, src in sources.items()]
    return _link(parts, registry)


class _Parsed:
    def __init__(self, reader: _FileReader) -> None:
        self.reader = reader
        self.menu: Menu | None = None
        self.forms: list[Form] = []
        self.scope: Scope | None = None


class _FileReader:
    """One file: TOML -> model objects, each error with its line."""

    def __init__(self, name: str, source: _Source) -> None:
        self.name = name
        self.source = source
        self.path = Path(str(source))
        self.lines = _Lines("")

    def fail(self, line: int, what: str, todo: str) -> MenuFileError:
        where = f"{self.path} line {line}" if line else str(self.path)
        return MenuFileError(f"{where}: {what}", todo)

    def read(self) -> _Parsed:
        if not _NAME_RE.match(self.name):
            raise self.fail(0, f"menu file name {self.name!r} is not valid", "name it with lower-case letters, digits and '-', ending in .toml")
        try:
            text = self.source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(0, f"cannot read it ({exc})", "check the file's permissions and that it is UTF-8 text") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise self.fail(0, f"not valid TOML: {exc}", "fix the syntax (see d3hb-menus(5))") from None
        self.lines = _Lines(text)
        self._keys(doc, ("menu", "scope", "item", "form"), (), "the file")
        parsed = _Parsed(self)
        if "scope" in doc:
            parsed.scope = self._scope(self._table(doc, "scope", ()), ("scope",))
        for fname, fdoc in self._table(doc, "form", ()).items():
            parsed.forms.append(self._form(fname, self._table({fname: fdoc}, fname, ("form",)), ("form", fname)))
        if "menu" in doc or "item" in doc:
            parsed.menu = self._menu(doc)
        return parsed

    # -- helpers

    def _table(self, doc: Mapping, key: str, where: tuple) -> dict:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(self.lines.find(where, key), f"'{key}' must be a table", f"write it as [{'.'.join(map(str, where + (key,)))}]")
        return value

    def _keys(self, doc: Mapping, allowed: Iterable[str], where: tuple, what: str) -> None:
        allowed = tuple(allowed)
        for key in doc:
            if key not in allowed:
                raise self.fail(self.lines.find(where, key), f"unknown key '{key}' in {what}", f"allowed keys: {', '.join(allowed)}")

    def _get(self, doc: Mapping, key: str, kind: type | tuple[type, ...], where: tuple, what: str, default: Any = None, required: bool = False) -> Any:
        if key not in doc:
            if required:
                raise self.fail(self.lines.find(where), f"{what} has no '{key}'", f"add {key} = ...")
            return default
        value = doc[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            value = None  # TOML true is not a number here
        if value is None or not isinstance(value, kinds):
            names = " or ".join({str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list", dict: "a table"}[k] for k in kinds)
            raise self.fail(self.lines.find(where, key), f"'{key}' in {what} must be {names}", f"fix the value of {key}")
        if isinstance(value, str) and required and not value.strip():
            raise self.fail(self.lines.find(where, key), f"'{key}' in {what} is empty", f"give {key} a value")
        return value

    def _strings(self, doc: Mapping, key: str, where: tuple, what: str) -> tuple[str, ...]:
        value = self._get(doc, key, list, where, what, default=[])
        if not all(isinstance(v, str) for v in value):
            raise self.fail(self.lines.find(where, key), f"'{key}' in {what} must be a list of strings", f'write {key} = ["...", "..."]')
        return tuple(value)

    def _string_map(self, doc: Mapping, key: str, where: tuple, what: str) -> tuple[tuple[str, str], ...]:
        value = self._get(doc, key, dict, where, what, default={})
        if not all(isinstance(v, str) for v in value.values()):
            raise self.fail(self.lines.find(where, key), f"'{key}' in {what} must map names to strings", f'write {key} = {{ name = "value" }}')
        return tuple((k, v) for k, v in value.items())

    def _action(self, doc: Mapping, key: str, where: tuple, what: str, required: bool = False) -> str | None:
        name = self._get(doc, key, str, where, what, required=required)
        if name is not None and not _ACTION_RE.match(name):
            raise self.fail(self.lines.find(where, key), f"action name {name!r} in {what} is not valid", "write group.verb, e.g. hot-backup.status")
        return name

    def _refs(self, doc: Any, where: tuple, keys: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """(action named, line) for each action-naming key present."""
        if not isinstance(doc, dict):
            return ()
        return tuple((doc[k], self.lines.find(where, k)) for k in keys if isinstance(doc.get(k), str))

    # -- the parts of a file

    def _menu(self, doc: Mapping) -> Menu:
        where = ("menu",)
        head = self._table(doc, "menu", ())
        self._keys(head, ("title", "scope", "help"), where, "[menu]")
        title = self._get(head, "title", str, where, "[menu]", required=True)
        scope = self._get(head, "scope", str, where, "[menu]")
        raw_items = doc.get("item", [])
        if not isinstance(raw_items, list) or not raw_items:
            raise self.fail(self.lines.find(where), "the menu has no items", "add [[item]] tables with number, label and what the item does")
        items = tuple(self._item(i, raw) for i, raw in enumerate(raw_items))
        seen: dict[int, Item] = {}
        labels: dict[str, Item] = {}
        for item in items:
            if item.number in seen:
                raise self.fail(item.line, f"item number {item.number} is used twice (also line {seen[item.number].line})", "give each item its own number")
            seen[item.number] = item
            if item.label.casefold() in labels:
                raise self.fail(item.line, f"item label {item.label!r} is used twice (also line {labels[item.label.casefold()].line})", "give each item its own label")
            labels[item.label.casefold()] = item
            if item.server != "none" and not scope:
                raise self.fail(item.line, f"item {item.number} uses the selected server but the menu has no scope", 'add scope = "..." to [menu]')
        missing = sorted(set(range(1, len(items) + 1)) - set(seen))
        if missing:
            stray = next(i for i in items if i.number > len(items))
            raise self.fail(stray.line, f"item numbers must run 1 to {len(items)}; {missing[0]} is missing, item {stray.number} is beyond", "number the items 1, 2, 3 ... in the order D3 shows them")
        items = tuple(sorted(items, key=lambda i: i.number))
        return Menu(self.name, title, items, scope, self._get(head, "help", str, where, "[menu]", default=""), self.path)

    def _item(self, index: int, raw: Any) -> Item:
        where = ("item", index)
        what = f"item {index + 1}"
        if not isinstance(raw, dict):
            raise self.fail(self.lines.find(("item", index)), f"{what} is not a table", "write [[item]] tables")
        self._keys(raw, ("number", "label", "help", "action", "menu", "form", "select", "tcl", "server", "confirm", "chart",
                         "prefill", "readonly", "args", "fields", "options"), where, what)  # fmt: skip
        number = self._get(raw, "number", int, where, what, required=True)
        what = f"item {number}"
        if number < 1:
            raise self.fail(self.lines.find(where, "number"), f"{what}: numbers start at 1", "number the items 1, 2, 3 ...")
        kinds = [k for k in ("action", "menu", "form", "select", "tcl") if k in raw and raw[k] is not False]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise self.fail(self.lines.find(where), f"{what} must do exactly one of action, menu, form, select, tcl (it has {found})", "keep one of them")
        select = None
        if "select" in raw:
            sdoc = self._get(raw, "select", dict, where, what)
            self._keys(sdoc, ("list", "list-format", "verify", "create", "fixed", "prompt", "after"), where + ("select",), f"{what} select")
            select = Select(
                list_action=self._action(sdoc, "list", where + ("select",), f"{what} select"),
                list_format=self._get(sdoc, "list-format", str, where + ("select",), f"{what} select", default="lines"),
                verify=self._action(sdoc, "verify", where + ("select",), f"{what} select"),
                create=self._get(sdoc, "create", str, where + ("select",), f"{what} select"),
                fixed=self._get(sdoc, "fixed", str, where + ("select",), f"{what} select"),
                prompt=self._get(sdoc, "prompt", str, where + ("select",), f"{what} select", default="Server name"),
                after=self._get(sdoc, "after", str, where + ("select",), f"{what} select", default="stay"),
            )
            if select.list_format not in ("lines", "table"):
                raise self.fail(self.lines.find(where, "select"), f"{what}: list-format must be lines or table", 'write list-format = "lines"')
            if select.after not in ("stay", "back"):
                raise self.fail(self.lines.find(where, "select"), f"{what}: after must be stay or back", 'write after = "back"')
        server = self._get(raw, "server", str, where, what, default="none")
        if server not in SERVER_MODES:
            raise self.fail(self.lines.find(where, "server"), f"{what}: server = {server!r} is not known", f"use one of {', '.join(SERVER_MODES)}")
        item = Item(
            number=number,
            label=self._get(raw, "label", str, where, what, required=True),
            help=self._get(raw, "help", str, where, what, default=""),
            action=self._action(raw, "action", where, what),
            menu=self._get(raw, "menu", str, where, what),
            form=self._get(raw, "form", str, where, what),
            select=select,
            tcl=bool(self._get(raw, "tcl", bool, where, what, default=False)),
            server=server,
            confirm=self._get(raw, "confirm", str, where, what, default=""),
            chart=self._get(raw, "chart", bool, where, what, default=False),
            prefill=self._action(raw, "prefill", where, what),
            readonly=self._strings(raw, "readonly", where, what),
            args=self._strings(raw, "args", where, what),
            fields=self._string_map(raw, "fields", where, what),
            options=self._get(raw, "options", str, where, what, default=""),
            line=self.lines.find(where),
            refs=self._refs(raw, where, ("action", "prefill")) + self._refs(raw.get("select", {}), where + ("select",), ("list", "verify")),
        )
        if (item.prefill or item.readonly) and item.form is None:
            key = "prefill" if item.prefill else "readonly"
            raise self.fail(self.lines.find(where, key), f"{what}: {key} is only for items that open a form", f"remove {key}, or add form = ...")
        return item

    def _scope(self, doc: Mapping, where: tuple) -> Scope:
        self._keys(doc, ("name", "label", "server-field", "default-server", "state", "sample", "autoselect"), where, "[scope]")
        name = self._get(doc, "name", str, where, "[scope]", required=True)
        return Scope(
            name=name,
            label=self._get(doc, "label", str, where, "[scope]", default="Server"),
            server_field=self._get(doc, "server-field", str, where, "[scope]", default=""),
            default_server=self._get(doc, "default-server", str, where, "[scope]"),
            state=self._action(doc, "state", where, "[scope]"),
            sample=self._action(doc, "sample", where, "[scope]"),
            autoselect=self._action(doc, "autoselect", where, "[scope]"),
            source=self.path,
            line=self.lines.find(where),
            refs=self._refs(doc, where, ("state", "sample", "autoselect")),
        )

    def _form(self, name: str, doc: Mapping, where: tuple) -> Form:
        what = f"form {name!r}"
        if not _NAME_RE.match(name):
            raise self.fail(self.lines.find(where), f"{what}: the name is not valid", "use lower-case letters, digits and '-'")
        self._keys(doc, ("title", "action", "help", "args", "field"), where, what)
        raw_fields = self._get(doc, "field", list, where, what, required=True)
        fields: list[Field] = []
        for index, raw in enumerate(raw_fields):
            fields.append(self._field(raw, where + ("field", index), f"{what} field {index + 1}", fields))
        if not fields:
            raise self.fail(self.lines.find(where), f"{what} has no fields", f"add [[form.{name}.field]] tables")
        args = self._strings(doc, "args", where, what)
        for key in args:
            if not any(f.key == key for f in fields):
                raise self.fail(self.lines.find(where, "args"), f"{what}: args names {key!r}, which is not a field", "name the form's own field keys")
        return Form(
            name=name,
            title=self._get(doc, "title", str, where, what, required=True),
            action=self._action(doc, "action", where, what, required=True),
            fields=tuple(fields),
            help=self._get(doc, "help", str, where, what, default=""),
            args=args,
            source=self.path,
            line=self.lines.find(where),
            refs=self._refs(doc, where, ("action",)),
        )

    def _field(self, raw: Any, where: tuple, what: str, before: list[Field]) -> Field:
        if not isinstance(raw, dict):
            raise self.fail(self.lines.find(where), f"{what} is not a table", "write [[form.NAME.field]] tables")
        self._keys(raw, ("key", "label", "help", "default", "required", "kind", "choices", "min", "max", "pattern", "pattern-help",
                         "max-length", "readonly", "secret", "when"), where, what)  # fmt: skip
        key = self._get(raw, "key", str, where, what, required=True)
        what = f"{what} ({key})"
        if any(f.key == key for f in before):
            raise self.fail(self.lines.find(where, "key"), f"{what}: key {key!r} is used twice", "give each field its own key")
        default = self._get(raw, "default", (str, int, float), where, what, default="")
        kind = self._get(raw, "kind", str, where, what, default="text")
        if kind not in FIELD_KINDS:
            raise self.fail(self.lines.find(where, "kind"), f"{what}: kind {kind!r} is not known", f"use one of {', '.join(FIELD_KINDS)}")
        pattern = self._get(raw, "pattern", str, where, what)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(self.lines.find(where, "pattern"), f"{what}: pattern is not a valid regular expression ({exc})", "fix the pattern") from None
        when = self._string_map(raw, "when", where, what)
        for other, _value in when:
            if not any(f.key == other for f in before):
                raise self.fail(self.lines.find(where, "when"), f"{what}: 'when' names {other!r}, which is not an earlier field", "name a field that comes before this one")
        minimum = self._get(raw, "min", (int, float), where, what)
        maximum = self._get(raw, "max", (int, float), where, what)
        if minimum is not None and maximum is not None and minimum > maximum:
            raise self.fail(self.lines.find(where, "min"), f"{what}: min is above max", "swap them")
        if (minimum is not None or maximum is not None) and kind == "text":
            raise self.fail(self.lines.find(where, "min" if minimum is not None else "max"), f"{what}: min and max need kind int or number", 'add kind = "int"')
        max_length = self._get(raw, "max-length", int, where, what)
        field = Field(
            key=key,
            label=self._get(raw, "label", str, where, what, required=True),
            help=self._get(raw, "help", str, where, what, default=""),
            default=str(default),
            required=self._get(raw, "required", bool, where, what, default=False),
            kind=kind,
            choices=self._strings(raw, "choices", where, what),
            minimum=None if minimum is None else float(minimum),
            maximum=None if maximum is None else float(maximum),
            pattern=pattern,
            pattern_help=self._get(raw, "pattern-help", str, where, what, default=""),
            max_length=max_length,
            readonly=self._get(raw, "readonly", bool, where, what, default=False),
            secret=self._get(raw, "secret", bool, where, what, default=False),
            when=when,
            line=self.lines.find(where),
        )
        if field.default and SERVER_TOKEN not in field.default:
            try:
                field.check(field.default)
            except D3hbError as exc:
                raise self.fail(self.lines.find(where, "default"), f"{what}: the default breaks the field's own rules ({exc.what})", "fix the default or the rules") from None
        return field


def _link(parts: list[_Parsed], registry: Any) -> MenuSet:
    """Cross-file checks: scopes, forms and sub-menus named must exist; actions must be known."""
    menus: dict[str, Menu] = {}
    forms: dict[str, tuple[Form, _FileReader]] = {}
    scopes: dict[str, tuple[Scope, _FileReader]] = {}
    for part in parts:
        r = part.reader
        if part.scope is not None:
            if part.scope.name in scopes:
                other = scopes[part.scope.name][1]
                raise r.fail(part.scope.line, f"scope {part.scope.name!r} is also defined in {other.path}", "define each scope in one file")
            scopes[part.scope.name] = (part.scope, r)
        for form in part.forms:
            if form.name in forms:
                other = forms[form.name][1]
                raise r.fail(form.line, f"form {form.name!r} is also defined in {other.path}", "define each form in one file, or rename one")
            forms[form.name] = (form, r)
        if part.menu is not None:
            menus[part.menu.name] = part.menu
    readers = {p.menu.name: p.reader for p in parts if p.menu is not None}
    for name, menu in menus.items():
        r = readers[name]
        if menu.scope and menu.scope not in scopes:
            raise r.fail(r.lines.find(("menu",), "scope"), f"scope {menu.scope!r} is not defined", f"define it in a [scope] table; scopes: {', '.join(sorted(scopes)) or 'none'}")
        for item in menu.items:
            if item.menu is not None and item.menu not in menus:
                raise r.fail(item.line, f"item {item.number} opens menu {item.menu!r}, which does not exist", f"add {item.menu}.toml, or name one of: {', '.join(sorted(menus))}")
            for ref in (item.form, item.select.create if item.select else None):
                if ref is not None and ref not in forms:
                    raise r.fail(item.line, f"item {item.number} uses form {ref!r}, which is not defined", f"define [form.{ref}], or name one of: {', '.join(sorted(forms)) or 'none'}")
            if item.select is not None and not menu.scope:
                raise r.fail(item.line, f"item {item.number} selects a server but the menu has no scope", 'add scope = "..." to [menu]')
            if item.form is not None:
                form = forms[item.form][0]
                for key in item.readonly:
                    if form.field(key) is None:
                        raise r.fail(item.line, f"item {item.number}: readonly names {key!r}, not a field of form {form.name!r}", "name one of the form's field keys")
    result = MenuSet(menus, {k: v[0] for k, v in forms.items()}, {k: v[0] for k, v in scopes.items()})
    if registry is not None:
        check_actions(result, registry)
    return result


def check_actions(menus: MenuSet, registry: Any) -> None:
    """Every action named must be registered; a group with nothing registered is only logged."""
    absent: set[str] = set()
    for name, (path, line) in sorted(menus.actions().items()):
        if name in registry:
            continue
        group = name.split(".", 1)[0]
        if not registry.names(group):
            if group not in absent:
                absent.add(group)
                logger.warning("the menus name %s actions but none is installed yet; those options will fail", group)
            continue
        where = f"{path} line {line}" if line else str(path)
        known = ", ".join(n.split(".", 1)[1] for n in registry.names(group))
        raise MenuFileError(f"{where}: unknown action {name!r}", f"known {group} actions: {known}")
