"""``d3hb system create|list|show|delete``: the systems under D3HB_HOME."""

from __future__ import annotations

from d3hb.errors import UsageError
from d3hb.menu.actions.common import open_system, table
from d3hb.menu.registry import Context, Request, action
from d3hb.store import Home, digests


@action("system.create", "Create a system (a database directory)", "NAME [--small]")
def create(ctx: Context, req: Request) -> None:
    name = req.arg(0, "system name")
    small = req.has("s") or req.fields.get("small") == "yes" or "--small" in req.args
    system = Home(ctx.home).create(name, small=small)
    ctx.out(f"System '{name}' created at {system.path}")
    system.close()


@action("system.list", "List the systems")
def list_(ctx: Context, req: Request) -> None:
    home = Home(ctx.home)
    rows = []
    for name in home.names():
        with open_system(ctx, name) as s:
            st = s.queue.state()
            rows.append((name, len(s.accounts()), len(s.files()), st.depth, "slave" if s.replica else "", str(s.path)))
    if not rows:
        ctx.out(f"No systems in {home.path} (the default 'pick0' is created on first use)")
        return
    table(ctx, ("System", "Accounts", "Files", "Queued", "Role", "Path"), rows)


@action("system.show", "Show a system's settings, accounts and files", "NAME")
def show(ctx: Context, req: Request) -> None:
    name = req.args[0] if req.args else ctx.system
    with open_system(ctx, name) as s:
        st = s.queue.state()
        ctx.out(f"System '{s.name}' at {s.path}")
        ctx.out(f"History id {s.history_id}. Epoch {s.epoch}. {'Hot-backup slave (replicated files read-only)' if s.replica else 'Writable'}")
        ctx.out(f"Logging {'on' if s.logging else 'off'}. Enqueuing {'on' if s.enqueuing else 'off'}. "
                f"{'Log ALL files' if s.log_all else 'Log DL files only'}")
        ctx.out(f"Queue: {st.depth} transactions, {st.bytes} bytes, last number {st.last}")
        sums = digests(s, include_control=True)
        rows = []
        for f in s.files():
            n = s.q("SELECT count(*) FROM items WHERE fof=?", (f.fof,)).fetchone()[0]
            rows.append((f.fof, f.account, f.ref, f.code, f.modulo, n, sums[f.qualified][:12]))
        table(ctx, ("FOF", "Account", "File", "Code", "Modulo", "Items", "Digest"), rows)


@action("system.delete", "Delete a system and all its data", "NAME")
def delete(ctx: Context, req: Request) -> None:
    name = req.arg(0, "system name")
    if not ctx.confirm(f"Delete system '{name}' and all its data?"):
        raise UsageError(f"system {name!r} not deleted", "answer Y, or give --yes")
    Home(ctx.home).delete(name)
    ctx.out(f"System '{name}' deleted")
