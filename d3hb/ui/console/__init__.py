"""The full-screen console front end (urwid): ``d3hb menu``, ``d3hb hot-backup`` on a terminal.

:func:`run` is the entry point; :class:`~d3hb.ui.console.app.ConsoleApp` is
the front end itself, usable without a terminal (tests render it to text).
"""

from __future__ import annotations

from d3hb.ui.console.app import ConsoleApp, run

__all__ = ["ConsoleApp", "run"]
