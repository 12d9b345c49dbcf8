"""The vault server process: ``python -m d3hb.servers.vault CONFIG_JSON``.

Started detached by :func:`d3hb.ops.vault.serve`.  It keeps
``$SYSTEM/vault/server.pid`` locked while it runs (a second server on the
same system is refused), writes ``server.status`` (JSON: state, pid, host,
port, error) and appends to ``server.log``.  Each connection is one
:class:`~d3hb.protocol.vault.ServerConn`; what a node may do is decided
here: an unknown node or a wrong password is refused, a session that proves
the stored verification code is read/write, one that does not is
read-only, and a node whose policy has no archive retention cannot store.

An object is received into ``.NAME.partial`` and becomes an archive object
(file renamed, row written) only when its END frame's size and SHA-256
match what arrived: a connection lost mid-volume leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from d3hb.errors import D3hbError, RemoteProtocolError
from d3hb.protocol import vault as vp
from d3hb.store.vaultstore import ACTIVE, DELETED, Archive, ArchiveObject, check_volume_name

logger = logging.getLogger(__name__)

READ_CHUNK = vp.CHUNK
IDLE_TIMEOUT = 300.0  # a silent client is dropped; its partial object with it


@dataclass(frozen=True)
class Config:
    system_dir: str
    host: str = "0.0.0.0"
    port: int = 3000
    purge_every: float = 3600.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls(**json.loads(text))


def run_dir(system_dir: Path | str) -> Path:
    return Path(system_dir) / "vault"


def read_status(system_dir: Path | str) -> dict | None:
    try:
        return json.loads((run_dir(system_dir) / "server.status").read_text())
    except (FileNotFoundError, ValueError):
        return None


class VaultServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dir = run_dir(cfg.system_dir)
        self.archive = Archive(cfg.system_dir)
        self.stopping = asyncio.Event()
        self.sessions = 0

    # -- bookkeeping ------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n"
        with open(self.dir / "server.log", "a") as fh:
            fh.write(line)

    def status(self, state: str, error: str = "") -> None:
        doc = {"state": state, "pid": os.getpid(), "host": self.cfg.host, "port": self.cfg.port, "error": error,
               "sessions": self.sessions, "at": time.time()}
        tmp = self.dir / "server.status.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / "server.status")

    # -- one connection ---------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = vp.ServerConn()
        session = _Session(self, conn, writer)
        try:
            while not self.stopping.is_set():
                data = await asyncio.wait_for(reader.read(READ_CHUNK), IDLE_TIMEOUT)
                if not data:
                    conn.close()
                    break
                for ev in conn.feed(data):
                    await session.on_event(ev)
                await session.flush()
                if conn.state == "closed":
                    break
        except (RemoteProtocolError, D3hbError) as exc:
            self.log(f"session from {peer} ({conn.node or '?'}) ended: {exc}")
            with contextlib.suppress(Exception):
                if conn.state != "closed":
                    conn.error(exc.what, exc.todo or "")
                    await session.flush()
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            self.log(f"session from {peer} ({conn.node or '?'}) lost: {type(exc).__name__} {exc}")
        finally:
            session.discard_partial()
            with contextlib.suppress(Exception):
                writer.close()

    async def purger(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.cfg.purge_every)
            if self.stopping.is_set():
                return
            for node, name in self.archive.purge():
                self.log(f"purged archive object {node}/{name}")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        partials, unnamed = self.archive.sweep()
        for path in partials:
            self.log(f"removed {path.relative_to(self.dir)}: a volume being received when the server stopped")
        for path in unnamed:
            self.log(f"{path.relative_to(self.dir)} is not an archive object (no row names it); kept: reconcile from its source")
        server = await asyncio.start_server(self.handle, self.cfg.host, self.cfg.port, reuse_address=True)
        self.status("Listening")
        self.log(f"vault server pid {os.getpid()} listening on {self.cfg.host}:{self.cfg.port}")
        purge = asyncio.create_task(self.purger())
        await self.stopping.wait()
        server.close()
        purge.cancel()
        self.log("vault server stopped")


class _Session:
    """One connection's policy: who the node is, what it may do, the object being received."""

    def __init__(self, srv: VaultServer, conn: vp.ServerConn, writer: asyncio.StreamWriter) -> None:
        self.srv, self.conn, self.writer = srv, conn, writer
        self.node = None
        self.mode = "ro"
        self.partial: tuple[Path, object, dict, hashlib._Hash, int] | None = None  # path, file, request, sha, size

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    def refuse(self, what: str, todo: str) -> None:
        self.srv.log(f"refused node {self.conn.node!r}: {what}")
        self.conn.error(what, todo)

    async def on_event(self, ev: vp.Event) -> None:
        arch = self.srv.archive
        if isinstance(ev, vp.HelloReceived):
            if ev.version != vp.VAULT_VERSION:
                return self.refuse(f"vault link version {ev.version} not supported (this vault speaks {vp.VAULT_VERSION})", "upgrade d3hb on both systems")
            self.node = arch.node(ev.node)
            if self.node is None:
                return self.refuse(f"node {ev.node!r} is not registered on this vault",
                                   f"on the vault system: d3hb vault register {ev.node} password=...")
            self.conn.challenge(os.urandom(vp.NONCE_SIZE))
        elif isinstance(ev, vp.AuthReceived):
            await self._authenticate()
        elif isinstance(ev, vp.RequestReceived):
            await self._request(ev)
        elif isinstance(ev, vp.Data):
            if self.partial is None:
                return self.refuse("data arrived with no object being stored", "send a put request first")
            path, fh, req, sha, size = self.partial
            fh.write(ev.data)  # type: ignore[attr-defined]
            sha.update(ev.data)
            self.partial = (path, fh, req, sha, size + len(ev.data))
        elif isinstance(ev, vp.End):
            self._finish_put(ev)
        elif isinstance(ev, vp.ErrorReceived):
            self.srv.log(f"node {self.conn.node!r} reported: {ev.what}")
            self.discard_partial()

    async def _authenticate(self) -> None:
        node = self.node
        assert node is not None
        # Deriving nothing here: the key is stored; checking is a few HMACs.
        chk = self.conn.check(node.key, node.code)
        if not chk.password_ok:
            return self.refuse(f"wrong password for node {node.node!r}", "give the password the node was registered with (vault update NAME password=...)")
        want = self.conn.want
        if want == "define":
            if node.code is not None:
                return self.refuse(f"node {node.node!r} already has a verification code from an earlier define",
                                   "after a restore of the source: vault update NAME forcesync=yes; a rebuilt source: define with forcesync=yes; a third system: (r")
            self.srv.archive.set_code(node.node, chk.new_code)  # type: ignore[arg-type]
            self.srv.log(f"node {node.node!r} defined: verification code stored")
            self.mode = "rw"
        elif want == "forcesync":
            self.srv.archive.set_code(node.node, chk.new_code)  # type: ignore[arg-type]
            self.srv.log(f"node {node.node!r} forcesync: verification code reset")
            self.mode = "rw"
        else:
            self.mode = "rw" if chk.code_ok else "ro"
        self.srv.sessions += 1
        note = "" if self.mode == "rw" else "read-only: this system did not prove the node's verification code"
        self.srv.log(f"session node {node.node!r} {want} mode {self.mode}")
        self.conn.accept(node.key, self.mode, note)

    def _writable(self, what: str) -> bool:
        node = self.node
        assert node is not None
        if self.mode != "rw":
            self.refuse(f"{what} refused: the session of node {node.node!r} is read-only (verification code not proved)",
                        "a third system can only read; if the source's database was restored run 'vault update NAME forcesync=yes' on it")
            return False
        return True

    async def _request(self, ev: vp.RequestReceived) -> None:
        arch, node = self.srv.archive, self.node
        assert node is not None
        a = ev.args
        if ev.op == "list":
            self.conn.reply(objects=[o.doc() for o in arch.objects(node.node)])
        elif ev.op == "put":
            if not self._writable("store"):
                return
            fresh = arch.node(node.node)
            if fresh is None or fresh.archretain is None:
                return self.refuse(f"the policy of node {node.node!r} has no archive retention: it cannot store data",
                                   f"on the vault: d3hb vault register {node.node} archretain=DAYS")
            name = check_volume_name(str(a.get("name", "")))
            old = arch.object(node.node, name)
            if old is not None:
                return self.refuse(f"archive object {name!r} of node {node.node!r} already exists", "volume names are never reused; this is a bug on the source")
            path = arch.path(node.node, name)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.partial")
            self.discard_partial()
            self.partial = (tmp, open(tmp, "wb"), dict(a), hashlib.sha256(), 0)  # noqa: SIM115 - closed in finish/discard
            self.conn.reply(ready=name)  # the source sends data only after this: a refusal costs no upload
        elif ev.op == "get":
            await self._get(node.node, check_volume_name(str(a.get("name", ""))), int(a.get("offset", 0)))
        elif ev.op == "mark":
            if not self._writable("marking objects"):
                return
            status = str(a.get("status"))
            if status not in (ACTIVE, DELETED):
                return self.refuse(f"unknown object status {status!r}", "active or deleted")
            n = arch.mark(node.node, [str(x) for x in a.get("names", [])], status)
            self.srv.log(f"node {node.node!r}: {n} objects marked {status}")
            self.conn.reply(count=n)
        else:
            self.refuse(f"unknown vault request {ev.op!r}", "upgrade d3hb on both systems")

    def _finish_put(self, ev: vp.End) -> None:
        if self.partial is None:
            return self.refuse("end of object with no object being stored", "send a put request first")
        path, fh, req, sha, size = self.partial
        self.partial = None
        fh.flush()  # type: ignore[attr-defined]
        os.fsync(fh.fileno())  # type: ignore[attr-defined]
        fh.close()  # type: ignore[attr-defined]
        digest = sha.hexdigest()
        if size != ev.size or digest != ev.digest:
            path.unlink(missing_ok=True)
            return self.refuse(f"object {req.get('name')!r} arrived with {size} bytes sha256 {digest[:12]}, the source sent {ev.size} bytes {ev.digest[:12]}",
                               "the link corrupts data; the source retries the volume")
        name = path.name[1:-len(".partial")]
        node = self.node
        assert node is not None
        os.replace(path, path.with_name(name))
        _sync_dir(path.parent)  # the rename is durable before the row says the object exists
        obj = ArchiveObject(node.node, name, str(req.get("vset", "")), int(req.get("part", 0)), str(req.get("kind", "")),
                            float(req.get("created", time.time())), size, digest, ACTIVE, time.time())
        self.srv.archive.add(obj)
        self.srv.log(f"node {node.node!r}: stored {name} ({size} bytes)")
        self.conn.reply(stored=name, size=size, digest=digest)

    async def _get(self, node: str, name: str, offset: int) -> None:
        obj = self.srv.archive.object(node, name)
        if obj is None:
            return self.refuse(f"no archive object {name!r} for node {node!r}", "list the node's objects with 'vault volumes NAME (t'")
        if obj.status != ACTIVE:
            return self.refuse(f"archive object {name!r} is marked for deletion", "reconcile the vault on the source (fix=yes reactivates matching objects)")
        try:
            fh = open(self.srv.archive.path(node, name), "rb")  # noqa: SIM115
        except FileNotFoundError:
            return self.refuse(f"archive object {name!r} has lost its data file", "reconcile and audit from the source")
        with fh:
            self.conn.reply(**obj.doc())
            await self.flush()
            fh.seek(offset)
            while chunk := fh.read(READ_CHUNK):
                self.conn.send_data(chunk)
                await self.flush()
        self.conn.send_end(obj.size, obj.digest)

    def discard_partial(self) -> None:
        if self.partial is not None:
            path, fh, *_ = self.partial
            self.partial = None
            with contextlib.suppress(Exception):
                fh.close()  # type: ignore[attr-defined]
            path.unlink(missing_ok=True)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m d3hb.servers.vault CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s d3hb vault: %(message)s")
    cfg = Config.from_json(args[0])
    rdir = run_dir(cfg.system_dir)
    rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_fd = os.open(rdir / "server.pid", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("the vault server of this system is already running", file=sys.stderr)
        return 1
    os.ftruncate(pid_fd, 0)
    os.write(pid_fd, f"{os.getpid()}\n".encode())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    srv: VaultServer | None = None
    try:
        srv = VaultServer(cfg)
        asyncio.run(srv.run())
        srv.status("Stopped")
        return 0
    except Exception as exc:  # noqa: BLE001 - whatever it is goes to the status for the supervisor to print
        text = str(exc) if isinstance(exc, D3hbError) else f"{type(exc).__name__}: {exc}"
        tmp = rdir / "server.status"
        tmp.write_text(json.dumps({"state": "Failed", "pid": os.getpid(), "host": cfg.host, "port": cfg.port, "error": text, "at": time.time()}))
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            (rdir / "server.pid").unlink()
        os.close(pid_fd)


if __name__ == "__main__":
    sys.exit(main())
