"""Test helpers shared by tests/menu and tests/ui: the action contract and a fake registry.

The real actions are written in their own layers; the menus are tested
against this fake, registered under exactly the contract's names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from d3hb.errors import D3hbError, NotFound
from d3hb.menu.loader import builtin_dir, load_menus
from d3hb.menu.model import MenuSet, Result, RunAction
from d3hb.menu.registry import Context, Registry, Request

# The action-name contract the menus must keep to (the one place it is written in the tests).
CONTRACT: frozenset[str] = frozenset(
    [f"hot-backup.{v}" for v in (
        "status", "query", "start", "stop", "show", "statistics", "queue", "setup", "delete", "list", "state", "sample",
        "coldstart", "log-dl-only", "log-all", "stop-enqueuing", "start-enqueuing", "clear-queue", "replay-parked",
        "promote", "switchover", "verify", "resync", "rejoin", "failback")]
    + [f"tape-socket.{v}" for v in (
        "check", "drain", "listpipes", "listserver", "query", "setarg", "setup", "show", "shutdown", "start", "startall",
        "startsend", "startreceive", "status", "stop", "stopall", "tltest", "traceon", "traceoff", "version")]
    + [f"vault.{v}" for v in (
        "status", "stop", "serve", "register", "define", "update", "volumes", "save", "restore", "expire", "purge",
        "reconcile", "audit")]
)  # fmt: skip
TCL_VERBS = ("list", "count", "create-file")

HB_FIELDS = {"name": "hbs", "type": "S", "port": "2001", "protocol": "inet", "log-slave": "OFF", "notify": "dm,!0",
             "apply": "ON", "auto-create": "OFF", "code": "********", "timeout": "30"}  # fmt: skip


@dataclass
class Call:
    name: str
    request: Request
    server: str | None


Behaviour = Callable[[Context, Request], "int | None"] | list[str] | D3hbError


@dataclass
class FakeActions:
    """A registry of the contract's names that records each call and does what it is told."""

    hb_servers: list[str] = field(default_factory=lambda: ["hbs"])
    ts_servers: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "default": {"role": "output", "pipe": "/tmp/ts.pipe", "host": "rhost", "port": "3000"},
        "ssave": {"role": "output", "pipe": "/tmp/ssave.pipe", "host": "rhost", "port": "3001"},
    })  # fmt: skip
    state: str = "Reading network  cur 1843 ack 1843"
    calls: list[Call] = field(default_factory=list)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = Registry()
        for name in sorted(CONTRACT) + [f"tcl.{v}" for v in TCL_VERBS]:
            self.registry.action(name, f"fake {name}")(self._make(name))

    def on(self, name: str, behaviour: Behaviour) -> None:
        self.behaviour[name] = behaviour

    def names(self, purpose_free: bool = True) -> list[str]:
        return [c.name for c in self.calls if not purpose_free or c.name.split(".")[1] not in ("state", "sample")]

    def _make(self, name: str) -> Callable[[Context, Request], int | None]:
        def fn(ctx: Context, req: Request) -> int | None:
            self.calls.append(Call(name, req, ctx.server))
            b = self.behaviour.get(name)
            if isinstance(b, D3hbError):
                raise b
            if callable(b):
                return b(ctx, req)
            for line in b if b is not None else self._default(name, req):
                ctx.out(line)
            return None

        return fn

    def _default(self, name: str, req: Request) -> list[str]:
        if name == "hot-backup.list":
            return list(self.hb_servers)
        if name == "hot-backup.state":
            return [self.state]
        if name == "hot-backup.sample":
            return ["depth=12 lag=3 lag_s=0.25"]
        if name == "hot-backup.show" and req.fields.get("format") == "fields":
            return [f"{k}={v}" for k, v in HB_FIELDS.items()]
        if name == "tape-socket.listserver":
            rows = [f"{n:<8} {d['role']:<6} {d['host']:<6} {d['port']:<5} {d['pipe']}" for n, d in self.ts_servers.items()]
            return ["Server   Role   Host   Port  Pipe", "-------- ------ ------ ----- ----", *rows]
        if name == "tape-socket.show":
            server = req.fields.get("name", "default")
            if server not in self.ts_servers:
                raise NotFound(f"tape-socket server {server!r} is not set up", f"set it up with 'tape-socket setup name={server}'")
            return [f"Server '{server}'", *(f"  {k:<9} {v}" for k, v in self.ts_servers[server].items())]
        if name == "tape-socket.setup":
            self.ts_servers[req.fields["name"]] = {k: v for k, v in req.fields.items() if k != "name"}
            return [f"Server '{req.fields['name']}' set up"]
        return [f"{name} done"]


def shipped_menus(fake: FakeActions | None = None) -> MenuSet:
    return load_menus([builtin_dir()], registry=(fake or FakeActions()).registry)


def factory_for(home: Path) -> Callable[[str | None], Context]:
    return lambda server=None: Context(home=home, server=server)


def run_action(fake: FakeActions, run: RunAction) -> Result:
    """Run a RunAction on the fake, as a front end would (without any front end)."""
    lines: list[str] = []
    ctx = Context(home=Path("/nonexistent"), server=run.server, out=lambda line: lines.append(str(line)), confirm=lambda q: run.confirmed)
    try:
        status = fake.registry.run(run.name, ctx, run.request)
    except D3hbError as exc:
        return Result(exc.status, tuple(lines), str(exc), type(exc).__name__)
    return Result(status, tuple(lines))
