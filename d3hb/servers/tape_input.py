"""The tape-socket input server: the network in, a named pipe out.

It listens on its port.  An output server calls and sends tapes; each tape
is written into the pipe, where a restore or a t-load reads it, and the
pipe is closed at the in-band EndOfTape so the reader sees the end of the
tape.  Credit is granted one chunk per chunk written to the pipe, so a slow
reader slows the sender and at most :data:`WINDOW` chunks wait in memory.
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

from d3hb.errors import RemoteProtocolError, TapeError
from d3hb.protocol import tapesock as ts
from d3hb.servers.tsbase import CHUNK, NET_READ, Config, PipeWriter, Runtime, drain, install_signals, make_pipe, run_process

WINDOW = 8  # chunks of credit outstanding: at most 8 MiB in flight per connection
HELLO_TIMEOUT = 30.0


class _Session:
    def __init__(self, cfg: Config, rt: Runtime, pipe_lock: asyncio.Lock, stop: asyncio.Event,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cfg, self.rt, self.pipe_lock, self.stop = cfg, rt, pipe_lock, stop
        self.reader, self.writer = reader, writer
        self.link = ts.TapeLink(ts.INPUT, cfg.name)
        self.pipe: PipeWriter | None = None
        self.peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        self.started = 0.0

    async def send(self, event: ts.Event) -> None:
        self.writer.write(self.link.send(event))
        await self.writer.drain()

    async def run(self) -> None:
        try:
            while True:
                event = self.link.next_event()
                if event is ts.NEED_DATA:
                    data = await (self.reader.read(NET_READ) if self.link.state is not ts.State.START
                                  else asyncio.wait_for(self.reader.read(CHUNK), HELLO_TIMEOUT))
                    self.link.receive_data(data)
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
            with contextlib.suppress(Exception):
                self.writer.close()
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
            self.rt.set_state("Reading network")
            await self.send(ts.Credit(1))
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

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        sessions.add(task)  # type: ignore[arg-type]
        try:
            await _Session(cfg, rt, pipe_lock, stop, reader, writer).run()
        except asyncio.CancelledError:
            pass  # stopping: a cancelled session is the expected end, not an error to report
        finally:
            sessions.discard(task)  # type: ignore[arg-type]

    try:
        server = await asyncio.start_server(handle, cfg.host or None, cfg.port, reuse_address=True, limit=NET_READ)
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
