"""``d3hb hot-backup replay-parked|apply-updates|held NAME``: the slave options' commands.

Thin adapters over d3hb.store (park, hold, jobs) and the running slave's
control channel (``{"cmd": "apply"}``).  Changing apply updates also keeps
the change in the server definition, so a restart keeps it.
"""

from __future__ import annotations

from d3hb.errors import Refused, UsageError
from d3hb.menu.actions.common import open_system, server_name
from d3hb.menu.registry import Context, Request, action
from d3hb.ops import supervisor
from d3hb.ops.serverdefs import Definitions, ServerDef
from d3hb.servers import control
from d3hb.store import hold as store_hold
from d3hb.store import jobs as store_jobs
from d3hb.store import park as store_park
from d3hb.store.system import System


def _slave(ctx: Context, req: Request, s: System) -> ServerDef:
    d = Definitions(s).get(server_name(ctx, req, s))
    if d.is_master:
        raise Refused(f"server '{d.name}' is a master", "the slave options belong to the slave server of the pair")
    return d


@action("hot-backup.replay-parked", "Replay parked updates (files that were missing on this slave)", "NAME")
def replay_parked(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        d = _slave(ctx, req, s)
        before = store_park.parked_count(s, d.name)
        if not before:
            ctx.out(f"Server '{d.name}': no parked updates")
            return
        n = store_park.replay_parked(s, d.name, relog=d.log_slave, auto_create=d.auto_create)
        left = store_park.parked(s, d.name)
        ctx.out(f"Server '{d.name}': {n} parked updates replayed, {len(left)} still parked")
        for section in sorted({p.section for p in left}):
            first = next(p.txn for p in left if p.section == section)
            ctx.out(f"  {section}: {first.account},{first.file_ref} is still missing (create it, then replay again)")


@action("hot-backup.apply-updates", "Apply updates on or off (a running slave changes at once)", "NAME on|off")
def apply_updates(ctx: Context, req: Request) -> None:
    words = [a.lower() for a in req.args]
    value = words[-1] if words and words[-1] in ("on", "off") else req.fields.get("apply", "").lower()
    if value not in ("on", "off"):
        raise UsageError("apply-updates needs on or off", "e.g. 'd3hb hot-backup apply-updates hbslave off'")
    args = tuple(a for a in req.args if a.lower() not in ("on", "off"))
    req = Request(args, req.fields, req.options)
    with open_system(ctx) as s:
        d = _slave(ctx, req, s)
        Definitions(s).setup(d.name, {"apply": value})
        if not supervisor.is_running(s, d.name):
            ctx.out(f"Server '{d.name}': apply updates {value.upper()} (takes effect when it starts)")
            return
        answer = control.request(supervisor.files(s, d.name).ctl, "apply", on=value == "on")
        held = answer.get("held", 0)
        if value == "on":
            ctx.out(f"Server '{d.name}': Updates applied. Applying {held} held transactions in order, then live")
        else:
            ctx.out(f"Server '{d.name}': Updates not applied. Received transactions are held ({held} so far)")


@action("hot-backup.held", "Show what a slave holds, has parked and hands to helpers", "NAME")
def held(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        d = _slave(ctx, req, s)
        ctx.out(f"Server '{d.name}': {'Updates applied' if d.apply else 'Updates not applied'}")
        ctx.out(f"Held transactions: {store_hold.held_count(s, d.name)}")
        ctx.out(f"Parked updates: {store_park.parked_count(s, d.name)}")
        for f in store_park.sections(s, d.name):
            ctx.out(f"  {store_park.HB_LOG},{f.data_name}")
        for job in store_jobs.pending(s, d.name):
            ctx.out(f"Helper job: {job.describe(s.file_by_fof(job.fof))}, attempts {job.attempts}")
