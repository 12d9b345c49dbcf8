"""The vault: keep saves and transaction tapes on another server as virtual volumes.

Target side: :func:`register` a source as a node of type server (password,
archive retention), :func:`serve` / :func:`stop` the vault server,
:func:`purge` objects marked for deletion once their retention has passed.

Source side: :func:`define` (sends a new verification code), :func:`update`
(``forcesync=yes`` resets the code after this system's database was
restored), :func:`open_vault_writer` / :func:`open_vault_reader` (file-like
objects any tape operation can use); expire, reconcile and audit are in
:mod:`d3hb.ops.vaultcheck`.  Vault definitions are kept in ``$SYSTEM/vaults.json`` (mode
0600); the verification codes and the volume history live in the system's
database (:mod:`d3hb.store.vaultstore`), so a full restore loses them as
TSM's does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from d3hb.errors import NotFound, Refused, UsageError
from d3hb.ops.vaultio import VolumeSetReader, VolumeWriter, usable_set
from d3hb.protocol import vault as vp
from d3hb.servers import vault as vserver
from d3hb.servers.vaultclient import VaultSession
from d3hb.store.system import NAME_RE, System
from d3hb.store.vaultstore import ACTIVE, USABLE, Archive, Volume, VolumeHistory

DEFS_FILE = "vaults.json"
DEFAULT_PORT = 1500  # TSM's server-to-server port
DEFAULT_MAXSIZE = 64 * 1024 * 1024
MIN_MAXSIZE = 1024
START_TIMEOUT = 15.0
_SIZE_RE = re.compile(r"^(\d+)\s*([kmg]?)b?$", re.I)
_DUR_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 86400}


def parse_size(text: str) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise UsageError(f"size {text!r} is not a number of bytes", "give e.g. maxsize=64M, 500K or 1G")
    n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n < MIN_MAXSIZE:
        raise UsageError(f"maximum volume size {n} is below {MIN_MAXSIZE} bytes", "give maxsize=64M or so")
    return n


def parse_duration(text: str) -> float | None:
    """``30`` or ``30d`` days, ``12h``, ``90m``, ``45s``; ``none`` is no limit (None)."""
    if text.strip().lower() in ("none", "no", ""):
        return None
    m = _DUR_RE.match(text.strip())
    if not m:
        raise UsageError(f"duration {text!r} is not understood", "give days (30 or 30d), hours (12h), minutes (90m), seconds (45s) or none")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def _yes(text: str, what: str) -> bool:
    low = text.strip().lower()
    if low in ("yes", "y", "on", "true"):
        return True
    if low in ("no", "n", "off", "false"):
        return False
    raise UsageError(f"{what}={text!r} is not yes or no", f"give {what}=yes or {what}=no")


# -- definitions on the source ------------------------------------------------------


@dataclass(frozen=True)
class VaultDef:
    name: str
    host: str
    port: int
    node: str
    password: str
    maxsize: int = DEFAULT_MAXSIZE
    retain: float | None = None  # seconds a volume set is kept; None: no age limit
    keepfull: int | None = None  # full saves kept; None: no count limit
    readonly: bool = False  # an import definition: no verification code, reads only

    def key(self) -> bytes:
        return vp.password_key(self.node, self.password)


class Definitions:
    def __init__(self, system: System) -> None:
        self.system = system
        self.file = system.path / DEFS_FILE

    def _load(self) -> dict[str, dict]:
        try:
            return json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise UsageError(f"{self.file} is not valid JSON", "correct or remove it, then define the vaults again") from None

    def list(self) -> list[VaultDef]:
        return [VaultDef(**d) for _, d in sorted(self._load().items())]

    def get(self, name: str) -> VaultDef:
        d = self._load().get(name)
        if d is None:
            raise NotFound(f"no vault {name!r} is defined on system {self.system.name!r}", f"define it: d3hb vault define {name} host=... port=... password=...")
        return VaultDef(**d)

    def put(self, vdef: VaultDef) -> None:
        docs = self._load()
        docs[vdef.name] = asdict(vdef)
        tmp = self.file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
        with os.fdopen(fd, "w") as fh:
            json.dump(docs, fh, indent=1)
        os.replace(tmp, self.file)


def _apply_fields(vdef: VaultDef, fields: dict[str, str]) -> VaultDef:
    known = {"host", "port", "password", "node", "maxsize", "retain", "keepfull", "forcesync"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r}", f"vault fields are {', '.join(sorted(known))}")
    changes: dict[str, object] = {}
    if "host" in fields:
        changes["host"] = fields["host"]
    if "port" in fields:
        try:
            port = int(fields["port"])
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise UsageError(f"port {fields['port']!r} is not a TCP port", "give port=1..65535")
        changes["port"] = port
    if "password" in fields:
        if not fields["password"]:
            raise UsageError("empty password", "give the node's password: password=...")
        changes["password"] = fields["password"]
    if "node" in fields:
        if not NAME_RE.match(fields["node"]):
            raise UsageError(f"illegal node name {fields['node']!r}", "use letters, digits, '_', '-' or '.'")
        changes["node"] = fields["node"]
    if "maxsize" in fields:
        changes["maxsize"] = parse_size(fields["maxsize"])
    if "retain" in fields:
        changes["retain"] = parse_duration(fields["retain"])
    if "keepfull" in fields:
        k = fields["keepfull"].strip().lower()
        if k in ("none", ""):
            changes["keepfull"] = None
        elif not k.isdigit() or int(k) < 1:
            raise UsageError(f"keepfull={fields['keepfull']!r} is not a count of full saves", "give keepfull=N (1 or more) or none")
        else:
            changes["keepfull"] = int(k)
    return replace(vdef, **changes)  # type: ignore[arg-type]


def session(system: System, vdef: VaultDef, *, want: str = "session", new_code: bytes | None = None) -> VaultSession:
    code = None if vdef.readonly else VolumeHistory(system).code(vdef.name)
    return VaultSession(vdef.host, vdef.port, vdef.node, vdef.key(), want=want, code=code, new_code=new_code)


def connector(system: System, vdef: VaultDef) -> Callable[[], VaultSession]:
    """Opens sessions later without touching the database again (a restore replaces it meanwhile)."""
    code = None if vdef.readonly else VolumeHistory(system).code(vdef.name)
    key = vdef.key()
    return lambda: VaultSession(vdef.host, vdef.port, vdef.node, key, code=code)


def define(system: System, name: str, fields: dict[str, str], *, readonly: bool = False) -> tuple[VaultDef, str]:
    """Define a vault; a read/write definition sends a new verification code the vault stores."""
    if not NAME_RE.match(name):
        raise UsageError(f"illegal vault name {name!r}", "use letters, digits, '_', '-' or '.'")
    defs = Definitions(system)
    if any(v.name == name for v in defs.list()):
        raise Refused(f"vault {name!r} is already defined on system {system.name!r}", f"change it with 'vault update {name} ...'")
    for need in ("host", "password"):
        if need not in fields:
            raise UsageError(f"missing {need}=", f"d3hb vault define {name} host=HOST port=PORT password=PASSWORD")
    vdef = _apply_fields(VaultDef(name, "", DEFAULT_PORT, system.name, "", readonly=readonly), fields)
    # forcesync=yes on define: a source rebuilt from nothing (its vaults.json gone with the machine)
    # takes its node back; the vault already holds the old code, which only the password can replace.
    force = _yes(fields.get("forcesync", "no"), "forcesync")
    if readonly:
        if force:
            raise UsageError("an import (r never holds the verification code, so it cannot force one", "leave out forcesync=, or (r")
        with session(system, vdef) as s:
            mode = s.mode
    else:
        code = os.urandom(vp.CODE_SIZE)
        with session(system, vdef, want="forcesync" if force else "define", new_code=code) as s:
            mode = s.mode
        VolumeHistory(system).set_code(name, code)
    defs.put(vdef)
    return vdef, mode


def update(system: System, name: str, fields: dict[str, str]) -> tuple[VaultDef, bool]:
    """Change a definition; ``forcesync=yes`` resets the verification code on both sides."""
    defs = Definitions(system)
    vdef = _apply_fields(defs.get(name), fields)
    force = _yes(fields.get("forcesync", "no"), "forcesync")
    if force:
        if vdef.readonly:
            raise Refused(f"vault {name!r} is an import definition (read-only)", "an import never holds the verification code; define the vault without (r on the source")
        code = os.urandom(vp.CODE_SIZE)
        with session(system, vdef, want="forcesync", new_code=code):
            pass
        VolumeHistory(system).set_code(name, code)
    defs.put(vdef)
    return vdef, force


# -- the target -------------------------------------------------------------------


def register(system: System, node: str, fields: dict[str, str]) -> tuple[str, float | None]:
    """Register (or update) a source as a node of type server on this vault."""
    if not NAME_RE.match(node):
        raise UsageError(f"illegal node name {node!r}", "use letters, digits, '_', '-' or '.'")
    unknown = sorted(set(fields) - {"password", "archretain", "type"})
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r}", "register NODE password=... archretain=DAYS|none")
    if fields.get("type", "server").lower() != "server":
        raise UsageError("only nodes of type server store virtual volumes", "give type=server or leave it out")
    with Archive(system.path) as arch:
        old = arch.node(node)
        if "password" not in fields and old is None:
            raise UsageError("missing password=", f"d3hb vault register {node} password=... archretain=DAYS")
        key = vp.password_key(node, fields["password"]) if "password" in fields else old.key  # type: ignore[union-attr]
        retain = parse_duration(fields["archretain"]) if "archretain" in fields else (old.archretain if old else 30 * 86400.0)
        arch.register(node, key, retain)
    return node, retain


def nodes(system: System) -> list[dict]:
    with Archive(system.path) as arch:
        return [{"node": n.node, "type": n.type, "archretain": n.archretain, "code": "set" if n.code else "none",
                 "objects": sum(1 for o in arch.objects(n.node) if o.status == ACTIVE)} for n in arch.nodes()]


def _server_pid(system_dir: Path) -> int | None:
    """The running vault server's pid (its pid file is locked while it runs)."""
    path = vserver.run_dir(system_dir) / "server.pid"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def serve(system: System, host: str = "0.0.0.0", port: int = DEFAULT_PORT, *, purge_every: float = 3600.0) -> int:
    """Start this system's vault server, detached; returns its pid once it listens."""
    pid = _server_pid(system.path)
    if pid is not None:
        raise Refused(f"the vault server of system {system.name!r} is already running (pid {pid})", "see 'vault status', or 'vault stop' it first")
    Archive(system.path).close()  # the archive exists before the first session
    cfg = vserver.Config(str(system.path), host, port, purge_every)
    rdir = vserver.run_dir(system.path)
    err = rdir / "server.err"
    with open(err, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "d3hb.servers.vault", cfg.to_json()], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=fh, cwd=system.path, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        st = vserver.read_status(system.path) or {}
        if st.get("pid") == proc.pid and st.get("state") == "Listening":
            return proc.pid
        if proc.poll() is not None:
            st = vserver.read_status(system.path) or {}
            why = st.get("error") if st.get("pid") == proc.pid else ""
            lines = err.read_text(errors="replace").strip().splitlines()
            raise Refused(f"the vault server failed to start: {why or (lines[-1] if lines else f'exit status {proc.returncode}')}",
                          "correct the setup (a port in use: give another port=), then serve again")
        time.sleep(0.05)
    raise Refused(f"the vault server did not report listening within {START_TIMEOUT:g} s", f"see {err}")


