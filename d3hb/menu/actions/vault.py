"""Vault commands (``d3hb vault ...``): thin adapters onto d3hb.ops.vault.

On the vault (target) system: serve, stop, status, register, nodes, purge.
On the source: define, update, volumes, save, account-save, t-dump,
txn-dump, restore, account-restore, t-load, txn-load, expire, reconcile,
audit.  ``--system`` chooses the system, as for every command.
"""

from __future__ import annotations

import time

from d3hb.errors import Refused, UsageError
from d3hb.menu.actions.common import open_system, table
from d3hb.menu.actions.tapes import _file_ref, _progress, _report
from d3hb.menu.registry import Context, Request, action
from d3hb.ops import running, saves, vaultcheck
from d3hb.ops import vault as ov
from d3hb.store import Home


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _days(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds:g}s"


def _fix(req: Request) -> bool:
    return ov._yes(req.fields.get("fix", "no"), "fix")


def _fields(req: Request, *arg_keys: str) -> dict[str, str]:
    """The keyword fields, without those a menu form also sent as the positional arguments."""
    return {k: v for k, v in req.fields.items() if k not in arg_keys}


# -- target -----------------------------------------------------------------------


@action("vault.serve", "Turn this system into a vault: start the vault server", "{host=ADDR} {port=N}")
def serve(ctx: Context, req: Request) -> None:
    port = int(req.fields.get("port", ov.DEFAULT_PORT)) if str(req.fields.get("port", ov.DEFAULT_PORT)).isdigit() else -1
    if not 1 <= port <= 65535:
        raise UsageError(f"port {req.fields.get('port')!r} is not a TCP port", "give port=1..65535")
    with open_system(ctx) as s:
        pid = ov.serve(s, req.fields.get("host", "0.0.0.0"), port)
    ctx.out(f"Vault server of system {ctx.system!r} started, pid {pid}, listening on port {port}")


