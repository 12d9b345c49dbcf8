"""What the tape-socket output and input servers share: configuration, status
file, logging, and non-blocking named-pipe I/O on the asyncio loop.

A server process is told everything in one JSON argument (:class:`Config`),
so it never reads definitions itself.  It keeps ``ts-NAME.pid`` and
``ts-NAME.status`` (JSON, replaced atomically) in its system directory, and
writes its messages to ``ts.log`` / ``ts.log,log`` from a single worker
thread so that a busy database never stalls the data path.

Pipes are opened non-blocking.  On Linux a FIFO's read end opened that way
is not readable until a writer has come (and then gone: end of file), so a
server waits for a tape on the event loop and stays interruptible.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from d3hb.errors import TapeError

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024  # control-sized reads (handshakes, draining)
PIPE_SIZE = 1024 * 1024  # FIFO buffer asked for (F_SETPIPE_SZ): one data chunk per wake-up
NET_READ = 1024 * 1024  # socket reads and the asyncio stream buffer limit
STATUS_EVERY = 0.5  # seconds between two status-file writes while data flows
DATA_STATES = frozenset({"Reading pipe", "Waiting for ACK", "Writing to network", "Writing pipe", "Reading network"})


@dataclass(frozen=True)
class Config:
    home: str
    system: str
    name: str
    role: str  # "output" or "input"
    pipe: str
    host: str
    port: int
    callrep: int = 10
    callwait: float = 3.0
    trace: bool = False
    clear_pipe: bool = True  # D3's (c option turns this off
    clock_sync: bool = True  # D3's (s option turns this off
    verbose: bool = False  # D3's (v option: every event in the log

    @property
    def dir(self) -> Path:
        return Path(self.home) / self.system

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls(**json.loads(text))


def pid_path(system_dir: Path, name: str) -> Path:
    return Path(system_dir) / f"ts-{name}.pid"


def status_path(system_dir: Path, name: str) -> Path:
    return Path(system_dir) / f"ts-{name}.status"


def trace_path(system_dir: Path, name: str) -> Path:
    return Path(system_dir) / f"ts-{name}.trace"


def read_status(system_dir: Path, name: str) -> dict | None:
    try:
        return json.loads(status_path(system_dir, name).read_text())
    except (FileNotFoundError, ValueError):
        return None


class Runtime:
    """Status, logs and figures of one running server."""

    def __init__(self, cfg: Config, *, clock=time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = "Starting"
        self.started = clock()
        self.figures: dict[str, object] = {"tapes": 0, "bytes": 0, "tape_bytes": 0, "tape": 0, "peer": "", "label": "", "last_error": ""}
        self._tape_started = 0.0
        self._written = 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tslog")
        self._system = None
        self._tracing = (False, -STATUS_EVERY)  # (answer, when): traceon is seen within STATUS_EVERY

    # -- status ---------------------------------------------------------------
    def set_state(self, state: str, **figures: object) -> None:
        # Flipping between the data states once a chunk is not news: the
        # status file is then refreshed only every STATUS_EVERY seconds.
        changed = state != self.state and not (state in DATA_STATES and self.state in DATA_STATES)
        self.state = state
        self.figures.update(figures)
        self.write_status(force=changed or bool(figures.get("last_error")))

    def count(self, nbytes: int) -> None:
        """Data passed through: per-tape and total figures, status at most every STATUS_EVERY."""
        if not self.figures["tape_bytes"]:
            self._tape_started = self.clock()
        self.figures["tape_bytes"] = int(self.figures["tape_bytes"]) + nbytes  # type: ignore[arg-type]
        self.figures["bytes"] = int(self.figures["bytes"]) + nbytes  # type: ignore[arg-type]
        self.write_status()

    def tape_done(self) -> None:
        self.figures["tapes"] = int(self.figures["tapes"]) + 1  # type: ignore[arg-type]
        self.figures["last_tape_bytes"] = self.figures["tape_bytes"]
        self.figures["tape_bytes"] = 0
        self.write_status(force=True)

    def write_status(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._written < STATUS_EVERY:
            return
        self._written = now
        elapsed = now - self._tape_started if self.figures["tape_bytes"] else 0.0
        doc = {
            "name": self.cfg.name, "role": self.cfg.role, "pid": os.getpid(), "state": self.state,
            "host": self.cfg.host, "port": self.cfg.port, "pipe": self.cfg.pipe,
            "started": self.started, "updated": now, "tape_elapsed": elapsed,
            "rate": (int(self.figures["tape_bytes"]) / elapsed) if elapsed > 0 else 0.0,  # type: ignore[arg-type]
            **self.figures,
        }  # fmt: skip
        path = status_path(self.cfg.dir, self.cfg.name)
        tmp = path.with_suffix(".status.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)

    # -- logs -------------------------------------------------------------------
    @property
    def tracing(self) -> bool:
        if self.cfg.trace or self.cfg.verbose:
            return True
        # The data path asks once a chunk; a stat() each time is measurable, so
        # the answer (traceon/traceoff make or remove a file) is kept briefly.
        answer, when = self._tracing
        now = self.clock()
        if now - when >= STATUS_EVERY:
            answer = trace_path(self.cfg.dir, self.cfg.name).exists()
            self._tracing = (answer, now)
        return answer

    def log(self, text: str, *, trace: bool = False) -> None:
        """Queue a message for ts.log; ``trace`` messages only when tracing is on."""
        if trace and not self.tracing:
            return
        logger.info("%s: %s", self.cfg.name, text)
        when = self.clock()
        self._pool.submit(self._write_log, text, when)

    def _write_log(self, text: str, when: float) -> None:
        from d3hb.servers import tslog
        from d3hb.store.system import System

        try:
            if self._system is None:
                self._system = System.open(self.cfg.dir)
            tslog.log(self._system, self.cfg.name, text, when=when)
        except Exception as exc:  # a log that cannot be written must not stop the data
            print(f"d3hb tape-socket {self.cfg.name}: {text} (not logged: {exc})", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._system is not None:
            self._system.close()


# -- named pipes on the event loop -------------------------------------------------


async def _wait_fd(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Ask for a bigger FIFO buffer; return the size obtained (the default when refused).

    With Linux's 64 KiB default every 64 KiB costs a wake-up on both sides of
    the pipe; at 1 MiB the saver and the server run in long strides.  An
    unprivileged user is capped by /proc/sys/fs/pipe-max-size, so a refusal
    falls back to smaller sizes and then to the default, never to a failure.
    """
    import fcntl

    for want in (size, size // 4):
        try:
            return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, want)
        except OSError:
            continue
    with contextlib.suppress(OSError):
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    return 0


