"""The tape-socket input server: the network in, a named pipe out.

It listens on its port.  An output server calls and sends tapes; each tape
is written into the pipe, where a restore or a t-load reads it, and the
pipe is closed at the in-band EndOfTape so the reader sees the end of the
tape.  Credit is granted for the chunks written to the pipe (in batches of
:data:`CREDIT_BATCH`), so a slow reader slows the sender and at most :data:`WINDOW` chunks wait in memory.
A connection lost in the middle of a tape closes the pipe early: the reader
finds no trailer and fails without keeping anything.  Shutdown from the
output server stops this server too.

Run as ``python -m d3hb.servers.tape_input CONFIG_JSON``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from d3hb.errors import RemoteProtocolError, TapeError
from d3hb.protocol import tapesock as ts
from d3hb.servers.tsbase import CHUNK, NET_READ, Config, PipeWriter, Runtime, drain, install_signals, make_pipe, run_process

WINDOW = 8  # chunks of credit outstanding: at most 8 MiB in flight per connection
CREDIT_BATCH = 4  # chunks written to the pipe before their credit goes back (at most WINDOW)
HELLO_TIMEOUT = 30.0
AHEAD = 4 * NET_READ  # bytes received and not yet decoded before reading pauses


class _Wire(asyncio.BufferedProtocol):
    """The socket side of one connection: the kernel copies into the buffer the
    link lends (a Data chunk's own, while one arrives), so the bytes of a tape
    are not copied in this process between the socket and the pipe.

    Reading pauses once :data:`AHEAD` bytes wait undecoded, so a peer that
    ignores its credit cannot fill this server's memory.
    """

    def __init__(self, link: ts.TapeLink, started: Callable[[_Wire], None]) -> None:
        self.link = link
        self._started = started
        self.buf = memoryview(bytearray(CHUNK))  # only after the end, when nothing more is decoded
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.Event()  # bytes or the end arrived since the session last asked
        self.lost: Exception | None = None
        self._eof = False
        self._ahead = 0
        self._paused = False
        self._can_write: asyncio.Future | None = None

    # -- asyncio's side --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._started(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A Data chunk arriving is received straight into its own buffer.
        return self.buf if self._eof else self.link.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._eof:
            return
        self.link.buffer_updated(nbytes)
        self._ahead += nbytes
        if self._ahead >= AHEAD and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self.ready.set()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self._end()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            self.link.receive_data(b"")
            self.ready.set()

    # -- the session's side --
    @property
    def peer(self) -> str:
        name = self.transport.get_extra_info("peername") if self.transport else None
        return "%s:%s" % tuple(name[:2]) if name else "?"

    async def more(self, timeout: float | None = None) -> None:
        """Wait for bytes (or the end) beyond what the link has already decoded."""
        self._ahead = 0
        if self._paused and self.transport is not None and not self._eof:
            self._paused = False
            self.transport.resume_reading()
        if not self.ready.is_set():
            await asyncio.wait_for(self.ready.wait(), timeout)
        self.ready.clear()

    async def write(self, parts: tuple[bytes, ...]) -> None:
        if self.transport is None or self.transport.is_closing():
            # The peer has gone: what it sent before going (an Error, say) is
            # still to be read from the link, which then reports the end.
            return
        for part in parts:
            self.transport.write(part)
        if self._can_write is not None:
            await self._can_write
            self._can_write = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Session:
    def __init__(self, cfg: Config, rt: Runtime, pipe_lock: asyncio.Lock, stop: asyncio.Event, wire: _Wire) -> None:
        self.cfg, self.rt, self.pipe_lock, self.stop = cfg, rt, pipe_lock, stop
        self.wire = wire
        self.link = wire.link
        self.pipe: PipeWriter | None = None
        self.peer = wire.peer
        self.started = 0.0
        self.owed = 0  # chunks written to the pipe whose credit is not yet granted

    async def send(self, event: ts.Event) -> None:
        await self.wire.write(self.link.send_parts(event))

    async def run(self) -> None:
        try:
            while True:
                event = self.link.next_event()
                if event is ts.NEED_DATA:
                    await self.wire.more(HELLO_TIMEOUT if self.link.state is ts.State.START else None)
                    continue
                if isinstance(event, ts.ConnectionClosed):
                    return
                if await self._on(event):
                    return
        except (RemoteProtocolError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            why = getattr(exc, "what", None) or str(exc) or type(exc).__name__
            where = f" in the middle of tape {self.link.tapes.received + 1} after {self.link.tapes.current} bytes" if self.link.tapes.current or self.pipe else ""
            self.rt.set_state("Connection lost", last_error=why)
            self.rt.log(f"connection from output server {self.peer} lost{where}: {why}")
        except TapeError as exc:
            # The pipe's reader went away: the sending side must fail too.
            self.rt.set_state("Pipe error", last_error=exc.what)
            self.rt.log(f"tape {self.link.tapes.received + 1} failed: {exc.what}")
            with contextlib.suppress(Exception):
                await self.send(ts.Error(exc.what))
        finally:
            self._close_pipe()
            self.wire.close()
            if not self.stop.is_set():
                self.rt.set_state("Wait incoming call")

    async def _on(self, event: ts.Event) -> bool:
        """Handle one event; True ends the connection."""
        if isinstance(event, ts.Hello):
            reply_at = time.time() if self.cfg.clock_sync else None
            await self.send(ts.HelloReply(self.cfg.name, sent_at=reply_at if event.sent_at is not None else None))
            await self.send(ts.Credit(WINDOW))
            self.rt.set_state("Connected", peer=self.peer)
            self.rt.log(f"output server {self.peer} connected", trace=True)
        elif isinstance(event, ts.Data):
            if self.pipe is None:
                await self._open_pipe()
            self.rt.set_state("Writing pipe")
            await self.pipe.write(event.data)  # type: ignore[union-attr]
            self.rt.count(len(event.data))
            self.link.release(event.data)  # in the pipe now: its buffer takes a later chunk
            self.rt.set_state("Reading network")
            self.owed += 1
            if self.owed >= CREDIT_BATCH:
                # Granted in batches: each message also wakes the sender.  The
                # sender is never starved, it keeps WINDOW - CREDIT_BATCH + 1 at least.
                await self.send(ts.Credit(self.owed))
                self.owed = 0
        elif isinstance(event, ts.EndOfTape):
            if self.pipe is None:
                await self._open_pipe()  # an empty tape still reaches its reader as one
            size = self.link.tapes.sizes[-1] if self.link.tapes.sizes else 0
            self._close_pipe()
            await self.send(ts.EndOfTapeAck())
            secs = max(time.monotonic() - self.started, 1e-9)
            self.rt.tape_done()
            self.rt.log(f"tape {self.link.tapes.received} received: {size} bytes in {secs:.1f} s ({size / secs / 1e6:.1f} MB/s)")
            self.rt.set_state("Connected")
        elif isinstance(event, ts.Check):
            await self.send(ts.CheckReply(event.token, self.rt.state, f"{self.rt.figures['tapes']} tapes, {self.rt.figures['bytes']} bytes received"))
        elif isinstance(event, ts.Shutdown):
            self._close_pipe()
            await self.send(ts.ShutdownAck())
            self.rt.log(f"shutdown requested by output server {self.peer}")
            self.stop.set()
            return True
        elif isinstance(event, ts.Error):
            where = f" in the middle of tape {self.link.tapes.received + 1}" if self.pipe is not None else ""
            self.rt.set_state("Connection lost", last_error=event.message)
            self.rt.log(f"output server {self.peer} reports{where}: {event.message}")
            return True
        return False

    async def _open_pipe(self) -> None:
        self.rt.set_state("Waiting for pipe reader")
        await self.pipe_lock.acquire()
        try:
            self.pipe = await PipeWriter.open(self.cfg.pipe)
        except BaseException:
            self.pipe_lock.release()
            raise
        self.started = time.monotonic()
        self.rt.log(f"tape {self.link.tapes.received + 1}: a reader opened pipe {self.cfg.pipe}", trace=True)

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            self.pipe.close()  # the reader sees end of file: with no trailer, a truncated tape
            self.pipe = None
            self.pipe_lock.release()


async def serve(cfg: Config, rt: Runtime) -> int:
    stop = asyncio.Event()
    install_signals(asyncio.get_running_loop(), stop)
    make_pipe(cfg.pipe)
    if cfg.clear_pipe:
        n = drain(cfg.pipe)
        if n:
            rt.log(f"{n} bytes left in pipe {cfg.pipe} were discarded (use (c to keep them)")
    pipe_lock = asyncio.Lock()
    sessions: set[asyncio.Task] = set()

    async def handle(wire: _Wire) -> None:
        try:
            await _Session(cfg, rt, pipe_lock, stop, wire).run()
        except asyncio.CancelledError:
            pass  # stopping: a cancelled session is the expected end, not an error to report

    def started(wire: _Wire) -> None:
        task = asyncio.ensure_future(handle(wire))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: _Wire(ts.TapeLink(ts.INPUT, cfg.name), started), cfg.host or None, cfg.port, reuse_address=True)
    except OSError as exc:
        msg = f"FAILED: server {cfg.name!r} encountered an error and stopped: cannot listen on port {cfg.port} (BIND error: {exc.strerror})"
        rt.log(msg)
        rt.set_state("Stopped", last_error=msg)
        return 1
    rt.log(f"input server started: port {cfg.port} to pipe {cfg.pipe}")
    rt.set_state("Wait incoming call")
    async with server:
        await stop.wait()
        server.close()
        for task in list(sessions):
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=5)
    rt.log("input server stopped")
    rt.set_state("Stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run_process(Config.from_json(args[0]), serve)


if __name__ == "__main__":
    sys.exit(main())
