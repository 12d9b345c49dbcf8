"""The slave server: listens, proves the code, applies batches, acknowledges.

asyncio I/O around the sans-IO :class:`d3hb.protocol.replication.Connection`.
A batch is applied by the handler (d3hb.servers.handlers) synchronously on
the event loop, in one SQLite transaction that records the last applied
number: a stop signal is handled between batches, never inside one, and a
kill -9 loses at most a batch that was never acknowledged.

Only one master connection works at a time.  A newer call that proves the
code replaces the older one (the master calls again only when it has given
the old one up; a rogue caller would need the code).  Because the handler
skips what the database already holds, an overlap can never apply anything
twice.  A gap, or an update this slave cannot apply, stops the pair: the
slave tells the master (``Bye("error: ...")``) and stops with the reason.

The slave's options (hold, park, helpers: d3hb.servers.options) need two
tasks beside the connections, and can change while it runs: they live in
d3hb.servers.slavework (watch the helpers, apply the hold between batches),
so acknowledgements never wait for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from collections import Counter

from d3hb.errors import D3hbError, RemoteProtocolError, StoreError
from d3hb.protocol import events as ev
from d3hb.protocol.replication import CLOSED, NEED_DATA, SLAVE, Connection
from d3hb.servers import control
from d3hb.servers import status as st
from d3hb.servers.handlers import GapError, Handler
from d3hb.servers.helper import Helpers
from d3hb.servers.options import SlaveOptions
from d3hb.servers.slavework import OptionsWork
from d3hb.store import apply as store_apply
from d3hb.store import park as store_park
from d3hb.store import verify as store_verify
from d3hb.store.system import System
from d3hb.store.txn import Kind

READ_CHUNK = 256 * 1024
FATAL = "error: "  # a Bye reason with this prefix stops the pair


class Fatal(Exception):
    """The pair must stop (gap, update that cannot be applied): the text says why."""


def server_ssl(cfg: st.Config) -> ssl.SSLContext | None:
    if not cfg.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
    if cfg.tls_ca:  # mutual TLS: the master must show a certificate from this CA
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cfg.tls_ca)
    return ctx


def followed(system: System, name: str) -> tuple[str, int]:
    """What the Welcome tells the master: the history this slave follows and the epoch of its last applied
    transaction (its applied row), not this system's own, so the master can judge divergence exactly."""
    row = store_apply.applied_history(system, name)
    return (row[1], row[2]) if row is not None and row[1] else ("", 0)


