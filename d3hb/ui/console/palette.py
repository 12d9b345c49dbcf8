"""How the console looks: colours (or none), and line drawing (or plain ASCII).

Everything stays readable without colour: in monochrome (``NO_COLOR`` set,
or a ``TERM`` such as ``vt100``) the palette's mono column uses only bold,
underline and reverse video ("standout"), which every VT100 has.  Box
drawing falls back to ``+ - |`` when the terminal or the locale cannot show
line-drawing characters, or when ``D3HB_ASCII=1``.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Mapping
from dataclasses import dataclass

MONO_TERMS = frozenset({"dumb", "vt52", "vt100", "vt102", "vt220", "vt320", "vt420"})
ASCII_TERMS = frozenset({"dumb", "vt52", "vt100", "vt102", "vt220", "vt320", "vt420"})

# (name, foreground, background, mono): mono is what a terminal without colour shows.
PALETTE: list[tuple[str, str, str, str]] = [
    ("header", "white,bold", "dark blue", "standout"),
    ("state", "light cyan", "dark blue", "standout"),
    ("title", "white,bold", "", "bold"),
    ("dim", "dark gray", "", ""),
    ("item", "", "", ""),
    ("focus", "black", "light gray", "standout"),
    ("current", "yellow,bold", "", "standout"),
    ("readonly", "dark gray", "", ""),
    ("error", "light red,bold", "", "bold"),
    ("notice", "yellow,bold", "", "bold"),
    ("info", "", "", ""),
    ("prompt", "white,bold", "", "bold"),
    ("hint", "dark gray", "", ""),
    ("bar", "", "dark cyan", "standout"),
    ("bar bg", "", "", ""),
    ("pg normal", "", "dark gray", ""),
    ("pg complete", "", "dark cyan", "standout"),
]


@dataclass(frozen=True)
class Style:
    colour: bool = True
    ascii: bool = False

    def box(self) -> dict[str, str]:
        """LineBox characters."""
        if not self.ascii:
            return {}
        return {"tlcorner": "+", "tline": "-", "lline": "|", "trcorner": "+", "blcorner": "+", "rline": "|", "bline": "-", "brcorner": "+"}

    @property
    def rule(self) -> str:
        return "-" if self.ascii else "\u2500"

    @property
    def marker(self) -> str:
        return ">"


def style_from_env(env: Mapping[str, str] | None = None) -> Style:
    env = os.environ if env is None else env
    term = env.get("TERM", "")
    mono = bool(env.get("NO_COLOR")) or term in MONO_TERMS
    utf8 = "utf" in (locale.getpreferredencoding(False) or "").lower()
    plain = env.get("D3HB_ASCII") == "1" or term in ASCII_TERMS or not utf8
    return Style(colour=not mono, ascii=plain)
