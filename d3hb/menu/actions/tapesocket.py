"""``tape-socket {cmd {keyword=value ...}} {(options}``: D3's commands and abbreviations.

The server is named by ``name=`` (or a bare word); the default server is
``default``.  ``keyword=?`` asks for the value (``?`` at the prompt shows
help, ``q`` quits), ``keyword=.`` reuses the value given last time.
Options: ``c`` keep what is in the pipe when starting, ``q`` quiet,
``r`` only running servers in status, ``s`` no clock synchronisation at
start, ``v`` verbose (every event in the log).
"""

from __future__ import annotations

import time

from d3hb import __version__
from d3hb.errors import UsageError
from d3hb.menu.actions import tapes as _tape_commands  # noqa: F401 — registers the TCL tape verbs too
from d3hb.menu.actions.common import open_system, table
from d3hb.menu.registry import REGISTRY, Context, Request, action
from d3hb.ops import tapeio, tsservers
from d3hb.ops.tapeio import clock_text, human_bytes
from d3hb.ops.tapesocket import DEFAULT, KEYWORDS, Definitions, messages
from d3hb.protocol import tape as tape_codec
from d3hb.protocol import tapesock
from d3hb.store.txn import Kind

ALIASES = {
    "ch": "check", "dr": "drain", "lp": "listpipes", "q": "query", "ss": "startsend", "sr": "startreceive",
    "sta": "status", "sto": "stop", "stopa": "stopall", "tron": "traceon", "troff": "traceoff", "vers": "version",
}  # fmt: skip
for _short, _long in ALIASES.items():
    REGISTRY.alias(f"tape-socket.{_short}", f"tape-socket.{_long}")


def _resolve(ctx: Context, req: Request, defs: Definitions) -> dict[str, str]:
    """The request's keywords with ``?`` asked and ``.`` replaced by the last value used."""
    last = defs.last_values()
    out: dict[str, str] = {}
    for key, value in req.fields.items():
        if value == "?":
            answer = ctx.ask(f"{key}=", KEYWORDS.get(key, "the server's name") if key != "name" else "the server's name (default: default)")
            if answer is None:
                raise UsageError(f"no value given for {key}", f"give {key}=VALUE")
            value = answer
        elif value == ".":
            if key not in last:
                raise UsageError(f"no earlier value of {key} to reuse", f"give {key}=VALUE once")
            value = last[key]
        out[key] = value
    if out:
        defs.remember(out)
    return out


def _name(req: Request, fields: dict[str, str]) -> str:
    return fields.pop("name", None) or (req.args[0] if req.args else DEFAULT)


def _say(ctx: Context, req: Request, text: str) -> None:
    if not req.has("q"):
        ctx.out(text)


