"""Verify that master and slave agree.

Digest mode: the master writes a verify marker through its queue (digesting
its replicated files in the same transaction, :func:`d3hb.store.verify.write_marker`);
the slave digests the same files when it applies the marker.  The two sets
are compared per file and item id.  Because both sides digest at the same
transaction number, the master keeps taking writes throughout.

Report mode is what the seed's administrator does by hand: run the same
``list``/``count`` report on both systems and compare the output.  The
slave is first brought to the master's last number; if the master moved on
while the reports ran, they are run again (a few times) so both describe
one transaction number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from d3hb.errors import D3hbError, Refused
from d3hb.ops.serverdefs import Definitions
from d3hb.store import apply as store_apply
from d3hb.store import verify as sv
from d3hb.store.system import System

Out = Callable[[str], None]


@dataclass(frozen=True)
class Verification:
    tno: int
    files: int
    differences: tuple[sv.Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def _wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise D3hbError(f"timed out after {timeout:g} s waiting for {what}", "check that hot backup is running: 'd3hb hot-backup query NAME'")
        time.sleep(0.02)


def verify_digests(master: System, slave: System, name: str, *, timeout: float = 60.0, out: Out = lambda line: None) -> Verification:
    d = Definitions(master).get(name)
    if not d.is_master:
        raise Refused(f"server '{name}' on {master.name!r} is not a master", "run verify on the master system")
    tno = sv.write_marker(master, note=f"verify {name}")
    out(f"Verify marker {tno} written; waiting for {slave.name!r} to reach it")
    _wait(lambda: sv.load(slave, tno) is not None, timeout, f"slave {slave.name!r} to apply verify marker {tno}")
    mine, theirs = sv.load(master, tno) or {}, sv.load(slave, tno) or {}
    diffs = tuple(sv.compare(mine, theirs))
    for diff in diffs[:200]:
        out(diff.line())
    if len(diffs) > 200:
        out(f"... and {len(diffs) - 200} more differences")
    out(f"Verify at transaction {tno}: {len(mine)} files, " + ("both systems agree" if not diffs else f"{len(diffs)} differences"))
    return Verification(tno, len(mine), diffs)


def verify_report(master: System, slave: System, name: str, report: Callable[[System], list[str]], *,
                  timeout: float = 60.0, tries: int = 5, out: Out = lambda line: None) -> Verification:
    """Run ``report`` on both systems at the same transaction number and compare the lines."""
    for _ in range(tries):
        tno = master.queue.last_tno()
        _wait(lambda: store_apply.last_applied(slave, name) >= tno, timeout, f"slave {slave.name!r} to reach {tno}")
        # A report may open its own connection, so no snapshot can hold it still: the same
        # number before and after the report is what proves it saw that state.
        mine = report(master)
        if master.queue.last_tno() != tno or store_apply.last_applied(slave, name) != tno:
            continue
        theirs = report(slave)
        if store_apply.last_applied(slave, name) != tno:
            continue
        diffs = tuple(_line_diffs(mine, theirs))
        for diff in diffs[:200]:
            out(diff.line())
        out(f"Report at transaction {tno}: {len(mine)} lines, " + ("identical on both systems" if not diffs else f"{len(diffs)} lines differ"))
        return Verification(tno, 0, diffs)
    raise D3hbError(f"the master kept changing: no {tries} reports at one transaction number", "run the report mode in a quieter moment, or use mode=digest")


def _line_diffs(a: list[str], b: list[str]) -> list[sv.Difference]:
    out: list[sv.Difference] = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "(no line)"
        y = b[i] if i < len(b) else "(no line)"
        if x != y:
            out.append(sv.Difference(f"line {i + 1}", None, f"master {x!r}, slave {y!r}"))
    return out
