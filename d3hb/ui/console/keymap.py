"""Which key does what in the console, as data.

Digits, letters and Enter are typed into the input line, as on a D3 screen:
the session gets whole lines.  The keys below are the ones that act at once.
``x`` and ``?`` act only when the input line is empty, so they can still be
typed inside a value.
"""

from __future__ import annotations

# key (as urwid names it) -> command
KEYS: dict[str, str] = {
    "esc": "back",
    "up": "up",
    "down": "down",
    "home": "first",
    "end": "last",
    "page up": "page up",
    "page down": "page down",
    "enter": "submit",
    "f1": "help",
    "ctrl l": "redraw",
}
# Only on an empty input line.
WHEN_EMPTY: dict[str, str] = {
    "?": "help",
    "x": "back-key",
    "X": "back-key",
}
HINTS = "Esc/X back  ? help"


def command(key: str, input_empty: bool) -> str | None:
    """The command a key stands for now, or None when it is just typed."""
    if key in KEYS:
        return KEYS[key]
    if input_empty and key in WHEN_EMPTY:
        return WHEN_EMPTY[key]
    return None
