"""The console's widgets: header, menus, the right-hand panel, messages, input.

The screen is laid out as D3 lays out its Hot Backup screens::

    header    menu title                                   Server: NAME
              the server's state, refreshed live
    body      the menu (left)   | a sub-menu, form, list, help or output (right)
    messages  the message section: errors, "Notice from server 'NAME'"
    input     Enter option: _                              Esc/X back  ? help

Widgets here only draw what they are given; :mod:`d3hb.ui.console.app`
decides what that is.  Nothing here runs actions or talks to the session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import urwid

from d3hb.menu.model import FormRow, Header, Menu, Sample
from d3hb.ui.console.keymap import HINTS
from d3hb.ui.console.palette import Style

MIN_SIZE = (40, 12)
MESSAGE_LINES = 3
CHART_WIDTH = 20
CHART_SAMPLES = 20
OUTPUT_KEPT = 2000  # lines of output kept on screen; an action printing more keeps only the last ones


def _box(widget: urwid.Widget, title: str, style: Style) -> urwid.LineBox:
    return urwid.LineBox(urwid.Padding(widget, left=1, right=1), title=title, title_align="left", **style.box())


def _listbox(rows: Sequence[urwid.Widget], focus: int | None = None) -> urwid.ListBox:
    walker = urwid.SimpleFocusListWalker(list(rows) or [urwid.Text("")])
    box = urwid.ListBox(walker)
    if focus is not None and 0 <= focus < len(walker):
        box.focus_position = focus
    return box


class HeaderBar(urwid.WidgetWrap):
    """Two lines: the menu's title with the selected server, then the server's state."""

    def __init__(self) -> None:
        self._title = urwid.Text("", wrap="ellipsis")
        self._server = urwid.Text("", align="right", wrap="clip")
        self._state = urwid.Text("", wrap="ellipsis")
        row = urwid.Columns([self._title, ("pack", self._server)], dividechars=1)
        super().__init__(urwid.AttrMap(urwid.Pile([row, urwid.AttrMap(self._state, "state")]), "header"))

    def set(self, header: Header) -> None:
        self._title.set_text(f" {header.title}")
        self._server.set_text(f"{header.label}: {header.server or '(none selected)'} ")
        self._state.set_text(f" {header.state}" if header.state else " ")


def menu_box(menu: Menu, depth: int, highlight: int | None, style: Style, active: bool = True) -> urwid.Widget:
    """A menu as D3 lists it: ``1. Status`` ... and ``X. Exit`` (``X. Back`` in a sub-menu)."""
    wide = len(menu.items) > 9
    rows: list[urwid.Widget] = []
    for i, item in enumerate(menu.items):
        chosen = active and i == highlight
        number = f"{item.number:>2}" if wide else str(item.number)
        text = urwid.Text(f"{style.marker if chosen else ' '}{number}. {item.label}", wrap="ellipsis")
        rows.append(urwid.AttrMap(text, "focus" if chosen else ("item" if active else "dim")))
    back = f"{'X':>2}" if wide else "X"
    rows.append(urwid.AttrMap(urwid.Text(f" {back}. {'Exit' if depth == 1 else 'Back'}", wrap="ellipsis"), "item" if active else "dim"))
    return _box(_listbox(rows, highlight if active else None), menu.title, style)


def form_box(title: str, rows: Sequence[FormRow], style: Style) -> urwid.Widget:
    """A form: each field with its value; the one being asked is marked."""
    width = min(22, max((len(r.label) for r in rows), default=10) + 1)
    lines: list[urwid.Widget] = []
    focus = None
    for i, row in enumerate(rows):
        number = f"{row.number:>2}" if row.number is not None else "  "
        mark = style.marker if row.current else " "
        label = row.label if len(row.label) <= width else row.label[: width - 1] + "."
        text = urwid.Text(f"{mark}{number} {label:.<{width}} {row.value}", wrap="ellipsis")
        lines.append(urwid.AttrMap(text, "current" if row.current else ("readonly" if row.readonly else "item")))
        if row.current:
            focus = i
    return _box(_listbox(lines, focus), title, style)


def choices_box(title: str, choices: Sequence[str], highlight: int, style: Style) -> urwid.Widget:
    rows = []
    for i, name in enumerate(choices):
        chosen = i == highlight
        rows.append(urwid.AttrMap(urwid.Text(f"{style.marker if chosen else ' '}{i + 1:>2}. {name}", wrap="ellipsis"), "focus" if chosen else "item"))
    return _box(_listbox(rows, highlight), title, style)


def help_box(title: str, lines: Sequence[str], style: Style) -> urwid.Widget:
    return _box(_listbox([urwid.Text(line) for line in lines]), f"Help: {title}", style)


def text_box(title: str, lines: Sequence[str], style: Style) -> urwid.Widget:
    return _box(_listbox([urwid.Text(line) for line in lines]), title, style)


class OutputView(urwid.WidgetWrap):
    """What an action prints, following the end; with a queue-depth and lag chart when asked."""

    def __init__(self, title: str, chart: bool, style: Style) -> None:
        self.title = title
        self.walker = urwid.SimpleFocusListWalker([])
        self.list = urwid.ListBox(self.walker)
        self.status = urwid.Text("", wrap="ellipsis")
        self.follow = True
        self.depth: urwid.BarGraph | None = None
        self.lag: urwid.BarGraph | None = None
        body: urwid.Widget = self.list
        if chart:
            # Without colour the bars are drawn with '#', so they show on any terminal (and in text).
            segments = ["bar bg", "bar"] if style.colour and not style.ascii else ["bar bg", ("bar", "#")]
            self.depth = urwid.BarGraph(segments)
            self.lag = urwid.BarGraph(segments)
            self.depth_label = urwid.Text("Queue depth", wrap="clip")
            self.lag_label = urwid.Text("Lag (s)", wrap="clip")
            side = urwid.Pile([("pack", self.depth_label), self.depth, ("pack", self.lag_label), self.lag])
            body = urwid.Columns([self.list, (CHART_WIDTH, side)], dividechars=1)
        self._status_slot = urwid.WidgetPlaceholder(self.status)
        super().__init__(_box(urwid.Pile([body, ("pack", self._status_slot)]), title, style))

    @property
    def lines(self) -> list[str]:
        return [w.text for w in self.walker]

    def append(self, line: str) -> None:
        self.walker.append(urwid.Text(line))
        if len(self.walker) > OUTPUT_KEPT + OUTPUT_KEPT // 4:
            del self.walker[: len(self.walker) - OUTPUT_KEPT]
        if self.follow:
            self.walker.set_focus(len(self.walker) - 1)

    def scroll(self, rows: int) -> None:
        """Move the view by ``rows`` (negative: up); back at the end it follows new lines again."""
        if not self.walker:
            return
        pos = max(0, min(len(self.walker) - 1, self.list.focus_position + rows))
        self.list.focus_position = pos
        self.follow = pos == len(self.walker) - 1

    def set_samples(self, samples: Sequence[Sample]) -> None:
        if self.depth is None or self.lag is None:
            return
        recent = list(samples)[-CHART_SAMPLES:]
        depths = [s.depth for s in recent]
        lags = [s.lag_s for s in recent]
        top_d = max(depths, default=0)
        top_l = max(lags, default=0.0)
        self.depth.set_data([[d] for d in depths], max(1, top_d))
        self.lag.set_data([[x] for x in lags], max(1.0, top_l))
        last = recent[-1] if recent else None
        self.depth_label.set_text(f"Queue {last.depth} (max {top_d})" if last else "Queue depth")
        self.lag_label.set_text(f"Lag {last.lag_s:g}s (max {top_l:g})" if last else "Lag (s)")

    def set_status(self, text: str, done: int | None = None, total: int | None = None) -> None:
        """A running operation's line; with a total, a progress bar."""
        if total:
            bar = urwid.ProgressBar("pg normal", "pg complete", min(done or 0, total), total)
            self._status_slot.original_widget = urwid.Columns([("pack", urwid.Text(text + " ")), bar])
        else:
            self.status.set_text(text)
            self._status_slot.original_widget = self.status


