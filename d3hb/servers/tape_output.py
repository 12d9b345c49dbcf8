"""The tape-socket output server: a named pipe in, the network out.

It calls the input server (``callrep`` attempts, ``callwait`` seconds apart),
then serves tapes one after another: it waits for a writer on its pipe (a
save, a t-dump), sends what it reads as Data frames as far as the input
server's credit allows, and sends EndOfTape when the writer closes the
pipe.  ``shutdown`` (SIGUSR1) waits for the tape in progress to end, then
stops both servers; ``stop`` (SIGTERM) stops this one at once.  A lost
connection closes the pipe, so the writer fails instead of saving into the
void, and the server calls again.

Run as ``python -m d3hb.servers.tape_output CONFIG_JSON``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from dataclasses import dataclass

from d3hb.errors import RemoteProtocolError, TapeError
from d3hb.protocol import tapesock as ts
from d3hb.servers.tsbase import CHUNK, Config, PipeReader, Runtime, aligned_frame, drain, install_signals, make_pipe, run_process

HANDSHAKE_TIMEOUT = 30.0
LINGER = 3.0  # seconds a stopped output server waits for the input server to read its last words


class Lost(Exception):
    """The connection failed; the message says how."""


class _Conn:
    """One connection: the link state machine, the socket, and a task reading events.

    The socket is used directly (no asyncio transport): a chunk read from the
    pipe goes out from the buffer it was read into, header in front, in one
    send and without a copy, and the buffer is used again for the next chunk.
    """

    def __init__(self, cfg: Config, rt: Runtime, sock: socket.socket) -> None:
        self.cfg, self.rt = cfg, rt
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._inflight: asyncio.Future | None = None
        self.link = ts.TapeLink(ts.OUTPUT, cfg.name)
        self.credit = asyncio.Event()
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.failure: str | None = None
        self.shutdown_acked = False
        self.offset: float | None = None
        self._sent_at = 0.0

    async def send(self, event: ts.Event) -> None:
        await self._sendall(b"".join(self.link.send_parts(event)))

    async def send_chunk(self, frame: memoryview, n: int) -> None:
        """Send the chunk at ``frame[FRAME_ROOM:FRAME_ROOM + n]`` as Data."""
        await self._sendall(self.link.send_in_place(frame, n))

    async def _sendall(self, data: bytes | memoryview) -> None:
        if self._inflight is None or self._inflight.done():
            # The socket's buffer usually takes a whole frame at once: sent
            # here, with no task and no trip through the loop (at hundreds of
            # MB/s that overhead per chunk shows); only the rest is awaited.
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (ConnectionError, OSError) as exc:
                self.link.send_failed()  # raises
                raise Lost(str(exc)) from None  # pragma: no cover
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        # A frame goes out whole even if the tape loop is cancelled meanwhile
        # (stop): half a frame followed by the Error would garble the link.
        self._inflight = asyncio.ensure_future(self.loop.sock_sendall(self.sock, data))
        try:
            await asyncio.shield(self._inflight)
        except (ConnectionError, OSError) as exc:
            self.link.send_failed()  # raises
            raise Lost(str(exc)) from None  # pragma: no cover

    async def settle(self) -> None:
        """Wait for the frame being sent, if any, to be out."""
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait({self._inflight})

    async def hello(self) -> None:
        self._sent_at = time.time()
        await self.send(ts.Hello(self.cfg.name, sent_at=self._sent_at if self.cfg.clock_sync else None))

    async def pump(self) -> None:
        """Read the socket and act on every event until the connection ends."""
        try:
            while True:
                event = self.link.next_event()
                if event is ts.NEED_DATA:
                    data = await self.loop.sock_recv(self.sock, CHUNK)
                    self.link.receive_data(data)
                    continue
                if isinstance(event, ts.ConnectionClosed):
                    return
                await self._on(event)
        except RemoteProtocolError as exc:
            self.failure = exc.what
        except (ConnectionError, OSError) as exc:
            self.failure = f"connection to the input server failed ({exc})"
        finally:
            self.closed.set()
            self.credit.set()
            self.connected.set()

    async def _on(self, event: ts.Event) -> None:
        if isinstance(event, ts.HelloReply):
            if event.sent_at is not None and self.cfg.clock_sync:
                self.offset = ts.clock_offset(self._sent_at, event.sent_at, time.time())
            self.connected.set()
        elif isinstance(event, ts.Credit):
            self.credit.set()
        elif isinstance(event, ts.EndOfTapeAck):
            self.rt.log(f"tape {self.link.tapes.acked} written to the input server's pipe", trace=True)
        elif isinstance(event, ts.Check):
            await self.send(ts.CheckReply(event.token, self.rt.state, f"{self.rt.figures['bytes']} bytes sent"))
        elif isinstance(event, ts.ShutdownAck):
            self.shutdown_acked = True
        elif isinstance(event, ts.Error):
            raise RemoteProtocolError(f"the input server reports: {event.message}", "see its log")
        # CheckReply, Bye: nothing to do; Bye ends the loop through ConnectionClosed.

    async def wait_credit(self) -> None:
        while self.link.credit <= 0:
            if self.closed.is_set():
                raise Lost(self.failure or "the input server closed the connection")
            self.credit.clear()
            await self.credit.wait()
        if self.closed.is_set():
            raise Lost(self.failure or "the input server closed the connection")

    def close(self) -> None:
        for task in (getattr(self, "pump_task", None), self._inflight):
            if task is not None:
                task.cancel()  # before the socket goes: the loop must not watch a closed descriptor
        with contextlib.suppress(Exception):
            self.sock.close()


@dataclass
class _Flags:
    stop: asyncio.Event
    shutdown: asyncio.Event


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to host:port (every address the name has, in turn)."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for family, kind, proto, _, addr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # control frames must not wait for Nagle
        return sock
    raise last or OSError(f"no address for {host}")


async def _call(cfg: Config, rt: Runtime, flags: _Flags) -> _Conn | None:
    """Call the input server until it answers, or give up after ``callrep`` attempts."""
    attempt = 0
    while not flags.stop.is_set():
        attempt += 1
        rt.set_state("Wait response to call", peer=f"{cfg.host}:{cfg.port}")
        conn: _Conn | None = None
        try:
            conn = _Conn(cfg, rt, await asyncio.wait_for(_connect(cfg.host, cfg.port), HANDSHAKE_TIMEOUT))
            await conn.hello()
            pump = asyncio.create_task(conn.pump())
            conn.pump_task = pump  # type: ignore[attr-defined]
            await asyncio.wait_for(conn.connected.wait(), HANDSHAKE_TIMEOUT)
            if conn.closed.is_set():
                raise Lost(conn.failure or "the input server closed the connection during the handshake")
            detail = "" if conn.offset is None else f"; clock offset {conn.offset:+.3f} s"
            rt.log(f"connected to input server {cfg.host}:{cfg.port}{detail}")
            return conn
        except (OSError, asyncio.TimeoutError, Lost, RemoteProtocolError) as exc:
            if conn is not None:
                conn.close()
            why = str(exc) or type(exc).__name__
            rt.log(f"call {attempt} to {cfg.host}:{cfg.port} failed: {why}", trace=attempt > 1)
            if cfg.callrep and attempt >= cfg.callrep:
                rt.set_state("Stopped", last_error=f"input server {cfg.host}:{cfg.port} did not answer after {attempt} calls: {why}")
                rt.log(f"FAILED: input server {cfg.host}:{cfg.port} did not answer after {attempt} calls")
                return None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(flags.stop.wait(), cfg.callwait)
    return None


async def _first(*aws: asyncio.Future | asyncio.Task) -> None:
    await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)


async def _session(cfg: Config, rt: Runtime, conn: _Conn, flags: _Flags) -> str:
    """Serve tapes on one connection: returns "shutdown", "stopped" or "lost"."""
    stop_w = asyncio.create_task(flags.stop.wait())
    shut_w = asyncio.create_task(flags.shutdown.wait())
    lost_w = asyncio.create_task(conn.closed.wait())
    try:
        while True:
            rt.set_state("Idle")
            pipe = PipeReader(cfg.pipe)
            try:
                writer_w = asyncio.create_task(pipe.wait_writer())
                await _first(writer_w, stop_w, shut_w, lost_w)
                if not writer_w.done():
                    writer_w.cancel()
                    if lost_w.done():
                        raise Lost(conn.failure or "the input server closed the connection")
                    if stop_w.done():
                        await conn.send(ts.Bye())
                        return "stopped"
                    return await _shutdown(cfg, rt, conn)
                await _one_tape(cfg, rt, conn, pipe, flags)
            finally:
                pipe.close()
            if flags.stop.is_set():
                await conn.send(ts.Bye())
                return "stopped"
    except (Lost, RemoteProtocolError, TapeError) as exc:
        why = getattr(exc, "what", None) or str(exc)
        if flags.stop.is_set():
            rt.log(f"output server stopped: {why}")
            return "stopped"
        where = f" in the middle of tape {conn.link.tapes.sent + 1} after {conn.link.tapes.current} bytes" if conn.link.tapes.current else ""
        rt.set_state("Connection lost", last_error=why)
        rt.log(f"connection to input server {cfg.host}:{cfg.port} lost{where}: {why}")
        return "lost"
    finally:
        for t in (stop_w, shut_w, lost_w):
            t.cancel()


async def _one_tape(cfg: Config, rt: Runtime, conn: _Conn, pipe: PipeReader, flags: _Flags) -> None:
    number = conn.link.tapes.sent + 1
    rt.log(f"tape {number}: a writer opened pipe {cfg.pipe}", trace=True)
    started = time.monotonic()
    conn.in_tape = True  # type: ignore[attr-defined]
    frame = aligned_frame(ts.FRAME_ROOM, ts.MAX_CHUNK)  # one buffer for every chunk of the tape
    try:
        while True:
            rt.set_state("Reading pipe")
            n = await pipe.readinto(frame[ts.FRAME_ROOM :])
            if not n:
                break
            if conn.link.credit <= 0:
                rt.set_state("Waiting for ACK")
                await conn.wait_credit()
            rt.set_state("Writing to network")
            await conn.send_chunk(frame, n)
            rt.count(n)
            if rt.tracing:
                rt.log(f"tape {number}: block of {n} bytes sent", trace=True)
    except asyncio.CancelledError:
        if not flags.stop.is_set():
            raise
        # stop in the middle of a tape: tell the input server, so its reader fails too.
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.settle(), 5)  # not sent whole in time: no Error, the loss is reported anyway
            await asyncio.wait_for(conn.send(ts.Error(f"output server {cfg.name} stopped in the middle of tape {number}")), 5)
            # Hang up only once the input server has read all that and hung up
            # itself: closing with its credits unread would reset the
            # connection and could throw away the Error before it is read.
            conn.sock.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(conn.closed.wait(), LINGER)
        raise Lost(f"stopped in the middle of tape {number}") from None
    finally:
        conn.in_tape = False  # type: ignore[attr-defined]
    await conn.send(ts.EndOfTape())
    size = conn.link.tapes.sizes[-1] if conn.link.tapes.sizes else 0
    secs = max(time.monotonic() - started, 1e-9)
    rt.tape_done()
    rt.log(f"tape {number} sent: {size} bytes in {secs:.1f} s ({size / secs / 1e6:.1f} MB/s)")


async def _shutdown(cfg: Config, rt: Runtime, conn: _Conn) -> str:
    rt.set_state("Shutting down")
    await conn.send(ts.Shutdown())
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(conn.closed.wait(), HANDSHAKE_TIMEOUT)
    rt.log("shutdown: both servers stopped" if conn.shutdown_acked else "shutdown sent; the input server did not confirm")
    return "shutdown"


async def _cancel_tape_on_stop(flags: _Flags, conn: _Conn, session: asyncio.Task) -> None:
    """SIGTERM in the middle of a tape interrupts whatever the tape loop awaits."""
    await flags.stop.wait()
    if getattr(conn, "in_tape", False):
        session.cancel()


async def serve(cfg: Config, rt: Runtime) -> int:
    flags = _Flags(asyncio.Event(), asyncio.Event())
    install_signals(asyncio.get_running_loop(), flags.stop, flags.shutdown)
    make_pipe(cfg.pipe)
    if cfg.clear_pipe:
        n = drain(cfg.pipe)
        if n:
            rt.log(f"{n} bytes left in pipe {cfg.pipe} were discarded (use (c to keep them)")
    rt.log(f"output server started: pipe {cfg.pipe} to {cfg.host}:{cfg.port}")
    while not flags.stop.is_set():
        conn = await _call(cfg, rt, flags)
        if conn is None:
            return 0 if flags.stop.is_set() else 1
        session = asyncio.create_task(_session(cfg, rt, conn, flags))
        watcher = asyncio.create_task(_cancel_tape_on_stop(flags, conn, session))
        try:
            outcome = await session
        finally:
            watcher.cancel()
            conn.close()
        if outcome in ("shutdown", "stopped"):
            break
    rt.log("output server stopped")
    rt.set_state("Stopped")
    return 0


@dataclass(frozen=True)
class CheckResult:
    state: str
    detail: str
    clock_offset: float | None
    round_trip: float


async def check_remote(name: str, host: str, port: int, *, timeout: float = 10.0) -> CheckResult:
    """Call an input server, ask its state, and hang up (tape-socket ``check``)."""
    link = ts.TapeLink(ts.OUTPUT, name)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        t0 = time.time()
        writer.write(link.send(ts.Hello(name, sent_at=t0)))
        offset = None
        while True:
            event = link.next_event()
            if event is ts.NEED_DATA:
                link.receive_data(await asyncio.wait_for(reader.read(CHUNK), timeout))
                continue
            if isinstance(event, ts.HelloReply):
                if event.sent_at is not None:
                    offset = ts.clock_offset(t0, event.sent_at, time.time())
                t1 = time.time()
                writer.write(link.send(ts.Check(1)))
            elif isinstance(event, ts.CheckReply):
                rtt = time.time() - t1
                writer.write(link.send(ts.Bye()))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return CheckResult(event.state, event.detail, offset, rtt)
            elif isinstance(event, ts.Error):
                raise RemoteProtocolError(f"the input server reports: {event.message}", "see its log")
            elif isinstance(event, ts.ConnectionClosed):
                raise RemoteProtocolError("the input server hung up", "see its log")
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run_process(Config.from_json(args[0]), serve)


if __name__ == "__main__":
    sys.exit(main())