def aligned_frame(room: int, size: int) -> memoryview:
    """A reusable buffer of ``room + size`` bytes whose last ``size`` start on a page boundary.

    The kernel copies a pipe read or a socket receive into user memory with
    ``rep movsb``, which runs about three times slower (measured here: 0.72 s
    against 0.24 s of CPU a GiB) when the destination is not 64-byte aligned;
    a bytearray's data, 12 bytes of header further on, never is.  An anonymous
    mmap is page-aligned, so the chunk goes right after a page of which only
    the last ``room`` bytes (the frame header) are used.
    """
    import mmap

    page = mmap.PAGESIZE
    lead = -(-room // page) * page
    area = mmap.mmap(-1, lead + size)
    return memoryview(area)[lead - room :]


class PipeReader:
    """The read end of a FIFO: wait for a writer, read until it closes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        grow_pipe(self.fd)

    async def read(self, n: int = CHUNK) -> bytes:
        """Up to n bytes; b"" once the writer has closed the pipe."""
        while True:
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                await _wait_fd(self.fd, write=False)

    async def readinto(self, buf: memoryview) -> int:
        """Read into ``buf`` (no new bytes object per chunk); 0 once the writer has closed the pipe."""
        while True:
            try:
                return os.readv(self.fd, [buf])
            except BlockingIOError:
                await _wait_fd(self.fd, write=False)

    async def wait_writer(self) -> None:
        """Return when a writer has opened the pipe (readable: data or end of file)."""
        await _wait_fd(self.fd, write=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PipeWriter:
    """The write end of a FIFO, opened once a reader is there."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    async def open(cls, path: str, poll: float = 0.05) -> PipeWriter:
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                grow_pipe(fd)
                return cls(fd, path)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody reads the pipe yet
                    raise TapeError(f"cannot open pipe {path} ({exc.strerror})", "check its path, mode and owner") from None
            await asyncio.sleep(poll)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await _wait_fd(self.fd, write=True)
            except BrokenPipeError:
                raise TapeError(f"the reader of pipe {self.path} went away", "restart the restore or load that reads the pipe") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def drain(path: str) -> int:
    """Empty a pipe of what a stopped transfer left in it; return the bytes discarded."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return 0
    total = 0
    try:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            total += len(chunk)
    finally:
        os.close(fd)
    return total


def make_pipe(path: str) -> None:
    try:
        os.mkfifo(path, 0o600)
        os.chmod(path, 0o600)
    except FileExistsError:
        pass


def install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, shutdown: asyncio.Event | None = None) -> None:
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a pipe whose reader left: EPIPE, not death
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if shutdown is not None:
        loop.add_signal_handler(signal.SIGUSR1, shutdown.set)


def run_process(cfg: Config, serve) -> int:
    """The body of a server process: pid file, status, logs, and ``serve`` on a loop."""
    logging.basicConfig(level=logging.INFO if cfg.verbose else logging.WARNING, format=f"d3hb ts {cfg.name}: %(message)s")
    pid_file = pid_path(cfg.dir, cfg.name)
    pid_file.write_text(f"{os.getpid()}\n")
    rt = Runtime(cfg)
    code = 1
    try:
        code = asyncio.run(serve(cfg, rt))
    except Exception as exc:  # the server's last word goes to its log, not a traceback
        rt.log(f"FAILED: server {cfg.name!r} encountered an error and stopped: {exc}")
        rt.set_state("Stopped", last_error=str(exc))
    finally:
        if rt.state != "Stopped":
            rt.set_state("Stopped")
        rt.close()
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    return code