class SlaveServer(OptionsWork):
    def __init__(self, cfg: st.Config, system: System, rt: st.Runtime, handler: Handler | None = None) -> None:
        self.cfg = cfg
        self.system = system
        self.rt = rt
        self.handler = handler or SlaveOptions(system, cfg.name, relog=cfg.log_slave, auto_create=cfg.auto_create, apply=cfg.apply)
        self.helpers = Helpers(system, cfg.name, stderr=cfg.files.stderr, log=rt.log, incident=rt.incidents.raise_,
                               clear=rt.incidents.clear)
        self.drain_wanted = asyncio.Event()
        self.draining = False  # the hold is being applied (batches keep being acknowledged meanwhile)
        self.stopping = asyncio.Event()
        self.fatal: str | None = None
        self.current: _Session | None = None
        self.started = time.time()
        self.stats: Counter = Counter()  # cleared with each restart, as D3's are

    # -- the control channel asks these --------------------------------------------
    def statistics(self) -> dict[str, ev.StatValue]:
        s = self.current
        out: dict[str, ev.StatValue] = {
            "server": self.cfg.name, "type": "Slave", "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "last_applied": self.handler.last_applied(), "connected": "yes" if s and s.ready else "no",
            "updates_applied": "ON" if self._apply_on() else "OFF",
        }  # fmt: skip
        h = self.handler
        if isinstance(h, SlaveOptions):
            out.update({"held": h.n_held, "parked": store_park.parked_count(self.system, self.cfg.name),
                        "helpers_running": len(self.helpers.running), "helpers_finished": self.helpers.finished,
                        "log_slave_updates": "ON" if h.relog else "OFF", "auto_create": "ON" if h.auto_create else "OFF"})
        out.update({k: int(v) for k, v in self.stats.items()})
        return out

    def _apply_on(self) -> bool:
        return bool(getattr(self.handler, "apply_on", self.cfg.apply))

    def stop(self, reason: str = "stop requested") -> None:
        self.rt.log(f"Stopping: {reason}")
        self.stopping.set()

    # -- running ----------------------------------------------------------------------
    async def run(self) -> None:
        last = self.handler.last_stored()
        tasks: list[asyncio.Task] = []
        if isinstance(self.handler, SlaveOptions):
            control.register("apply", self.set_apply)
            tasks = [asyncio.create_task(self._watch_helpers()), asyncio.create_task(self._drain())]
            self.drain_wanted.set()  # a hold left by the last run is applied now (if apply updates is on)
            self.show_options()
        self.rt.update(applied=last, cur_trans=last, acked_trans=last)
        try:
            server = await asyncio.start_server(self._client, self.cfg.bind, self.cfg.port, ssl=server_ssl(self.cfg),
                                                reuse_address=True, limit=READ_CHUNK)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise D3hbError(f"BIND error: TCP port {self.cfg.port} is already in use on {self.cfg.bind}",
                                f"stop the program using it, or give both servers another port: 'd3hb hot-backup setup {self.cfg.name} port=N'") from None
            raise D3hbError(f"cannot listen on {self.cfg.bind}:{self.cfg.port} ({exc.strerror})", "check the bind= and port= fields") from None
        self.rt.log(f"Listening on {self.cfg.bind}:{self.cfg.port}{' with TLS' if self.cfg.tls_cert else ''}; last applied {last}")
        self.rt.set_state(st.WAIT_INCOMING)
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            self.helpers.stop_all()
            server.close()
            if self.current is not None:
                await self.current.close("the slave server is stopping" if self.fatal is None else FATAL + self.fatal)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        if self.fatal is not None:
            raise Fatal(self.fatal)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping.is_set():
            writer.close()
            return
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except Exception as exc:  # noqa: BLE001 - one bad call must not take the listener down
            self.rt.log(f"Call from {session.peer} ended: {type(exc).__name__}: {exc}")
        finally:
            session.abort()
            if self.current is session:
                self.current = None
                if not self.stopping.is_set():
                    self.rt.set_state(st.WAIT_INCOMING, peer="")

    def limit(self) -> float:
        """How long a master may stay silent: it heartbeats every check period."""
        return max(self.cfg.timeout, 3 * self.cfg.check)