@action("tape-socket.setup", "Set up (define) a server", "name=N role=output|input pipe= host= port= callrep= callwait=")
def setup(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        defs = Definitions(s)
        fields = _resolve(ctx, req, defs)
        srv = defs.setup(_name(req, fields), fields)
        _say(ctx, req, f"Server '{srv.name}' set up: {_describe(srv)}")


@action("tape-socket.setarg", "Change arguments of a server", "name=N keyword=value ...")
def setarg(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        defs = Definitions(s)
        fields = _resolve(ctx, req, defs)
        srv = defs.setarg(_name(req, fields), fields)
        _say(ctx, req, f"Server '{srv.name}': {_describe(srv)}")


def _describe(srv) -> str:
    return " ".join(f"{k}={v}" for k, v in srv.values().items())


@action("tape-socket.show", "Display a server's parameters", "{name=N}")
def show(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        defs = Definitions(s)
        srv = defs.get(_name(req, _resolve(ctx, req, defs)))
        ctx.out(f"Server '{srv.name}'")
        for key, value in srv.values().items():
            ctx.out(f"  {key:<9} {value}")


@action("tape-socket.listserver", "List the servers")
def listserver(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        rows = [(x.name, x.role, x.host, x.port, x.pipe) for x in Definitions(s).all()]
    if not rows:
        ctx.out("No tape-socket server is set up (tape-socket setup name=default ...)")
        return
    table(ctx, ("Server", "Role", "Host", "Port", "Pipe"), rows)


@action("tape-socket.listpipes", "List pipe status")
def listpipes(ctx: Context, req: Request) -> None:
    import os
    import stat

    rows = []
    with open_system(ctx) as s:
        for srv in Definitions(s).all():
            try:
                st = os.stat(srv.pipe)
                kind = "pipe" if stat.S_ISFIFO(st.st_mode) else "NOT A PIPE"
                mode = f"{stat.S_IMODE(st.st_mode):04o}"
            except FileNotFoundError:
                kind, mode = "missing (created at start)", ""
            rows.append((srv.name, srv.pipe, kind, mode, "in use" if tsservers.pid_of(s.path, srv.name) else ""))
    table(ctx, ("Server", "Pipe", "Status", "Mode", ""), rows)


@action("tape-socket.status", "List the servers' status and their last messages", "{name=N} {(r}")
def status(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        fields = _resolve(ctx, req, Definitions(s))
        rows = [(st.server.name, st.server.role, st.state, st.pid or "", (st.status or {}).get("last_error", "") if st.running else "")
                for st in tsservers.status(s, only_running=req.has("r"))]
        table(ctx, ("Server", "Role", "State", "Pid", "Last error"), rows)
        name = fields.get("name") or (req.args[0] if req.args else None)
        ctx.out("")
        ctx.out(f"Messages{' of ' + repr(name) if name else ''} (most recent first):")
        for m in messages(s, name, limit=20):
            ctx.out("  " + m.line())


@action("tape-socket.query", "Query a running server", "{name=N}")
def query(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        st = tsservers.query(s, _name(req, _resolve(ctx, req, Definitions(s))))
        pub = tapeio.published(s.path)
    d = st.status or {}
    ctx.out(f"Server '{st.server.name}' ({st.server.role}), pid {st.pid}: {st.state}")
    ctx.out(f"  Peer {d.get('peer') or '-'}   port {st.server.port}   pipe {st.server.pipe}")
    ctx.out(f"  Tapes done {d.get('tapes', 0)}, {human_bytes(int(d.get('bytes', 0)))} in all")
    if d.get("tape_bytes"):
        ctx.out(f"  Tape in progress: {human_bytes(int(d['tape_bytes']))}, {human_bytes(int(d.get('rate', 0)))}/s, {clock_text(float(d.get('tape_elapsed', 0)))} elapsed")
    if pub is not None:
        # The tape operation of this system (a save into the pipe, say): items,
        # size and time left are known there, not in the server.
        op, fig, state = pub
        ctx.out(f"  {op.capitalize()} {'in progress' if state == 'running' else state}: {fig.line()}")
    if d.get("last_error"):
        ctx.out(f"  Last error: {d['last_error']}")
    ctx.out(f"  Up since {time.strftime('%H:%M:%S %d %b %Y', time.localtime(float(d.get('started', time.time()))))}")


def _start(ctx: Context, req: Request, role: str | None) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        pid = tsservers.start(s, name, role=role, clear_pipe=not req.has("c"), clock_sync=not req.has("s"), verbose=req.has("v"))
        srv = Definitions(s).get(name)
    _say(ctx, req, f"Server '{name}' started ({role or srv.role}, pid {pid})")


@action("tape-socket.start", "Start a server by name", "{name=N} {(c s v}")
def start(ctx: Context, req: Request) -> None:
    _start(ctx, req, None)


@action("tape-socket.startsend", "Start the output server (pipe to network)", "{name=N}")
def startsend(ctx: Context, req: Request) -> None:
    _start(ctx, req, "output")


@action("tape-socket.startreceive", "Start the input server (network to pipe)", "{name=N}")
def startreceive(ctx: Context, req: Request) -> None:
    _start(ctx, req, "input")


@action("tape-socket.startall", "Start all servers")
def startall(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        for srv in Definitions(s).all():
            if tsservers.pid_of(s.path, srv.name) is None:
                pid = tsservers.start(s, srv.name, clear_pipe=not req.has("c"), clock_sync=not req.has("s"), verbose=req.has("v"))
                _say(ctx, req, f"Server '{srv.name}' started ({srv.role}, pid {pid})")


@action("tape-socket.stop", "Stop a server", "{name=N}")
def stop(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        Definitions(s).get(name)
        if not req.has("q") and not ctx.confirm(f"Stop server '{name}'?"):
            raise UsageError(f"server {name!r} not stopped", "answer Y, or give (q")
        stopped = tsservers.stop(s.path, name)
    _say(ctx, req, f"Server '{name}' stopped" if stopped else f"Server '{name}' was not running")


@action("tape-socket.stopall", "Stop all servers")
def stopall(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        if not req.has("q") and not ctx.confirm("Stop all tape-socket servers?"):
            raise UsageError("servers not stopped", "answer Y, or give (q")
        for srv in Definitions(s).all():
            if tsservers.stop(s.path, srv.name):
                _say(ctx, req, f"Server '{srv.name}' stopped")


@action("tape-socket.shutdown", "Stop both servers (given on the sending side)", "{name=N}")
def shutdown(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        _say(ctx, req, tsservers.shutdown(s, name))


@action("tape-socket.check", "Check the remote server", "{name=N}")
def check(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        r = tsservers.check(s, name)
    clock = "" if r.clock_offset is None else f", clock offset {r.clock_offset:+.3f} s"
    ctx.out(f"Remote server '{name}' answers: {r.state} ({r.detail}); round trip {r.round_trip * 1000:.1f} ms{clock}")


@action("tape-socket.drain", "Drain (empty) a server's pipe", "{name=N}")
def drain(ctx: Context, req: Request) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        if not req.has("q") and not ctx.confirm(f"Discard what is in the pipe of server '{name}'?"):
            raise UsageError("pipe not drained", "answer Y, or give (q")
        n = tsservers.drain_pipe(s, name)
    _say(ctx, req, f"Pipe of server '{name}' drained: {n} bytes discarded")


@action("tape-socket.tltest", "Test whether transaction logging is operational")
def tltest(ctx: Context, req: Request) -> int:
    with open_system(ctx) as s:
        if not (s.logging and s.enqueuing):
            ctx.out(f"Transaction logging is NOT operational: logging {'on' if s.logging else 'off'}, enqueuing {'on' if s.enqueuing else 'off'}")
            return 1
        tno = s.enqueue(Kind.TEST, 0, "dm", "", None, body=f"tltest {time.time():.3f}".encode())
    ctx.out(f"Transaction logging is operational: test record queued as transaction {tno}")
    return 0


def _trace(ctx: Context, req: Request, on: bool) -> None:
    with open_system(ctx) as s:
        name = _name(req, _resolve(ctx, req, Definitions(s)))
        tsservers.set_trace(s, name, on)
    _say(ctx, req, f"Traces {'on' if on else 'off'} for server '{name}'")


@action("tape-socket.traceon", "Turn traces on", "{name=N}")
def traceon(ctx: Context, req: Request) -> None:
    _trace(ctx, req, True)


@action("tape-socket.traceoff", "Turn traces off", "{name=N}")
def traceoff(ctx: Context, req: Request) -> None:
    _trace(ctx, req, False)


@action("tape-socket.version", "Display the version")
def version(ctx: Context, req: Request) -> None:
    ctx.out(f"d3hb tape-socket {__version__}: link protocol {tapesock.LINK_VERSION}, tape format {tape_codec.TAPE_VERSION}")

