"""Hot backup server definitions: D3's Setup Server, kept in ``dm,hb.log``.

One item per server (its id is the server name), one attribute per field in
the order of :data:`FIELDS`.  Both servers of a pair carry the same name: the
master's call names the server and the slave refuses any other name.

Defining a slave turns the system's ``replica`` flag on (local writes to
DL files are then refused by the store), except a change to the slave
definition a promoted system keeps; defining a master adds a queue cursor,
so the queue keeps what that slave has not acknowledged; deleting a master
removes its cursor.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from d3hb.errors import NotFound, Refused, UsageError
from d3hb.store import apply as store_apply
from d3hb.store import control, history, messages
from d3hb.store.system import NAME_RE, FileInfo, System

HB_LOG = "hb.log"
MASTER, SLAVE = "M", "S"

# Field names on the command line and in menus (the contract), in attribute order.
FIELDS = ("type", "host", "port", "target", "protocol", "log-slave", "check", "txlog", "notify", "apply",
          "auto-create", "code", "tls-cert", "tls-key", "tls-ca", "timeout", "cap", "bind", "window", "batch", "verify")  # fmt: skip
MASTER_ONLY = frozenset({"host", "target", "txlog", "cap", "window", "batch", "verify"})  # check: both (heartbeats)
SLAVE_ONLY = frozenset({"log-slave", "apply", "auto-create", "bind"})

DEFAULT_PORT = 2000
DEFAULT_CHECK = 10.0  # s: heartbeats both ways and the master's test record
DEFAULT_TXLOG = 1.0  # s: how often an idle master looks at the queue
DEFAULT_TIMEOUT = 30.0  # s: a write making no progress this long drops the connection (D3's 30 s)
DEFAULT_CAP = 1_000_000  # transactions the queue may hold for one slave before "resync required"
DEFAULT_BIND = "127.0.0.1"  # a slave listens on loopback until told otherwise: never exposed by accident
DEFAULT_WINDOW = 8  # batches in flight without an acknowledgement
DEFAULT_BATCH = 500  # transactions per batch (and at most 1 MiB)
MIN_CODE = 8

_SERVER_NAME = re.compile(r"^[A-Za-z]{1,8}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,252})$")


@dataclass(frozen=True)
class ServerDef:
    """One server as Setup Server shows it."""

    name: str
    type: str  # "M" master, "S" slave
    host: str = ""  # master: the slave's host
    port: int = DEFAULT_PORT
    target: str = ""  # master: the slave's system (D3's target VME name)
    protocol: str = "inet"
    log_slave: bool = False
    check: float = DEFAULT_CHECK
    txlog: float = DEFAULT_TXLOG
    notify: tuple[str, ...] = ()
    apply: bool = True
    auto_create: bool = False
    code: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    timeout: float = DEFAULT_TIMEOUT
    cap: int = DEFAULT_CAP
    bind: str = DEFAULT_BIND
    window: int = DEFAULT_WINDOW
    batch: int = DEFAULT_BATCH
    verify: float = 0.0  # s between periodic verify markers; 0: only 'hot-backup verify'

    @property
    def is_master(self) -> bool:
        return self.type == MASTER

    @property
    def type_name(self) -> str:
        return "Master" if self.is_master else "Slave"

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_ca)

    def value(self, field: str) -> str:
        """A field as Show Server and the hb.log item write it."""
        v = getattr(self, field.replace("-", "_"))
        if isinstance(v, bool):
            return "ON" if v else "OFF"
        if isinstance(v, tuple):
            return ",".join(v)
        if isinstance(v, float):
            return format(v, ".15g")
        return str(v)

    def to_json(self) -> dict:
        d = asdict(self)
        d["notify"] = list(self.notify)
        return d

    @classmethod
    def from_json(cls, doc: Mapping) -> ServerDef:
        d = dict(doc)
        d["notify"] = tuple(d.get("notify", ()))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _bad(field: str, value: str, todo: str) -> UsageError:
    return UsageError(f"field '{field}': {value!r} is not valid", todo)


def _onoff(field: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "yes", "y", "1", "true"):
        return True
    if v in ("off", "no", "n", "0", "false"):
        return False
    raise _bad(field, value, f"give {field}=on or {field}=off")


def _number(field: str, value: str, lo: float, hi: float, *, integer: bool = False, todo: str = "") -> float:
    try:
        n = int(value) if integer else float(value)
    except ValueError:
        raise _bad(field, value, todo or f"give a number from {lo:g} to {hi:g}") from None
    if not lo <= n <= hi or n != n:
        raise _bad(field, value, todo or f"give a number from {lo:g} to {hi:g}")
    return n


def check_server_name(name: str) -> str:
    if not _SERVER_NAME.match(name or ""):
        raise UsageError(f"field 'name': server name {name!r} is not valid", "use 1 to 8 letters, as D3 does (e.g. hbs)")
    return name


def parse_field(field: str, value: str) -> tuple[str, object]:
    """One ``field=value`` from the command line or a menu form -> (attribute, value)."""
    f = field.lower().replace("_", "-")
    v = value.strip()
    if f == "type":
        t = v.upper()[:1]
        if t not in (MASTER, SLAVE) or len(v) > 6:
            raise _bad(f, v, "give type=M (master) or type=S (slave)")
        return "type", t
    if f == "host":
        if v and not _HOST.match(v):
            raise _bad(f, v, "give the slave's host name or IP address")
        return "host", v
    if f == "port":
        return "port", int(_number(f, v, 1024, 32767, integer=True, todo="give a TCP port from 1024 to 32767 (default 2000)"))
    if f == "target":
        if v and not NAME_RE.match(v):
            raise _bad(f, v, "give the slave system's name (D3's target VME name)")
        return "target", v
    if f == "protocol":
        if v.lower() != "inet":
            raise _bad(f, v, "the protocol is inet and cannot be changed")
        return "protocol", "inet"
    if f in ("log-slave", "apply", "auto-create"):
        return f.replace("-", "_"), _onoff(f, v)
    if f in ("check", "timeout"):
        return f, _number(f, v, 0.1, 86400)
    if f == "txlog":
        return f, _number(f, v, 0.01, 3600)
    if f == "notify":
        return "notify", tuple(messages.parse_targets(v)) if v else ()
    if f == "code":
        if v and (len(v) < MIN_CODE or not v.isprintable()):
            raise _bad(f, "*" * len(v), f"give a verification code of at least {MIN_CODE} printable characters, the same on both servers")
        return "code", v
    if f in ("tls-cert", "tls-key", "tls-ca"):
        return f.replace("-", "_"), v
    if f == "cap":
        return "cap", int(_number(f, v, 0, 10**12, integer=True, todo="give the most transactions the queue may hold for this slave (0: no cap)"))
    if f == "bind":
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise _bad(f, v, "give the address the slave listens on: 127.0.0.1 (default), 0.0.0.0 for all, or one address") from None
        return "bind", v
    if f == "window":
        return "window", int(_number(f, v, 1, 256, integer=True))
    if f == "batch":
        return "batch", int(_number(f, v, 1, 100_000, integer=True))
    if f == "verify":
        todo = "give the seconds between periodic verifications: 0 (off) or 1 to 604800 (e.g. 3600)"
        n = _number(f, v, 0, 604800, todo=todo)
        if 0 < n < 1:
            raise _bad(f, v, todo)
        return "verify", n
    raise UsageError(f"unknown field {field!r}", f"known fields: name, {', '.join(FIELDS)}")


def validate(d: ServerDef) -> ServerDef:
    """Cross-field rules; the error names the field."""
    check_server_name(d.name)
    if d.is_master:
        if not d.host:
            raise UsageError("field 'host': a master needs the slave's host", "give host=HOST (e.g. host=127.0.0.1)")
        if not d.target:
            raise UsageError("field 'target': a master needs the slave's system name", "give target=SYSTEM")
    if not d.code:
        raise UsageError("field 'code': no verification code", f"give code=... ({MIN_CODE} or more characters), the same on both servers of the pair")
    if bool(d.tls_cert) != bool(d.tls_key):
        raise UsageError("field 'tls-key': a TLS certificate needs its key (and the key its certificate)", "give both tls-cert= and tls-key=")
    if not d.is_master and d.tls and not d.tls_cert:
        raise UsageError("field 'tls-cert': a slave with TLS needs its certificate", "give tls-cert= and tls-key=")
    return d


class Definitions:
    """The server definitions of one system."""

    def __init__(self, system: System) -> None:
        self.system = system

    def _file(self) -> FileInfo:
        f = self.system.find_file(control.SYSTEM_ACCOUNT, HB_LOG, HB_LOG)
        if f is None:  # every system has it; an old or damaged one gets it back
            if self.system.find_file(control.SYSTEM_ACCOUNT, HB_LOG, None) is None:
                self.system.create_file(control.SYSTEM_ACCOUNT, HB_LOG, None, 7, "D", log=False, guard=False)
            f = self.system.create_file(control.SYSTEM_ACCOUNT, HB_LOG, HB_LOG, 7, "D", log=False, guard=False)
        return f

    def names(self) -> list[str]:
        f = self._file()
        return sorted(bytes(i).decode() for (i,) in self.system.q("SELECT id FROM items WHERE fof=?", (f.fof,)))

    def all(self) -> list[ServerDef]:
        return [self.get(n) for n in self.names()]

    def exists(self, name: str) -> bool:
        return name in self.names()

    def get(self, name: str) -> ServerDef:
        row = self.system.q("SELECT body FROM items WHERE fof=? AND id=?", (self._file().fof, name.encode())).fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none defined"
            raise NotFound(f"server {name!r} is not defined on system {self.system.name!r} (servers: {known})",
                           f"define it with 'd3hb hot-backup setup {name} type=M|S ...'")
        attrs = [a.decode("utf-8", "replace") for a in bytes(row[0]).split(b"\xfe")]
        d = ServerDef(name=name, type=attrs[0] if attrs else MASTER)
        for field, text in zip(FIELDS[1:], attrs[1:]):
            if text == "":
                continue
            try:
                key, value = parse_field(field, text)
            except UsageError:
                continue  # an attribute this release cannot read keeps its default
            d = replace(d, **{key: value})
        return d

    def put(self, d: ServerDef) -> ServerDef:
        """Write a definition and its side effects in one transaction."""
        validate(d)
        body = b"\xfe".join(d.value(f).encode() for f in FIELDS)  # the mark is the byte 254, values UTF-8
        with self.system.transaction():
            old = self.get(d.name) if self.exists(d.name) else None
            self.system._put(self._file(), d.name.encode(), body, log=False, guard=False)
            if d.is_master:
                self.system.queue.add_cursor(d.name)
            else:
                if old is not None and old.is_master:
                    self.system.queue.drop_cursor(d.name)
                # A promoted system keeps its slave definition (rejoin reads it): a changed notify
                # list there must not refuse the users' writes again.  A restored system has no mark.
                if old is None or old.is_master or not self.system.meta(history.PROMOTED_META):
                    self.system.set_meta("replica", "on")
        return d

    def setup(self, name: str, values: Mapping[str, str]) -> tuple[ServerDef, bool]:
        """Create or change a server from ``field=value`` words; returns (definition, created)."""
        check_server_name(name)
        exists = self.exists(name)
        # A menu form sends the code back masked or empty: that keeps the code already set.
        keep = {k for k, v in values.items() if k.lower() == "code" and exists and (not v.strip() or set(v.strip()) == {"*"})}
        parsed = dict(parse_field(k, v) for k, v in values.items() if k.lower() != "name" and k not in keep)
        if not exists and "type" not in parsed:
            raise UsageError("field 'type': a new server needs a type", "give type=M (master) or type=S (slave)")
        base = self.get(name) if exists else ServerDef(name=name, type=str(parsed["type"]))
        d = replace(base, **parsed)  # type: ignore[arg-type]
        demoted = exists and base.is_master and not d.is_master
        acked = self._demotable(name) if demoted else 0
        if demoted:  # a slave calls no one: the old master's peer must not linger in Show Server
            d = replace(d, host="", target="")
        wrong = MASTER_ONLY if not d.is_master else SLAVE_ONLY
        given = {k.lower().replace("_", "-") for k in values} & wrong
        if given:
            role = "slave" if not d.is_master else "master"
            raise UsageError(f"field '{sorted(given)[0]}' does not apply to a {role} server", f"leave it out for {name}")
        with self.system.transaction():
            self.put(d)
            if demoted:  # its peer holds everything up to here: the new master continues after it
                store_apply.record_applied(self.system, name, acked, self.system.history_id, self.system.epoch)
        return d, not exists

    def _demotable(self, name: str) -> int:
        """A master made a slave by hand: allowed only if its slave acknowledged every update it numbered.

        Otherwise the new master's updates would land on top of updates it
        never received (silent divergence); ``rejoin`` lists and dumps those.
        The queue keeps every update some destination has not acknowledged,
        so it holds exactly those (a system restored from a save holds none).
        Returns the number the slave definition starts from.
        """
        acked = self.system.queue.cursor(name) or 0
        harmless = tuple(k.value for k in history.HARMLESS)
        first, last, n = self.system.q(
            f"SELECT min(tno), max(tno), count(*) FROM queue WHERE tno>? AND kind NOT IN ({','.join('?' * len(harmless))})",
            (acked, *harmless)).fetchone()
        if n:
            held = f"update {first}" if n == 1 else f"{n} updates ({first} to {last})"
            raise Refused(f"system {self.system.name!r} holds {held} that the slave of '{name}' never acknowledged: "
                          f"made a slave, they would be on no other system",
                          f"on one host use 'd3hb hot-backup rejoin {name} peer=SYSTEM' (lists them and dumps them to a tape); "
                          f"across hosts dump them ('txn-dump {first}'), re-seed this system from a save of the new master, "
                          f"then delete and define the server again")
        return max(acked, history.own_position(self.system).last)

    def delete(self, name: str) -> ServerDef:
        d = self.get(name)
        with self.system.transaction():
            self.system._drop(self._file(), name.encode(), log=False, guard=False)
            if d.is_master:
                self.system.queue.drop_cursor(name)
        return d