def stop(system: System, timeout: float = 10.0) -> bool:
    pid = _server_pid(system.path)
    if pid is None or pid < 0:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while _server_pid(system.path) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if _server_pid(system.path) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return True


def status(system: System) -> dict:
    st = vserver.read_status(system.path) or {}
    pid = _server_pid(system.path)
    return {**st, "running": pid is not None, "pid": pid}


def purge(system: System, now: float | None = None) -> list[tuple[str, str]]:
    with Archive(system.path) as arch:
        return arch.purge(now)


# -- volumes ----------------------------------------------------------------------


def volumes(system: System, name: str | None = None) -> list[Volume]:
    return VolumeHistory(system).volumes(name)


def target_objects(system: System, name: str) -> list[dict]:
    with session(system, Definitions(system).get(name)) as s:
        return s.list()


def _set_from_target(system: System, vdef: VaultDef, vset: str) -> list[Volume]:
    """An import has no volume history: the vault's attributes stand in for it."""
    with session(system, vdef) as s:
        objs = [o for o in s.list() if o["vset"] == vset and o["status"] == ACTIVE]
    return [Volume(o["name"], vdef.name, o["vset"], o["part"], o["kind"], o["created"], o["size"], o["digest"], USABLE) for o in objs]


@contextlib.contextmanager
def open_vault_writer(system: System, name: str) -> Iterator[VolumeWriter]:
    """A file-like object for any tape operation; leaving with an exception leaves nothing usable."""
    vdef = Definitions(system).get(name)
    # An import definition is not refused here: the vault itself refuses its writes (it never proves the code).
    w = VolumeWriter(system.path, name, vdef.maxsize, connector(system, vdef))
    try:
        yield w
    except BaseException:
        w.abort()
        raise
    w.close()


