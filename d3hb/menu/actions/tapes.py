"""TCL tape commands: save, account-save, restore, account-restore, t-dump, t-load,
set-device, txn-dump, txn-load.

Thin adapters: the words of the command become a call into
:mod:`d3hb.ops.saves` on the attached tape device (:mod:`d3hb.ops.tapes`).
Progress goes to ``ctx.progress`` and, on a terminal, a status line a
second; a script gets the one-line summary only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from d3hb.errors import Refused, UsageError
from d3hb.menu.actions.common import open_system, table
from d3hb.menu.registry import Context, Request, action
from d3hb.ops import running, saves, tapeio, tapes
from d3hb.ops.tapeio import Figures
from d3hb.store import Home


def _progress(ctx: Context, operation: str, every: float = 1.0):
    """Figures as the operation goes: a line a second on a terminal, and for tape-socket Query."""
    last = [0.0]
    system_dir = Home(ctx.home).system_path(ctx.system)

    def show(f: Figures) -> None:
        ctx.progress(f.bytes, f.total, "bytes")
        now = time.monotonic()
        tapeio.publish(system_dir, operation, f)  # the Meter calls at most four times a second
        if ctx.interactive and now - last[0] >= every:
            last[0] = now
            ctx.out(f.line())

    return show


def _published_done(ctx: Context, report: saves.Report) -> None:
    tapeio.publish(Home(ctx.home).system_path(ctx.system), report.operation, report.figures, done=True)


def _devices(ctx: Context) -> tapes.Devices:
    return tapes.Devices(Home(ctx.home).system_path(ctx.system))


def _report(ctx: Context, report: saves.Report) -> None:
    _published_done(ctx, report)
    lab = report.label
    when = time.strftime("%H:%M:%S %d %b %Y", time.localtime(lab.created))
    ctx.out(f"Tape label: {lab.kind} of system {lab.system!r} {when}{'  ' + lab.text if lab.text else ''} (transaction {lab.start_tno})")
    if ctx.interactive:
        ctx.out(report.figures.line())  # the last progress line, whatever the second it fell in
    for note in report.notes:
        ctx.out(note)
    ctx.out(report.summary())


@contextlib.contextmanager
def _writing(ctx: Context) -> Iterator:
    dev = _devices(ctx).attached()
    if dev.type == "c":
        ctx.out(f"Writing to pipe {dev.path} (waiting for its reader)")
    with tapes.open_for_write(dev, ctx.stdout) as fh:
        yield fh


@contextlib.contextmanager
def _reading(ctx: Context, kinds: tuple[str, ...]) -> Iterator:
    """The attached tape; ``kinds`` (what the command reads) picks the newest such set on a vault device."""
    dev = _devices(ctx).attached()
    if dev.type == "c":
        ctx.out(f"Reading from pipe {dev.path} (waiting for its writer)")
    with tapes.open_for_read(dev, ctx.stdin, kinds) as fh:
        yield fh, tapes.size_of(dev, kinds)


@action("tcl.save", "Full save of the system to the attached tape device", "{label text} {(h k}")
def save(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s, _writing(ctx) as fh:
        r = saves.save(s, fh, renumber=req.has("k"), keep_queue=req.has("h"), text=" ".join(req.args), progress=_progress(ctx, "save"))
    _report(ctx, r)


@action("tcl.account-save", "Save accounts to the attached tape device", "ACCOUNT ... {(h}")
def account_save(ctx: Context, req: Request) -> None:
    if not req.args:
        raise UsageError("no account named", "give the accounts: account-save ACCOUNT ...")
    with open_system(ctx) as s, _writing(ctx) as fh:
        r = saves.save(s, fh, accounts=req.args, keep_queue=req.has("h"), progress=_progress(ctx, "account-save"))
    _report(ctx, r)


@action("tcl.restore", "Full restore of the system from the attached tape (replaces everything)", "{HOT-BACKUP-SERVER ...}")
def restore(ctx: Context, req: Request) -> None:
    home = Home(ctx.home)
    if home.exists(ctx.system) and not ctx.confirm(f"Restore replaces all of system '{ctx.system}'. Continue?"):
        raise UsageError(f"system {ctx.system!r} not restored", "answer Y, or give --yes")
    busy = running.servers(home.system_path(ctx.system))
    if busy:  # asked before a pipe is opened, which would wait for its writer
        raise Refused(f"server {busy[0]!r} of system {ctx.system!r} is running", "stop the servers of this system, then restore")
    with _reading(ctx, ("save",)) as (fh, size):
        r = saves.restore(home.system_path(ctx.system), ctx.system, fh, servers=req.args, progress=_progress(ctx, "restore"), total=size)
    _report(ctx, r)


@action("tcl.account-restore", "Restore one account from a save or account-save tape into this system", "ACCOUNT {NAME-ON-TAPE}")
def account_restore(ctx: Context, req: Request) -> None:
    target = req.arg(0, "account name")
    on_tape = req.args[1] if len(req.args) > 1 else target
    with open_system(ctx) as s, _reading(ctx, ("save", "account-save")) as (fh, size):
        r = saves.account_restore(s, fh, on_tape, new_name=target, progress=_progress(ctx, "account-restore"), total=size)
    _report(ctx, r)


def _file_ref(req: Request) -> tuple[str, tuple[str, ...]]:
    words = list(req.args)
    if not words:
        raise UsageError("no file named", "give the file: t-dump FILE {ITEM ...}")
    if words[0].lower() in ("dict", "data") and len(words) > 1:
        return f"{words[0]} {words[1]}", tuple(words[2:])
    return words[0], tuple(words[1:])


@action("tcl.t-dump", "Dump a file's items to the attached tape device", "FILE {ITEM ...}")
def t_dump(ctx: Context, req: Request) -> None:
    ref, ids = _file_ref(req)
    with open_system(ctx) as s, _writing(ctx) as fh:
        r = saves.t_dump(s, ctx.account, ref, fh, ids=ids or None, progress=_progress(ctx, "t-dump"))
    _report(ctx, r)


@action("tcl.t-load", "Load a t-dump tape into a file", "FILE {ITEM ...} {(o v}")
def t_load(ctx: Context, req: Request) -> None:
    ref, ids = _file_ref(req)
    with open_system(ctx) as s, _reading(ctx, ("t-dump",)) as (fh, size):
        r = saves.t_load(s, ctx.account, ref, fh, ids=ids or None, overwrite=req.has("o"), verify_only=req.has("v"),
                         progress=_progress(ctx, "t-load"), total=size)
    _report(ctx, r)


@action("tcl.set-device", "List the tape devices, attach one, or define one", "{N {PATH {f|c|-|v}}}")
def set_device(ctx: Context, req: Request) -> None:
    devs = _devices(ctx)
    if req.args:
        try:
            n = int(req.args[0])
        except ValueError:
            raise UsageError(f"tape device {req.args[0]!r} is not a number", "devices are numbered from 0: set-device N") from None
        if len(req.args) > 1:
            devs.define(n, req.args[1], req.args[2] if len(req.args) > 2 else "f")
        dev = devs.attach(n)
        ctx.out(f"Tape device {dev.number} attached: {dev.path} ({dev.kind})")
        return
    current = devs.attached_number()
    table(ctx, ("Dev", "Path", "Type", ""), [(d.number, d.path, f"{d.type} ({d.kind})", "attached" if d.number == current else "") for d in devs.list()])


@action("tcl.txn-dump", "Write queued transactions to the attached tape device", "{FIRST {LAST}}")
def txn_dump(ctx: Context, req: Request) -> None:
    try:
        nums = [int(a) for a in req.args[:2]]
    except ValueError:
        raise UsageError("transaction numbers must be numbers", "txn-dump {FIRST {LAST}}") from None
    with open_system(ctx) as s, _writing(ctx) as fh:
        r = saves.txn_dump(s, fh, first=nums[0] if nums else None, last=nums[1] if len(nums) > 1 else None, progress=_progress(ctx, "txn-dump"))
    _report(ctx, r)


@action("tcl.txn-load", "Apply a transaction tape once (numbers already loaded are skipped)", "{(v l}")
def txn_load(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s, _reading(ctx, ("txn-dump",)) as (fh, size):
        r = saves.txn_load(s, fh, verify_only=req.has("v"), relog=req.has("l"), progress=_progress(ctx, "txn-load"), total=size)
    _report(ctx, r)
