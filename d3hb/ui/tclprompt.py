"""The interactive ':' prompt of ``d3hb tcl``: one TCL command a line.

Lines are split as a shell would (quotes group words), the verb runs as the
registry action ``tcl.<verb>``, and a failure prints its one line and the
prompt comes back — as at D3's TCL.  ``off``, ``exit``, ``quit`` or end of
input ends the session.  ``write FILE ID`` with no attributes reads the body
from the following lines up to a line holding only ``.``.
"""

from __future__ import annotations

import dataclasses
import io
import shlex
import sys
from typing import TextIO

from d3hb.errors import D3hbError
from d3hb.menu.registry import Context, Registry, parse_words

PROMPT = ":"
ENDS = frozenset({"off", "exit", "quit", "bye"})


def _body(lines: TextIO) -> bytes:
    collected: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if line == ".":
            break
        collected.append(line)
    return "".join(f"{c}\n" for c in collected).encode("utf-8", "surrogateescape")


def run_line(line: str, ctx: Context, registry: Registry, lines: TextIO | None = None) -> int | None:
    """Run one command line; returns its status, or None when the line ends the session."""
    words = shlex.split(line, comments=False)
    if not words:
        return 0
    verb = words[0].lower()
    if verb in ENDS:
        return None
    if verb in ("help", "?"):
        for name in registry.names("tcl"):
            a = registry.get(name)
            ctx.out(f"  {name[4:]:<16} {a.usage}")
        return 0
    req = parse_words(words[1:], fields=False)
    if verb == "write" and len(req.args) == 2 and lines is not None:
        ctx.out("(attributes, one a line; '.' alone ends)")
        ctx = dataclasses.replace(ctx, stdin=io.BytesIO(_body(lines)))
    return registry.run(f"tcl.{verb}", ctx, req)


def run(ctx: Context, registry: Registry, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The prompt loop; the status is that of the last command run."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def out(text: str) -> None:
        stdout.write(text + "\n")
        stdout.flush()

    ctx = dataclasses.replace(ctx, out=out)
    if stdout is not sys.stdout:
        ctx = dataclasses.replace(ctx, stdout=None)  # raw bytes would bypass the given stream
    status = 0
    while True:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return status
        try:
            result = run_line(line, ctx, registry, stdin)
        except ValueError as exc:  # shlex: an unclosed quote
            out(f"d3hb: cannot read that line ({exc}); close the quotes and retry")
            status = 2
            continue
        except D3hbError as exc:
            out(f"d3hb: {exc}")
            status = exc.status
            continue
        if result is None:
            return status
        status = result
