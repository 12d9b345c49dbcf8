"""Helpers every action module shares: opening the system, printing tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from d3hb.errors import UsageError
from d3hb.menu.registry import Context, Request
from d3hb.ops.serverdefs import Definitions
from d3hb.store import Home, System


@contextlib.contextmanager
def open_system(ctx: Context, name: str | None = None) -> Iterator[System]:
    system = Home(ctx.home).open(name or ctx.system)
    try:
        yield system
    finally:
        system.close()


def server_name(ctx: Context, req: Request, system: System) -> str:
    """The hot-backup server an action is about: its argument, the menu's selected one, or the only one defined."""
    if req.args:
        return req.args[0]
    if ctx.server:
        return ctx.server
    names = Definitions(system).names()
    if len(names) == 1:
        return names[0]
    raise UsageError("which server?", f"give its name ({', '.join(names) or 'none defined yet: use setup'})")


def show_bytes(data: bytes) -> str:
    """Bytes for a terminal: UTF-8 when it is, else one byte one character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def table(ctx: Context, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Columns as wide as their widest cell, D3-style: header, rule, rows."""
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    ctx.out(fmt.format(*cells[0]).rstrip())
    ctx.out("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        ctx.out(fmt.format(*r).rstrip())