def latest_set(system: System, name: str, kinds: tuple[str, ...] = ()) -> str:
    """The newest usable volume set (of one of ``kinds``): what a vault device "has mounted"."""
    sets: dict[str, list[Volume]] = {}
    for v in VolumeHistory(system).volumes(name):
        sets.setdefault(v.vset, []).append(v)
    done = [vols for vols in sets.values() if all(v.status == USABLE for v in vols) and (not kinds or vols[0].kind in kinds)]
    if not done:
        what = " or ".join(kinds) if kinds else "usable"
        raise NotFound(f"vault {name!r} holds no complete {what} volume set in this system's volume history", f"list them: d3hb vault volumes {name}")
    return max(done, key=lambda vols: (vols[0].created, vols[0].vset))[0].vset


def set_reader(system: System, name: str, vset: str | None = None, kinds: tuple[str, ...] = ()) -> VolumeSetReader:
    """A reader of the set that needs ``system`` no more (a full restore replaces its database); close it."""
    vdef = Definitions(system).get(name)
    vset = vset or latest_set(system, name, kinds)
    local = VolumeHistory(system).volumes(name, vset)
    vols = usable_set(local if local else _set_from_target(system, vdef, vset), vset)
    return VolumeSetReader(vols, connector(system, vdef))


@contextlib.contextmanager
def open_vault_reader(system: System, name: str, vset: str | None = None, kinds: tuple[str, ...] = ()) -> Iterator[VolumeSetReader]:
    """The volume set as one tape stream; ``vset`` None reads the newest usable set (of ``kinds``)."""
    r = set_reader(system, name, vset, kinds)
    try:
        yield r
    finally:
        r.close()


def total_size(system: System, name: str, vset: str) -> int | None:
    vols = VolumeHistory(system).volumes(name, vset)
    return sum(v.size for v in vols) if vols else None