class MessagesView(urwid.WidgetWrap):
    """The message section: the last few messages, newest at the bottom."""

    def __init__(self, style: Style) -> None:
        rule = style.rule
        self._lines = [urwid.Text("", wrap="ellipsis") for _ in range(MESSAGE_LINES)]
        self._attrs = [urwid.AttrMap(t, "info") for t in self._lines]
        title = urwid.Columns([(2, urwid.Divider(rule)), ("pack", urwid.Text(" Messages ")), urwid.Divider(rule)])
        super().__init__(urwid.Pile([urwid.AttrMap(title, "dim"), *self._attrs]))

    def set(self, messages: Sequence[tuple[str, str]]) -> None:
        shown = list(messages)[-MESSAGE_LINES:]
        shown = [("info", "")] * (MESSAGE_LINES - len(shown)) + shown
        for text, attr, (level, message) in zip(self._lines, self._attrs, shown):
            text.set_text(f" {message}" if message else "")
            attr.set_attr_map({None: level})


class InputLine(urwid.WidgetWrap):
    """``Enter option: _`` and the key hints."""

    def __init__(self) -> None:
        self.edit = urwid.Edit("")
        self._caption = urwid.AttrMap(self.edit, "prompt")
        super().__init__(urwid.Columns([self._caption, ("pack", urwid.AttrMap(urwid.Text(HINTS), "hint"))], dividechars=1))

    def set_prompt(self, caption: str, secret: bool = False) -> None:
        self.edit.set_caption(caption)
        self.edit.set_edit_text("")
        self.edit.set_mask("*" if secret else None)

    @property
    def text(self) -> str:
        return self.edit.edit_text

    def clear(self) -> None:
        self.edit.set_edit_text("")

    def type_key(self, key: str, width: int) -> None:
        self.edit.keypress((max(1, width - len(HINTS) - 1),), key)


