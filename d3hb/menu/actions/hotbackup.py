"""``d3hb hot-backup VERB [NAME] [field=value ...]``: the Hot Backup menus' actions.

Thin adapters: a Request in, calls into d3hb.ops (server definitions, the
supervisor), lines out through ``ctx.out``.  NAME may be left out when the
menu has a server selected, or when the system has exactly one server.
"""

from __future__ import annotations

from d3hb.errors import UsageError
from d3hb.menu.actions.common import open_system, server_name, table
from d3hb.menu.registry import Context, FieldSpec, Request, action
from d3hb.ops import supervisor
from d3hb.ops.serverdefs import FIELDS, Definitions
from d3hb.servers import control

SERVER_FIELDS = (
    FieldSpec("type", "M master (calls out, ships the queue) or S slave (listens, applies)"),
    FieldSpec("host", "master: the slave's host name or address"),
    FieldSpec("port", "TCP port 1024-32767 the slave listens on (default 2000), the same on both"),
    FieldSpec("target", "master: the slave's system name (D3's target VME name)"),
    FieldSpec("protocol", "inet (cannot be changed)"),
    FieldSpec("log-slave", "slave: on re-queues applied updates for a cascaded slave (default off)"),
    FieldSpec("check", "check period in seconds: heartbeats and the master's test record (default 10)"),
    FieldSpec("txlog", "master: TxLog timer, seconds between looks at an idle queue (default 1)"),
    FieldSpec("notify", "users and !ports told of incidents, as msg: dm,bob,!0"),
    FieldSpec("apply", "slave: apply updates (default on)"),
    FieldSpec("auto-create", "slave: create missing accounts and files (default off)"),
    FieldSpec("code", "the pair's shared verification code (8 or more characters, the same on both)"),
    FieldSpec("tls-cert", "TLS certificate file (slave: required for TLS; master: client certificate)"),
    FieldSpec("tls-key", "TLS private key file"),
    FieldSpec("tls-ca", "CA file: master verifies the slave with it; slave then requires a master certificate"),
    FieldSpec("timeout", "write time-out in seconds: no progress this long drops the connection (default 30)"),
    FieldSpec("cap", "master: most transactions queued for this slave before 'resync required' (default 1000000, 0 none)"),
    FieldSpec("bind", "slave: address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"),
    FieldSpec("window", "master: batches in flight before an acknowledgement (default 8)"),
    FieldSpec("batch", "master: transactions per batch (default 500)"),
    FieldSpec("verify", "master: seconds between periodic verify markers, judged by the slave (default 0: off)"),
)

LIVE_OPTIONS = ("log-slave", "apply", "auto-create")  # a running slave takes these at once


