"""A hot backup server's files beside its database, its logs and its incidents.

Every server ``NAME`` of a system keeps, in the system directory:

==================  =========================================================
``NAME.lock``       ``flock``-ed by the live server for its whole lifetime
``NAME.pid``        its pid, written once the lock is held, removed on a clean stop
``NAME.status``     JSON status (state, numbers, lag), replaced atomically
``NAME.ctl``        the control socket (d3hb.servers.control)
``NAME.log``        the status log: the last :data:`RECENT` messages
``NAME.plog``       the permanent log: every message, never trimmed
``NAME.running``    the "was running" mark: written by start, removed by a
                    clean stop, left by a crash, read by ``coldstart``
``NAME.stderr``     what the interpreter itself printed (tracebacks)
==================  =========================================================

The pid file name (no prefix) is what d3hb.ops.running counts as a hot backup
server.  Incidents are raised here, in the servers layer, because the server
processes raise them; :class:`Incidents` sends each one once, not once per
retry, and says once when it is over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

RECENT = 200  # messages the status log keeps (the Status screen shows the newest first)

# D3's server states, as Query Server prints them.
WAIT_CALL_RESPONSE = "Wait response to call"
WAIT_INCOMING = "Wait incoming call"
CONNECTED = "Connected"
READING_NETWORK = "Reading network"
WRITING_NETWORK = "Writing to network"
WAITING_ACK = "Waiting for ACK"
IDLE = "Idle"
READING_QUEUE = "Reading queue"
STOPPED = "Stopped"
STARTING = "Starting"  # before the first real state: the supervisor's "Waiting ... to initialize"
FAILED = "Failed"  # stopped on an error; the status's "error" says which
STATES = (WAIT_CALL_RESPONSE, WAIT_INCOMING, CONNECTED, READING_NETWORK, WRITING_NETWORK,
          WAITING_ACK, IDLE, READING_QUEUE, STOPPED)  # fmt: skip


@dataclass(frozen=True)
class ServerFiles:
    """Where one server's files are."""

    dir: Path
    name: str

    def _p(self, suffix: str) -> Path:
        return Path(self.dir) / f"{self.name}.{suffix}"

    @property
    def pid(self) -> Path:
        return self._p("pid")

    @property
    def lock(self) -> Path:
        return self._p("lock")

    @property
    def status(self) -> Path:
        return self._p("status")

    @property
    def ctl(self) -> Path:
        return self._p("ctl")

    @property
    def log(self) -> Path:
        return self._p("log")

    @property
    def plog(self) -> Path:
        return self._p("plog")

    @property
    def mark(self) -> Path:
        return self._p("running")

    @property
    def stderr(self) -> Path:
        return self._p("stderr")


# -- pid file: a lock held for the process's lifetime -----------------------------