class Screen(urwid.WidgetWrap):
    """The whole screen.  Every key goes to ``on_key(key, size)``; a true result means handled."""

    def __init__(self, style: Style, on_key: Callable[[str, tuple[int, ...]], bool]) -> None:
        self.style = style
        self.on_key = on_key
        self.header = HeaderBar()
        self.left = urwid.WidgetPlaceholder(urwid.SolidFill(" "))
        self.right = urwid.WidgetPlaceholder(urwid.SolidFill(" "))
        self.messages = MessagesView(style)
        self.input = InputLine()
        body = urwid.Columns([("weight", 2, self.left), ("weight", 3, self.right)])
        footer = urwid.Pile([self.messages, self.input], focus_item=1)
        self.frame = urwid.Frame(body, header=self.header, footer=footer, focus_part="footer")
        super().__init__(self.frame)

    def selectable(self) -> bool:
        return True

    def keypress(self, size: tuple[int, ...], key: str) -> str | None:
        return None if self.on_key(key, size) else key

    def render(self, size: tuple[int, ...], focus: bool = False) -> urwid.Canvas:
        cols, rows = size[0], size[1] if len(size) > 1 else MIN_SIZE[1]
        if cols < MIN_SIZE[0] or rows < MIN_SIZE[1]:
            note = urwid.Text(f"Terminal too small ({cols}x{rows}): make it at least {MIN_SIZE[0]}x{MIN_SIZE[1]}", align="center")
            return urwid.Filler(note).render(size, focus)
        return super().render(size, focus)

    def text(self, size: tuple[int, int] = (80, 24)) -> str:
        """The screen as plain text, one line per row (golden screens, debugging)."""
        return "\n".join(row.decode("utf-8").rstrip() for row in self.render(size).text)