@action("vault.stop", "Stop this system's vault server")
def stop(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        ctx.out("Vault server stopped" if ov.stop(s) else f"The vault server of system {ctx.system!r} is not running")


@action("vault.status", "State of this system's vault server and its nodes")
def status(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        st = ov.status(s)
        ctx.out(f"Vault server: {'running, pid ' + str(st['pid']) if st['running'] else 'not running'}"
                + (f", port {st.get('port')}" if st.get("port") else "") + (f" ({st['error']})" if st.get("error") else ""))
        rows = ov.nodes(s)
    if rows:
        table(ctx, ("Node", "Type", "Archretain", "Code", "Objects"), [(n["node"], n["type"], _days(n["archretain"]), n["code"], n["objects"]) for n in rows])


@action("vault.register", "Register a source system as a node of type server on this vault", "NODE password=PW {archretain=DAYS|none}")
def register(ctx: Context, req: Request) -> None:
    node = req.arg(0, "node name")
    with open_system(ctx) as s:
        _, retain = ov.register(s, node, _fields(req, "node"))
    ctx.out(f"Node {node!r} registered (type server, archive retention {_days(retain)})"
            + ("" if retain is not None else "; it cannot store data until archretain is set"))


@action("vault.nodes", "List the nodes registered on this vault")
def nodes_(ctx: Context, req: Request) -> None:
    status(ctx, req)


@action("vault.purge", "Delete archive objects marked for deletion whose retention has passed")
def purge(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        gone = ov.purge(s)
    for node, name in gone:
        ctx.out(f"purged {node}/{name}")
    ctx.out(f"{len(gone)} archive objects purged")


# -- source -----------------------------------------------------------------------


@action("vault.define", "Define a vault on this system (sends a new verification code)",
        "NAME host=HOST {port=N} password=PW {node=NODE} {maxsize=64M} {retain=DAYS} {keepfull=N} {forcesync=yes} {import=yes} {(r}")
def define(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    fields = _fields(req, "name")
    # import=yes is (r for the menu's form, which sends fields, not option letters
    readonly = ov._yes(fields.pop("import", "no"), "import") or req.has("r")
    with open_system(ctx) as s:
        vdef, mode = ov.define(s, name, fields, readonly=readonly)
    what = "read-only import" if vdef.readonly else "verification code stored on the vault"
    ctx.out(f"Vault {name!r} defined: {vdef.host}:{vdef.port} node {vdef.node!r}, session {mode} ({what})")


@action("vault.update", "Change a vault's definition; forcesync=yes resets the verification code",
        "NAME {host=} {port=} {password=} {maxsize=} {retain=} {keepfull=} {forcesync=yes}")
def update(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    with open_system(ctx) as s:
        _, forced = ov.update(s, name, _fields(req, "name"))
    ctx.out(f"Vault {name!r} updated" + ("; verification code reset on both systems" if forced else ""))


@action("vault.list", "List the vaults defined on this system")
def list_(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        defs = ov.Definitions(s).list()
    table(ctx, ("Vault", "Host", "Port", "Node", "Maxsize", "Retain", "Keepfull", "Mode"),
          [(d.name, d.host, d.port, d.node, d.maxsize, _days(d.retain), d.keepfull or "-", "import (ro)" if d.readonly else "rw") for d in defs])


@action("vault.volumes", "The volume history (or with (t, the vault's archive objects)", "{NAME} {(t}")
def volumes(ctx: Context, req: Request) -> None:
    name = req.args[0] if req.args else None
    with open_system(ctx) as s:
        if req.has("t"):
            objs = ov.target_objects(s, req.arg(0, "vault name"))
            table(ctx, ("Object", "Kind", "Date", "Size", "Digest", "Status"),
                  [(o["name"], o["kind"], _when(o["created"]), o["size"], o["digest"][:16], o["status"]) for o in objs])
            return
        vols = ov.volumes(s, name)
        dead = vaultcheck.abandoned(s, name)
    table(ctx, ("Volume", "Kind", "Date", "Size", "Digest", "Status"),
          [(v.volume, v.kind, _when(v.created), v.size, v.digest[:16], "abandoned" if v.vset in dead else v.status) for v in vols])
    if dead:
        ctx.out(f"{len(dead)} volume sets were left pending by an operation that died; 'vault expire NAME' clears them")


def _write(ctx: Context, name: str, op) -> None:
    with open_system(ctx) as s:
        with ov.open_vault_writer(s, name) as w:
            r = op(s, w)
        ctx.out(f"Volume set {w.vset}: {len(w.stored)} volumes")
    _report(ctx, r)


@action("vault.save", "Full save (or account-save of the accounts named) to the vault", "NAME {ACCOUNT ...} {(h}")
def save(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    accounts = list(req.args[1:]) or None
    _write(ctx, name, lambda s, w: saves.save(s, w, accounts=accounts, keep_queue=req.has("h"),
                                          progress=_progress(ctx, "account-save" if accounts else "save")))


@action("vault.t-dump", "Dump a file's items to the vault", "NAME FILE {ITEM ...} {account=NAME}")
def t_dump(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    ref, ids = _file_ref(Request(req.args[1:]))
    account = req.fields.get("account", ctx.account)  # the tcl command has --account; vault commands take a field
    _write(ctx, name, lambda s, w: saves.t_dump(s, account, ref, w, ids=ids or None, progress=_progress(ctx, "t-dump")))


@action("vault.txn-dump", "Write queued transactions to the vault", "NAME {FIRST {LAST}}")
def txn_dump(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    try:
        nums = [int(a) for a in req.args[1:3]]
    except ValueError:
        raise UsageError("transaction numbers must be numbers", "vault txn-dump NAME {FIRST {LAST}}") from None
    _write(ctx, name, lambda s, w: saves.txn_dump(s, w, first=nums[0] if nums else None, last=nums[1] if len(nums) > 1 else None, progress=_progress(ctx, "txn-dump")))


@action("vault.restore", "Full restore of this system from a volume set (replaces everything)", "NAME VOLUMESET {HOT-BACKUP-SERVER ...}")
def restore(ctx: Context, req: Request) -> None:
    name, vset = req.arg(0, "vault name"), req.arg(1, "volume set")
    home = Home(ctx.home)
    if not ctx.confirm(f"Restore replaces all of system '{ctx.system}'. Continue?"):
        raise UsageError(f"system {ctx.system!r} not restored", "answer Y, or give --yes")
    busy = running.servers(home.system_path(ctx.system))
    if busy:  # a hot backup server writing to the database being swapped out would lose its updates
        raise Refused(f"server {busy[0]!r} of system {ctx.system!r} is running", "stop the servers of this system, then restore")
    with open_system(ctx) as s, ov.open_vault_reader(s, name, vset) as rd:
        size = ov.total_size(s, name, vset)
        s.close()  # the restore swaps the database file: hold no connection to it
        r = saves.restore(home.system_path(ctx.system), ctx.system, rd, servers=req.args[2:], progress=_progress(ctx, "restore"), total=size)
    _report(ctx, r)


@action("vault.account-restore", "Restore one account from a volume set into this system", "NAME VOLUMESET ACCOUNT {NAME-ON-TAPE}")
def account_restore(ctx: Context, req: Request) -> None:
    name, vset, target = req.arg(0, "vault name"), req.arg(1, "volume set"), req.arg(2, "account name")
    on_tape = req.args[3] if len(req.args) > 3 else target
    with open_system(ctx) as s, ov.open_vault_reader(s, name, vset) as rd:
        r = saves.account_restore(s, rd, on_tape, new_name=target, progress=_progress(ctx, "account-restore"), total=ov.total_size(s, name, vset))
    _report(ctx, r)


@action("vault.t-load", "Load a t-dump volume set into a file", "NAME VOLUMESET FILE {ITEM ...} {account=NAME} {(o v}")
def t_load(ctx: Context, req: Request) -> None:
    name, vset = req.arg(0, "vault name"), req.arg(1, "volume set")
    ref, ids = _file_ref(Request(req.args[2:]))
    with open_system(ctx) as s, ov.open_vault_reader(s, name, vset) as rd:
        r = saves.t_load(s, req.fields.get("account", ctx.account), ref, rd, ids=ids or None, overwrite=req.has("o"), verify_only=req.has("v"),
                         progress=_progress(ctx, "t-load"), total=ov.total_size(s, name, vset))
    _report(ctx, r)


@action("vault.txn-load", "Apply a transaction volume set once", "NAME VOLUMESET {(v l}")
def txn_load(ctx: Context, req: Request) -> None:
    name, vset = req.arg(0, "vault name"), req.arg(1, "volume set")
    with open_system(ctx) as s, ov.open_vault_reader(s, name, vset) as rd:
        r = saves.txn_load(s, rd, verify_only=req.has("v"), relog=req.has("l"), progress=_progress(ctx, "txn-load"),
                           total=ov.total_size(s, name, vset))
    _report(ctx, r)


@action("vault.expire", "Delete expired volume sets here and mark them for deletion on the vault", "NAME")
def expire(ctx: Context, req: Request) -> None:
    name = req.arg(0, "vault name")
    with open_system(ctx) as s:
        gone = vaultcheck.expire(s, name)
    for v in gone:
        ctx.out(f"expired {v}")
    ctx.out(f"{len(gone)} volumes expired")


@action("vault.reconcile", "Compare the volume history with the vault's archive objects", "NAME {fix=no|yes}")
def reconcile(ctx: Context, req: Request) -> int:
    name = req.arg(0, "vault name")
    fix = _fix(req)
    with open_system(ctx) as s:
        found = vaultcheck.reconcile(s, name, fix=fix)
    errors = [f for f in found if f.error]
    for f in found:
        ctx.out(f"{'error' if f.error else 'note'}: {f.volume}: {f.case}" + (f"; {f.action}" if fix else ""))
    ctx.out(f"{len(errors)} errors" + (" fixed" if fix and errors else "") + f"; {len(found) - len(errors)} notes")
    return 1 if errors and not fix else 0


@action("vault.audit", "Read a volume back and check every block", "VOLUME {vault=NAME} {fix=no|yes}")
def audit(ctx: Context, req: Request) -> int:
    volume = req.arg(0, "volume name")
    with open_system(ctx) as s:
        res = vaultcheck.audit(s, volume, vault=req.fields.get("vault"), fix=_fix(req))
    for d in res.damage:
        ctx.out(f"damage: {d}")
    ctx.out(f"Volume {volume}: {res.blocks} blocks, {res.size} bytes, {'intact' if res.ok else 'DAMAGED'}; status {res.status}")
    return 0 if res.ok else 1