@action("hot-backup.start", "Start Server", "NAME")
def start(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        supervisor.start(s, server_name(ctx, req, s), out=ctx.out)


@action("hot-backup.stop", "Stop Server", "NAME")
def stop(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        supervisor.stop(s, server_name(ctx, req, s), out=ctx.out)


@action("hot-backup.query", "Query Server (the server must be running)", "NAME")
def query(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        for line in supervisor.format_query(supervisor.query(s, server_name(ctx, req, s))):
            ctx.out(line)


@action("hot-backup.status", "Status: the server's last messages, newest first", "NAME [lines=N]")
def status(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        limit = int(req.fields.get("lines", "20")) if req.fields.get("lines", "20").isdigit() else 20
        for line in supervisor.status_lines(s, server_name(ctx, req, s), limit):
            ctx.out(line)


@action("hot-backup.show", "Show Server: its configuration", "NAME")
def show(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        d = Definitions(s).get(server_name(ctx, req, s))
        if req.fields.get("format") == "fields":  # a menu form's pre-filled values; the code is never shown
            ctx.out(f"name={d.name}")
            for f in FIELDS:
                value = d.value(f)
                ctx.out(f"{f}={'********' if f == 'code' and value else value}")
            return
        ctx.out(f"Server Name       {d.name}")
        ctx.out(f"Server Type       {d.type} ({d.type_name})")
        labels = {"host": "Remote Host name", "port": "TCP port", "target": "Target VME name", "protocol": "Protocol",
                  "log-slave": "Log slave update", "check": "Check period", "txlog": "TxLog timer", "notify": "Notify list",
                  "apply": "Apply updates", "auto-create": "Auto-create", "code": "Verification code"}
        for f in FIELDS[1:]:
            value = d.value(f)
            if f == "code":
                value = "(set)" if value else "(none)"
            ctx.out(f"{labels.get(f, f):<17} {value}")


@action("hot-backup.statistics", "Show statistics (from a master: asked of the slave over the link)", "NAME")
def statistics(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        stats = supervisor.statistics(s, server_name(ctx, req, s))
    for side in ("slave", "master"):
        if side in stats:
            ctx.out(f"{side.capitalize()} statistics:")
            for key, value in sorted(stats[side].items()):
                ctx.out(f"  {key.replace('_', ' '):<24} {value}")


@action("hot-backup.queue", "Display queue (master servers)", "[NAME]")
def queue(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = req.args[0] if req.args else ctx.server
        if name is None:
            masters = [d.name for d in Definitions(s).all() if d.is_master]
            name = masters[0] if len(masters) == 1 else None
        for line in supervisor.queue_lines(s, name):
            ctx.out(line)


@action("hot-backup.setup", "Setup Server: define or change a server", "NAME field=value ...", SERVER_FIELDS)
def setup(ctx: Context, req: Request) -> None:
    name = req.arg(0, "server name")
    with open_system(ctx) as s:
        defs = Definitions(s)
        if not req.fields and defs.exists(name):
            return show(ctx, req)
        old = defs.get(name) if defs.exists(name) else None
        d, created = defs.setup(name, req.fields)
        ctx.out(f"Server '{name}' {'defined' if created else 'changed'} ({d.type_name}, port {d.port})")
        if not d.is_master:
            ctx.out(f"System '{s.name}' is a hot-backup slave: local writes to replicated (DL) files are refused")
        if old is not None and supervisor.is_running(s, name):
            changed = [f for f in FIELDS if old.value(f) != d.value(f)]
            live = [f for f in changed if f in LIVE_OPTIONS and not d.is_master]
            if live:  # the slave options change at once: an admin turns apply updates off for a save without a restart
                control.request(supervisor.files(s, name).ctl, "apply", on=d.apply, log_slave=d.log_slave, auto_create=d.auto_create)
                ctx.out(f"Server '{name}' is running: {', '.join(f'{f}={d.value(f)}' for f in live)} in effect at once")
            if set(changed) - set(live):
                ctx.out(f"Server '{name}' is running: the change takes effect when it is started again")


@action("hot-backup.delete", "Delete a server definition", "NAME")
def delete(ctx: Context, req: Request) -> None:
    name = req.arg(0, "server name")
    with open_system(ctx) as s:
        if supervisor.is_running(s, name):
            raise UsageError(f"server '{name}' is running", f"stop it first: d3hb hot-backup stop {name}")
        d = Definitions(s).delete(name)
        ctx.out(f"Server '{name}' deleted")
        if not d.is_master and s.replica:
            ctx.out("The system stays a slave (replicated files read-only) until it is promoted")


@action("hot-backup.list", "List the servers of the system (one name a line; (l for a table)")
def list_(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        if not req.has("l"):  # the menus read one name a line
            for name in Definitions(s).names():
                ctx.out(name)
            return
        rows = []
        for d in Definitions(s).all():
            running = supervisor.is_running(s, d.name)
            rows.append((d.name, d.type_name, d.host or d.bind, d.port, "running" if running else "stopped"))
        if not rows:
            ctx.out(f"No hot backup server on system '{s.name}'; define one with 'd3hb hot-backup setup NAME type=M|S ...'")
            return
        table(ctx, ("Server", "Type", "Host", "Port", "State"), rows)


@action("hot-backup.coldstart", "Restart the servers that were running before a stop of the machine")
def coldstart(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        supervisor.coldstart(s, out=ctx.out)


def _set(ctx: Context, key: str, value: str, message: str) -> None:
    with open_system(ctx) as s:
        s.set_meta(key, value)
        s.error_log(message, "hot-backup")
        ctx.out(message)


@action("hot-backup.log-dl-only", "Log DL files only (the default)")
def log_dl_only(ctx: Context, req: Request) -> None:
    _set(ctx, "log_mode", "dl", "Logging DL files only")


@action("hot-backup.log-all", "Log ALL files (not recommended)")
def log_all(ctx: Context, req: Request) -> None:
    _set(ctx, "log_mode", "all", "Logging ALL files")


@action("hot-backup.stop-enqueuing", "Stop enqueuing updates (logged in the errors file)")
def stop_enqueuing(ctx: Context, req: Request) -> None:
    _set(ctx, "enqueuing", "off", "Enqueuing stopped: updates are no longer sent to the slave")


@action("hot-backup.start-enqueuing", "Start enqueuing updates (logged in the errors file)")
def start_enqueuing(ctx: Context, req: Request) -> None:
    _set(ctx, "enqueuing", "on", "Enqueuing started")


@action("hot-backup.clear-queue", "Clear Log Queue (the slave then needs a resync)")
def clear_queue(ctx: Context, req: Request) -> None:
    if not ctx.confirm("Clear the transaction log queue? Its slaves will need a resync"):
        raise UsageError("queue not cleared", "answer Y, or give --yes")
    with open_system(ctx) as s:
        n = s.queue.clear("Clear Log Queue")
        ctx.out(f"Queue cleared: {n} transactions removed")


@action("hot-backup.state", "One line about a server, for the menu header", "NAME")
def state(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = server_name(ctx, req, s)
        d = Definitions(s).get(name)
        ctx.out(supervisor.state_line(s, d.name))


@action("hot-backup.sample", "depth=N lag=N lag_s=SECONDS, for the menu charts", "NAME")
def sample(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        depth, lag, lag_s = supervisor.sample(s, server_name(ctx, req, s))
        ctx.out(f"depth={depth} lag={lag} lag_s={lag_s:.2f}")
