"""``d3hb hot-backup promote | switchover | rejoin | reseed | resync | failback | verify``.

Thin adapters over d3hb.ops.failover, d3hb.ops.rejoin and d3hb.ops.verify.
Commands that act on both systems of a pair find the other one by name in
the same d3hb home: a master's ``target=``, or ``peer=SYSTEM``.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path

from d3hb.errors import UsageError
from d3hb.menu.actions.common import open_system, server_name
from d3hb.menu.registry import Context, FieldSpec, Request, action, load_actions, parse_words
from d3hb.ops import failover, rejoin, verify
from d3hb.store import Home, System


@contextlib.contextmanager
def _other(ctx: Context, req: Request, system: System, name: str, field: str = "peer") -> Iterator[System]:
    """The other system of the pair: ``peer=``, else the master definition's target."""
    other = req.fields.get(field) or failover.require_target(system, name)
    s = Home(ctx.home).open(other)
    try:
        yield s
    finally:
        s.close()


@action("hot-backup.promote", "Promote this slave to master ((f: even if still connected to a master)", "NAME {(f}")
def promote(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        failover.promote(s, server_name(ctx, req, s), force=req.has("f"), out=ctx.out)


@action("hot-backup.switchover", "Planned switchover: the slave becomes the master, nothing lost", "NAME {host=ADDRESS}",
        (FieldSpec("host", "how the new master reaches this system (default: the pair's loopback address)"),))
def switchover(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        with _other(ctx, req, s, name, "target") as slave:
            failover.switchover(s, slave, name, host=req.fields.get("host"), out=ctx.out)


@action("hot-backup.rejoin", "Rejoin this old master as the slave of the promoted system ((r: re-seed it if it diverged)",
        "NAME peer=SYSTEM {host=ADDRESS} {tape=PATH} {resync=yes|no} {(r}",
        (FieldSpec("peer", "the promoted system (the new master)"),
         FieldSpec("host", "how the new master reaches this system"),
         FieldSpec("tape", "where divergent transactions are dumped (default: in this system's directory)"),
         FieldSpec("resync", "yes: re-seed this system from the new master if it diverged (the same as (r)")))
def rejoin_(ctx: Context, req: Request) -> None:
    if "peer" not in req.fields:
        raise UsageError("missing peer=SYSTEM", "name the promoted system: peer=backup")
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        with _other(ctx, req, s, name) as new_master:
            tape = Path(req.fields["tape"]) if req.fields.get("tape") else None
            _, fresh = rejoin.rejoin(s, new_master, name, host=req.fields.get("host"), tape=tape, resync=req.has("r") or _yes(req, "resync"), out=ctx.out)
            if fresh is not s:
                fresh.close()


def _yes(req: Request, key: str) -> bool:
    """A yes/no field, the form's way of giving an option (forms send fields, not options)."""
    value = req.fields.get(key, "no").strip().lower()
    if value not in ("yes", "y", "no", "n"):
        raise UsageError(f"{key}={value} is neither yes nor no", f"give {key}=yes or {key}=no")
    return value in ("yes", "y")


def _reseed(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        target = req.fields.get("peer") or failover.require_target(s, name)
        slave = Home(ctx.home).open(target)
        _, fresh = rejoin.reseed(s, slave, name, out=ctx.out)
        fresh.close()


@action("hot-backup.reseed", "Re-seed the slave from a save of this master; users keep working", "NAME {peer=SYSTEM}")
def reseed(ctx: Context, req: Request) -> None:
    _reseed(ctx, req)


@action("hot-backup.resync", "Resync the slave: the same as reseed (for a pair marked 'resync required')", "NAME {peer=SYSTEM}")
def resync(ctx: Context, req: Request) -> None:
    _reseed(ctx, req)


@action("hot-backup.failback", "Failback by tapes: save/restore the main system, tapes in rounds, switch back",
        "NAME main=SYSTEM {tapes=DIR} {near=N}",
        (FieldSpec("main", "the repaired main system"), FieldSpec("tapes", "directory for the transaction tapes"),
         FieldSpec("near", "transactions left that count as almost in sync (default 100)")))
def failback(ctx: Context, req: Request) -> None:
    if "main" not in req.fields:
        raise UsageError("missing main=SYSTEM", "name the repaired main system")
    near = req.fields.get("near", "100")
    if not near.isdigit():
        raise UsageError(f"near={near} is not a number", "give near=N")
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        main = Home(ctx.home).open(req.fields["main"])
        tapes = Path(req.fields.get("tapes") or s.path / "failback")
        _, fresh = rejoin.tape_failback(s, main, name, tapes, near=int(near), out=ctx.out)
        fresh.close()


@action("hot-backup.verify", "Verify that the slave agrees with this master (mode=digest, or mode=report)",
        'NAME {mode=digest|report} {report="count FILE"} {account=NAME} {peer=SYSTEM}',
        (FieldSpec("mode", "digest: per-file digests at one transaction number; report: run a report on both"),
         FieldSpec("report", "report mode: the TCL report to run, e.g. \"count inv\""),
         FieldSpec("account", "report mode: the account the report runs in")))
def verify_(ctx: Context, req: Request) -> int:
    mode = req.fields.get("mode", "digest").lower()
    if mode not in ("digest", "report"):
        raise UsageError(f"mode={mode} is not known", "give mode=digest or mode=report")
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        with _other(ctx, req, s, name) as slave:
            if mode == "digest":
                result = verify.verify_digests(s, slave, name, out=ctx.out)
            else:
                words = shlex.split(req.fields.get("report", ""))
                if not words or words[0] not in ("count", "list", "sort"):
                    raise UsageError("report mode needs report=\"count FILE\" (or list, sort)", "e.g. report=\"count inv\" account=acme")
                result = verify.verify_report(s, slave, name, _tcl(ctx, words, req.fields.get("account", ctx.account)), out=ctx.out)
    return 0 if result.ok else 1


def _tcl(ctx: Context, words: list[str], account: str):
    registry = load_actions()

    def run(system: System) -> list[str]:
        lines: list[str] = []
        sub = Context(home=ctx.home, system=system.path.name, account=account, out=lines.append)
        registry.run(f"tcl.{words[0]}", sub, parse_words(words[1:]))
        return lines

    return run