class _Session:
    def __init__(self, server: SlaveServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.srv = server
        self.cfg = server.cfg
        self.rt = server.rt
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.ready = False
        self.following = False  # the master's history recorded in the applied row
        history_id, epoch = followed(server.system, self.cfg.name)
        self.conn = Connection(SLAVE, self.cfg.name, self.cfg.code.encode(), history_id=history_id,
                               epoch=epoch, last_applied=server.handler.last_stored())

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def close(self, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self.ready:
                self.writer.write(self.conn.send(ev.Bye(reason)))
                await asyncio.wait_for(self.writer.drain(), 2)
        self.abort()

    async def _send(self, event: ev.Event) -> None:
        self.writer.write(self.conn.send(event))
        await asyncio.wait_for(self.writer.drain(), self.cfg.timeout)

    async def run(self) -> None:
        try:
            await self._serve()
        except RemoteProtocolError as exc:
            reply = self.conn.error_reply  # the Refuse or Bye the peer is still owed
            if reply is not None:
                with contextlib.suppress(Exception):
                    self.writer.write(self.conn.send(reply))
                    await asyncio.wait_for(self.writer.drain(), 2)
            if "gap in transaction numbers" in str(exc):
                self._fatal("gap", str(exc))
            elif not self.ready and reply is None:  # the caller went away mid-handshake: its side reports why
                self.rt.log(f"Call from {self.peer} ended during the handshake: {exc}")
            elif not self.ready:
                self.rt.incidents.raise_("refused", f"refused a call from {self.peer}: {exc}")
            else:
                self._lost(f"protocol error from the master at {self.peer}: {exc}")
        except (GapError, Fatal) as exc:
            self._fatal("gap", str(exc))
        except StoreError as exc:
            # Locked, full or failing database: the batch was rolled back and not acknowledged, so the
            # master sends it again on its next call; an incident, but not a reason to stop the pair.
            self.rt.incidents.raise_("store", f"cannot store a batch from {self.peer}: {exc}")
        except D3hbError as exc:
            if not self.ready:
                raise
            self._fatal("slave-error", f"cannot apply an update: {exc}")
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as exc:
            if self.ready:
                self._lost(f"connection from the master at {self.peer} lost ({type(exc).__name__}: {exc})")
            else:
                self.rt.log(f"Call from {self.peer} dropped during the handshake ({type(exc).__name__}: {exc})")

    def _verdict(self) -> None:
        """A verify marker was applied: its files' digests against the master's, an incident if they differ."""
        verdict = store_verify.last_verdict(self.srv.system)
        if verdict is None or not verdict.checked:
            return
        self.rt.log(verdict.line())
        if verdict.differs:
            self.rt.incidents.raise_("verify", verdict.line())
        else:
            self.rt.incidents.clear("verify", verdict.line())

    def _lost(self, text: str) -> None:
        if self.srv.current is self or self.srv.current is None:
            self.rt.incidents.raise_("connection", text)
        else:
            self.rt.log(text)

    def _fatal(self, key: str, text: str) -> None:
        self.rt.incidents.raise_(key, text)
        self.srv.fatal = text
        self.srv.stopping.set()

    async def _read(self, limit: float) -> bytes:
        data = await asyncio.wait_for(self.reader.read(READ_CHUNK), limit)
        self.srv.stats["bytes_received"] += len(data)
        self.rt.figures["total_recvd"] = int(self.rt.figures["total_recvd"]) + len(data)  # type: ignore[call-overload]
        return data

    async def _serve(self) -> None:
        conn = self.conn
        deadline = time.monotonic() + self.cfg.timeout  # the whole handshake
        while True:
            left = deadline - time.monotonic() if not self.ready else self.srv.limit()
            if left <= 0:
                raise TimeoutError(f"handshake not finished within {self.cfg.timeout:g} s")
            data = await self._read(left)
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is CLOSED:
                    if self.ready:
                        self._lost(f"the master at {self.peer} closed the connection")
                    return
                if not await self._on_event(event):
                    return

    async def _on_event(self, event: object) -> bool:
        conn, srv = self.conn, self.srv
        if isinstance(event, ev.Hello):
            refusal = self._judge(event)
            if refusal is not None:
                self.writer.write(conn.refuse(*refusal))
                await asyncio.wait_for(self.writer.drain(), 2)
                srv.rt.incidents.raise_("refused", f"refused a call from {self.peer}: {refusal[1]}")
                return False
            await self._send(conn.welcome())
        elif isinstance(event, ev.Proof):  # the master proved the code: now the slave proves it too
            await self._send(conn.accept())
            await self._accepted()
        elif isinstance(event, ev.Refuse):
            srv.rt.incidents.raise_("refused", f"the master at {self.peer} refused the call ({event.reason}): {event.message}")
            return False
        elif not self.following:
            self._follow()  # anything but a Refuse after Accept: the master has accepted this slave's position
        if isinstance(event, ev.Batch):
            await self._batch(event)
        elif isinstance(event, ev.Heartbeat):
            await self._send(ev.Heartbeat(time.time(), srv.handler.last_applied()))  # heartbeats go both ways
        elif isinstance(event, ev.StatsRequest):
            await self._send(ev.StatsReply(srv.statistics()))
        elif isinstance(event, ev.Bye):
            reason = event.reason
            self.rt.log(f"The master at {self.peer} ended the connection: {reason or 'no reason given'}")
            with contextlib.suppress(Exception):
                await self.close("bye")
            return False
        return True

    def _judge(self, hello: ev.Hello) -> tuple[str, str] | None:
        """The server's refusals (the Connection judged the code, name and version)."""
        hist = store_apply.applied_history(self.srv.system, self.cfg.name)
        if hist is not None and hist[1] and hist[1] != hello.history_id:
            return ev.HISTORY_MISMATCH, (f"server {self.cfg.name}: this slave holds updates from another master history "
                                         f"({hist[1][:12]}, not {hello.history_id[:12]}); resync the slave from a save of this master")
        if hist is not None and hist[2] > hello.epoch:
            return ev.HISTORY_MISMATCH, (f"server {self.cfg.name}: the master's epoch {hello.epoch} is older than the {hist[2]} "
                                         f"this slave has seen; the old master may rejoin only as a slave")
        return None

    def _follow(self) -> None:
        """Record the master's history and epoch as the ones this slave follows.

        Not at Accept: the master may still refuse this slave's position then,
        and a refused slave must keep the history it had (its next Welcome
        says it again).
        """
        hello = self.conn.peer_hello
        assert hello is not None
        store_apply.record_applied(self.srv.system, self.cfg.name, self.srv.handler.last_stored(), hello.history_id, hello.epoch)
        self.following = True
        # Only now is the call a success: a refusal right after Accept keeps its incident open.
        self.rt.incidents.clear("refused", f"call from {self.peer} accepted")

    async def _accepted(self) -> None:
        srv = self.srv
        last = srv.handler.last_stored()
        old, srv.current = srv.current, self
        if old is not None:
            self.rt.log(f"A new call from {self.peer} replaces the connection from {old.peer}")
            await old.close("replaced by a newer call")
        self.ready = True
        srv.stats["connections"] += 1
        self.rt.log(f"Connected to the master at {self.peer}; resuming after {last}")
        self.rt.incidents.clear("connection", f"connection restored (master at {self.peer})")
        self.rt.set_state(st.CONNECTED, peer=self.peer, connected_since=time.time(), connections=srv.stats["connections"])
        self.rt.set_state(st.READING_NETWORK)

    async def _batch(self, batch: ev.Batch) -> None:
        srv = self.srv
        if srv.current is not self:  # replaced: what this connection still carries belongs to no one
            raise ConnectionError("replaced by a newer call")
        self.rt.update(cur_trans=batch.txns[-1].tno)
        t0 = time.monotonic()
        helping, draining = bool(srv.helpers.running), srv.draining
        result = srv.handler.handle(batch.txns)  # one SQLite transaction, on the loop: never interrupted
        srv.after_handle()
        if any(t.kind is Kind.VERIFY for t in batch.txns):
            self._verdict()
        self.rt.incidents.clear("store", "batches are stored again")
        srv.stats["batches"] += 1
        srv.stats["transactions_received"] += len(batch.txns)
        srv.stats["duplicates_skipped"] += result.skipped
        for what, n in result.outcomes.items():
            srv.stats[f"transactions_{what}"] += n
        # A connection older than the database's number acknowledges only what it has seen.
        seen = self.conn.last_seen
        stored, applied = min(result.stored, seen), min(result.applied, seen)
        await self._send(ev.Ack(seen, stored, applied))
        ms = int((time.monotonic() - t0) * 1000)
        if helping:  # the proof that no acknowledgement waits for a helper
            srv.stats["batches_during_helpers"] += 1
            srv.stats["max_ack_ms_during_helpers"] = max(srv.stats["max_ack_ms_during_helpers"], ms)
        if draining:  # likewise for the hold being applied after apply updates is turned on
            srv.stats["batches_during_drain"] += 1
            srv.stats["max_ack_ms_during_drain"] = max(srv.stats["max_ack_ms_during_drain"], ms)
        if isinstance(srv.handler, SlaveOptions):
            self.rt.figures.update(held=srv.handler.n_held, helpers=len(srv.helpers.running))
        self.rt.set_state(st.READING_NETWORK, applied=result.applied, acked_trans=stored, batches=srv.stats["batches"],
                          lag_trans=max(0, self.conn.peer_last_tno - result.applied),
                          lag_seconds=max(0.0, time.time() - batch.txns[-1].ts))

