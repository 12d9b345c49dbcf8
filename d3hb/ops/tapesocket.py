"""tape-socket server definitions and logs, kept in the system's ``ts.log`` control file.

A definition is an item of ``dict ts.log`` named after the server (the
default server is ``default``; others, such as ``ssave``, are D3's Other
Server), one attribute per keyword in :data:`KEYWORDS` order.  The values a
command last used are kept in the item ``*last`` so ``keyword=.`` can reuse
them.  Messages go to ``ts.log`` (the recent log, trimmed to the last
:data:`RECENT` messages) and to ``ts.log,log`` (the permanent log, never
trimmed), each an item ``date^time^server^message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from d3hb.errors import NotFound, UsageError
from d3hb.servers.tslog import PERMANENT, RECENT, TS_LOG, Message, log, messages
from d3hb.store import control
from d3hb.store.system import FileInfo, System, check_name

DEFAULT = "default"
DEFAULT_PORT = 3000  # D3's network save/restore: "a value like 2000 or 3000 is usually safe"
LAST = "*last"
ROLES = ("output", "input")

# keyword -> help shown for keyword=?  (the order is the attribute order in dict ts.log)
KEYWORDS: dict[str, str] = {
    "role": "output (reads the pipe, sends to the network) or input (receives, writes the pipe)",
    "pipe": "path of the named pipe (created with mode 0600 when missing)",
    "host": "output: the receiver's host name; input: the address to listen on (0.0.0.0: all)",
    "port": "TCP port of the input server (a free port, e.g. 3000)",
    "callrep": "number of attempts the output server makes to call the input server (0: forever)",
    "callwait": "seconds the output server waits between two calls",
    "trace": "on: every block is recorded in the log; off: only events",
}


@dataclass(frozen=True)
class TsServer:
    name: str
    role: str = "output"
    pipe: str = ""
    host: str = ""
    port: int = DEFAULT_PORT
    callrep: int = 10
    callwait: float = 3.0
    trace: bool = False

    def values(self) -> dict[str, str]:
        return {
            "role": self.role, "pipe": self.pipe, "host": self.host, "port": str(self.port),
            "callrep": str(self.callrep), "callwait": f"{self.callwait:g}", "trace": "on" if self.trace else "off",
        }  # fmt: skip


def _default(system: System, name: str) -> TsServer:
    return TsServer(name, pipe=str(system.path / f"ts-{name}.pipe"), host="localhost")


def check(srv: TsServer) -> TsServer:
    """Validate every field; the message names the keyword."""
    check_name(srv.name, "server")
    if srv.role not in ROLES:
        raise UsageError(f"role={srv.role!r} is not a tape-socket role", "give role=output or role=input")
    if not srv.pipe:
        raise UsageError("pipe= is empty", "give the path of the named pipe")
    if not 1 <= srv.port <= 65535:
        raise UsageError(f"port={srv.port} is out of range", "give a TCP port from 1 to 65535")
    if srv.callrep < 0 or srv.callwait < 0:
        raise UsageError("callrep and callwait cannot be negative", "give 0 or more")
    if srv.role == "output" and not srv.host:
        raise UsageError("host= is empty for an output server", "give the receiver's host name")
    return srv


def _parse(name: str, fields_: Mapping[str, str], base: TsServer) -> TsServer:
    changes: dict[str, object] = {}
    for key, value in fields_.items():
        key = key.lower()
        if key not in KEYWORDS:
            raise UsageError(f"unknown keyword {key!r}", f"keywords are {', '.join(KEYWORDS)}")
        try:
            if key == "port" or key == "callrep":
                changes[key] = int(value)
            elif key == "callwait":
                changes[key] = float(value)
            elif key == "trace":
                if value.lower() not in ("on", "off", "y", "n", "yes", "no"):
                    raise ValueError(value)
                changes[key] = value.lower() in ("on", "y", "yes")
            elif key == "role":
                changes[key] = value.lower()
            elif key == "pipe":
                changes[key] = str(Path(value).expanduser().absolute())
            else:
                changes[key] = value
        except ValueError:
            raise UsageError(f"{key}={value!r} is not valid", KEYWORDS[key]) from None
    if base.name != name:
        base = replace(base, name=name)
    return check(replace(base, **changes))  # type: ignore[arg-type]


class Definitions:
    """The tape-socket servers defined on one system."""

    def __init__(self, system: System) -> None:
        self.system = system

    def _dict(self) -> FileInfo:
        return self.system.file_info(control.SYSTEM_ACCOUNT, f"dict {TS_LOG}")

    def _read(self, item_id: str) -> list[str] | None:
        row = self.system.q("SELECT body FROM items WHERE fof=? AND id=?", (self._dict().fof, item_id.encode())).fetchone()
        return None if row is None else bytes(row[0]).decode().split("\xfe")

    def _write(self, item_id: str, attrs: list[str]) -> None:
        with self.system.transaction():
            # Local configuration: never logged, never replicated.
            self.system._put(self._dict(), item_id.encode(), "\xfe".join(attrs).encode(), log=False, guard=False)

    def names(self) -> list[str]:
        rows = self.system.q("SELECT id FROM items WHERE fof=? ORDER BY id", (self._dict().fof,)).fetchall()
        return [bytes(r[0]).decode() for r in rows if not bytes(r[0]).startswith(b"*")]

    def all(self) -> list[TsServer]:
        return [self.get(n) for n in self.names()]

    def exists(self, name: str) -> bool:
        return self._read(name) is not None

    def get(self, name: str) -> TsServer:
        attrs = self._read(name)
        if attrs is None:
            raise NotFound(f"tape-socket server {name!r} is not defined on system {self.system.name!r}", f"define it: tape-socket setup name={name} role=... pipe=... host=... port=...")
        values = dict(zip(KEYWORDS, attrs, strict=False))
        return _parse(name, {k: v for k, v in values.items() if v != ""}, _default(self.system, name))

    def setup(self, name: str, values: Mapping[str, str]) -> TsServer:
        """Define (or redefine) a server; keywords not given take their defaults."""
        base = _default(self.system, name)
        if str(values.get("role", "")).lower() == "input" and "host" not in values:
            base = replace(base, host="0.0.0.0")  # an input server listens on every interface
        srv = _parse(name, values, base)
        self._write(name, list(srv.values().values()))
        return srv

    def setarg(self, name: str, values: Mapping[str, str]) -> TsServer:
        """Change some keywords of an existing server."""
        srv = _parse(name, values, self.get(name))
        self._write(name, list(srv.values().values()))
        return srv

    def delete(self, name: str) -> None:
        self.get(name)
        with self.system.transaction():
            self.system._drop(self._dict(), name.encode(), log=False, guard=False)

    # -- keyword=. ---------------------------------------------------------
    def last_values(self) -> dict[str, str]:
        attrs = self._read(LAST) or []
        return dict(a.split("=", 1) for a in attrs if "=" in a)

    def remember(self, values: Mapping[str, str]) -> None:
        last = self.last_values()
        last.update({k.lower(): v for k, v in values.items()})
        self._write(LAST, [f"{k}={v}" for k, v in sorted(last.items())])


__all__ = ["DEFAULT", "KEYWORDS", "PERMANENT", "RECENT", "TS_LOG", "Definitions", "Message", "TsServer", "check", "log", "messages"]