class PidLock:
    """``NAME.lock`` held with flock for the process's lifetime, then ``NAME.pid``.

    kill -9 releases the lock, so liveness never depends on a pid the kernel
    may since have given to another process.  The pid file appears only once
    the lock is held and goes before it is released, so "a pid file nobody
    locks" means exactly "terminated abnormally".
    """

    def __init__(self, files: ServerFiles) -> None:
        self.files = files
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self.fd = fd
        tmp = self.files.pid.with_name(self.files.pid.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.files.pid)
        return True

    def release(self) -> None:
        """A clean stop: the pid file goes (a crash leaves it: 'Terminated abnormally')."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.files.pid.unlink()
        os.close(self.fd)
        self.fd = None


def pid_file_pid(files: ServerFiles) -> int | None:
    try:
        return int(files.pid.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_locked(files: ServerFiles) -> bool:
    """True while a live server holds NAME.lock."""
    try:
        fd = os.open(files.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock too
    return False


# -- status file ----------------------------------------------------------------------


def write_status(files: ServerFiles, doc: dict) -> None:
    tmp = files.status.with_name(files.status.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, files.status)


def read_status(files: ServerFiles) -> dict | None:
    try:
        doc = json.loads(files.status.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# -- logs -------------------------------------------------------------------------------


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _append(path: Path, line: str) -> None:
    # O_APPEND: the supervisor and the server may both write a line at once.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def log_message(files: ServerFiles, text: str, when: float | None = None) -> None:
    """One message into the status log and the permanent log."""
    line = f"{_stamp(time.time() if when is None else when)}  {' '.join(text.splitlines())}\n"
    _append(files.plog, line)
    _append(files.log, line)
    with contextlib.suppress(OSError):
        if files.log.stat().st_size > RECENT * 60:  # cheap test first: messages are rare, lines ~60 bytes
            lines = files.log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            if len(lines) <= 2 * RECENT:
                return
            tmp = files.log.with_name(files.log.name + ".tmp")
            tmp.write_text("".join(lines[-RECENT:]), encoding="utf-8")
            os.replace(tmp, files.log)


def recent_messages(files: ServerFiles, limit: int = 20, *, permanent: bool = False) -> list[str]:
    """The last messages, newest first (the Status screen's order)."""
    path = files.plog if permanent else files.log
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return list(reversed(lines[-limit:])) if limit else list(reversed(lines))


# -- incidents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    key: str  # what kind of trouble: "connection", "refused", "gap", "slave-error", "cap", "test-record"
    text: str


class Incidents:
    """Raise each incident once and its end once ("connection lost" ... "connection restored").

    ``sinks`` get every incident text: the status and permanent logs, the
    errors file, the notify list.  A sink that fails is logged and skipped —
    reporting trouble must never make more of it.
    """

    def __init__(self, server: str, sinks: Iterable[Callable[[str], None]], clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.sinks = list(sinks)
        self.clock = clock
        self.open: dict[str, Incident] = {}
        self.raised = 0

    def raise_(self, key: str, text: str) -> bool:
        """Report ``text`` unless an incident of that ``key`` is already open; True if sent."""
        if key in self.open:
            return False
        self.open[key] = Incident(key, text)
        self.raised += 1
        self._send(f"INCIDENT server '{self.server}': {text}")
        return True

    def clear(self, key: str, text: str) -> bool:
        """The trouble is over; say so once, and only if it was reported."""
        if self.open.pop(key, None) is None:
            return False
        self._send(f"server '{self.server}': {text}")
        return True

    def _send(self, text: str) -> None:
        for sink in self.sinks:
            try:
                sink(text)
            except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the server
                logger.warning("incident not delivered by %r: %s", sink, exc)


# -- what a server process is told, and what it keeps while it runs -------------------------


@dataclass(frozen=True)
class Config:
    """A server's definition as the supervisor hands it to the process (JSON).

    The same fields as d3hb.ops.serverdefs.ServerDef: the servers layer
    cannot import ops, so the definition crosses as data.
    """

    home: str
    system: str
    name: str
    type: str  # "M" or "S"
    host: str = ""
    port: int = 2000
    target: str = ""
    protocol: str = "inet"
    log_slave: bool = False
    check: float = 10.0
    txlog: float = 1.0
    notify: tuple[str, ...] = ()
    apply: bool = True
    auto_create: bool = False
    code: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    timeout: float = 30.0
    cap: int = 1_000_000
    bind: str = "127.0.0.1"
    window: int = 8
    batch: int = 500
    verify: float = 0.0  # master: seconds between periodic verify markers (0: none)

    @property
    def dir(self) -> Path:
        return Path(self.home) / self.system

    @property
    def files(self) -> ServerFiles:
        return ServerFiles(self.dir, self.name)

    @property
    def is_master(self) -> bool:
        return self.type == "M"

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["notify"] = list(self.notify)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Config:
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["notify"] = tuple(d.get("notify", ()))
        return cls(**d)


STATUS_EVERY = 0.25  # s between two status-file writes while numbers move


class Runtime:
    """The live status, logs and incidents of one server process."""

    def __init__(self, cfg: Config, *, error_log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from d3hb.store import messages

        self.cfg = cfg
        self.files = cfg.files
        self.clock = clock
        self.state = STARTING
        self.started = clock()
        self._written = 0.0
        self.figures: dict[str, object] = {
            "total_recvd": 0, "total_sent": 0, "cur_trans": 0, "acked_trans": 0, "applied": 0,
            "queue_last": 0, "lag_trans": 0, "lag_seconds": 0.0, "peer": "", "connected_since": 0.0,
            "error": "", "resync_required": "", "batches": 0, "connections": 0,
        }  # fmt: skip

        def notify(text: str) -> None:
            for target in cfg.notify:
                messages.send(cfg.dir, target, text, sender=f"hot-backup {cfg.name}")

        sinks: list[Callable[[str], None]] = [self.log]
        if error_log is not None:
            sinks.append(lambda text: error_log(text))
        sinks.append(notify)
        self.incidents = Incidents(cfg.name, sinks, clock)

    def log(self, text: str) -> None:
        logger.info("%s: %s", self.cfg.name, text)
        with contextlib.suppress(OSError):
            log_message(self.files, text)

    def set_state(self, state: str, **figures: object) -> None:
        changed = state != self.state
        self.state = state
        self.figures.update(figures)
        self.write_status(force=changed or "error" in figures)

    def update(self, **figures: object) -> None:
        self.figures.update(figures)
        self.write_status()

    def doc(self) -> dict:
        return {
            "name": self.cfg.name, "type": "Master" if self.cfg.is_master else "Slave", "pid": os.getpid(),
            "state": self.state, "traces": "OFF", "started": self.started, "updated": self.clock(),
            "updates_applied": bool(self.cfg.apply), "port": self.cfg.port, "host": self.cfg.host,
            "incidents": sorted(self.incidents.open), **self.figures,
        }  # fmt: skip

    def write_status(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._written < STATUS_EVERY:
            return
        self._written = now
        write_status(self.files, self.doc())
