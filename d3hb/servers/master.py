"""The master server: calls its slave and ships the transaction log queue.

asyncio I/O around the sans-IO :class:`d3hb.protocol.replication.Connection`.
The master keeps up to ``window`` batches in flight, purges the queue up to
what the slave acknowledges as stored (``Queue.ack``), and calls again with
back-off whenever the link fails.  A write that makes no progress for
``timeout`` seconds, or an acknowledgement that does not come in that time,
drops the connection (D3's 30-second time-out).

Every check period both sides heartbeat, and the master writes a test record
through the ordinary logging path (D3's ``tltest``); a test record that is
not acknowledged within two check periods is an incident.  A queue
holding more than ``cap`` transactions for this slave marks the pair
"resync required": the cursor is dropped so the queue can purge, and the
master stops rather than fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from d3hb.errors import D3hbError, LocalProtocolError, RemoteProtocolError, StoreError
from d3hb.protocol import events as ev
from d3hb.protocol.replication import CLOSED, DEFAULT_MAX_FRAME, MASTER, NEED_DATA, Connection, State
from d3hb.servers import admission
from d3hb.servers import status as st
from d3hb.store import verify as store_verify
from d3hb.store.system import System
from d3hb.store.txn import Kind

READ_CHUNK = 256 * 1024
BATCH_BYTES = 1 << 20
BACKOFF_FIRST = 0.2
FATAL = "error: "
RESYNC_META = "hb.resync."  # + server name: why the pair needs a resync


class Fatal(Exception):
    """The pair must stop; the text says why."""


class Lost(Exception):
    """The link failed; the master calls again."""


class Refusal(Lost):
    """The handshake was refused (already reported as an incident); the master calls again."""


def client_ssl(cfg: st.Config) -> ssl.SSLContext | None:
    if not (cfg.tls_ca or cfg.tls_cert):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.tls_ca:
        ctx.load_verify_locations(cfg.tls_ca)
    else:
        ctx.load_default_certs()
    if cfg.tls_cert:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
    return ctx


def resync_reason(system: System, name: str) -> str:
    return system.meta(RESYNC_META + name)


class MasterServer:
    def __init__(self, cfg: st.Config, system: System, rt: st.Runtime) -> None:
        self.cfg = cfg
        self.system = system
        self.queue = system.queue
        self.rt = rt
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.conn: Connection | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.fatal: str | None = None
        self.error: BaseException | None = None
        self.last_heard = 0.0
        self.pending_test: tuple[int, float] | None = None
        self.next_test = 0.0
        self.next_verify = time.monotonic() + cfg.verify if cfg.verify else 0.0
        self.stats_waiters: list[asyncio.Future] = []

    # -- asked over the control channel ----------------------------------------------
    async def statistics(self) -> dict:
        """Show statistics: ask the slave over the link (so it also proves the link)."""
        conn, writer = self.conn, self.writer
        if conn is None or writer is None or conn.state is not State.READY:
            raise D3hbError(f"server {self.cfg.name} is not connected to its slave (status: {self.rt.state})",
                            "start the slave server, then look at the master's status log")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.stats_waiters.append(fut)
        writer.write(conn.send(ev.StatsRequest()))
        try:
            reply = await asyncio.wait_for(fut, self.cfg.timeout)
        except TimeoutError:
            raise D3hbError(f"the slave of server {self.cfg.name} did not answer within {self.cfg.timeout:g} s",
                            "the slave may be busy or stopped; see both status logs") from None
        return {"slave": reply, "master": self.local_statistics()}

    def local_statistics(self) -> dict:
        f = self.rt.figures
        return {"server": self.cfg.name, "type": "Master", "queue_last": self.queue.last_tno(),
                "acked_trans": f["acked_trans"], "total_sent": f["total_sent"], "batches": f["batches"]}

    def stop(self, reason: str = "stop requested") -> None:
        self.rt.log(f"Stopping: {reason}")
        self.stopping.set()
        self.wake.set()

    # -- the outer loop: call, ship, call again ----------------------------------------
    async def run(self) -> None:
        reason = resync_reason(self.system, self.cfg.name)
        if reason:
            raise D3hbError(f"server {self.cfg.name} requires a resync: {reason}",
                            "restore the slave from a save of this system, then define the server again")
        if self.queue.cursor(self.cfg.name) is None:
            self.queue.add_cursor(self.cfg.name)
        acked = self.queue.cursor(self.cfg.name) or 0
        self.rt.update(acked_trans=acked, queue_last=self.queue.last_tno())
        backoff = BACKOFF_FIRST
        cap = min(max(self.cfg.timeout, 1.0), 10.0)
        while not self.stopping.is_set():
            connected = False
            try:
                connected = await self._interruptible_session()
            except Fatal as exc:
                self.fatal = str(exc)
            except Refusal as exc:
                self.rt.update(error=str(exc))
            except (Lost, ConnectionError, TimeoutError, OSError, RemoteProtocolError, LocalProtocolError, ssl.SSLError,
                    StoreError) as exc:  # a locked or full database: nothing acknowledged is lost, call again
                text = str(exc) or type(exc).__name__
                if isinstance(exc, ConnectionRefusedError):
                    text = f"connection to {self.cfg.host}:{self.cfg.port} refused (is the slave server started, and its bind= reachable?)"
                elif isinstance(exc, TimeoutError) and not str(exc):
                    text = f"no progress for {self.cfg.timeout:g} s talking to {self.cfg.host}:{self.cfg.port}"
                self.rt.incidents.raise_("connection", f"connection lost: {text}")
                self.rt.update(error=text)
            finally:
                await self._drop()
            if self.fatal is not None:
                self.rt.incidents.raise_("fatal", self.fatal)
                raise Fatal(self.fatal)
            if self.stopping.is_set():
                break
            backoff = BACKOFF_FIRST if connected else min(backoff * 2, cap)
            self.rt.set_state(st.WAIT_CALL_RESPONSE)
            await self._sleep(backoff)
            self._check_cap()

    async def _interruptible_session(self) -> bool:
        """A stop while calling or handshaking (a host that never answers) ends the call at
        once; once connected, the flow loop finishes its batch and says Bye by itself."""
        session = asyncio.create_task(self._session())
        stopper = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done() and self.conn is None:
                session.cancel()
            try:
                return await session
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
                return False
        finally:
            stopper.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _drop(self) -> None:
        writer, self.writer, self.conn = self.writer, None, None
        for fut in self.stats_waiters:
            if not fut.done():
                fut.set_exception(D3hbError(f"server {self.cfg.name} lost its slave before it answered", "try again once connected"))
        self.stats_waiters.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        self.rt.figures["total_sent"] = int(self.rt.figures["total_sent"]) + len(data)  # type: ignore[call-overload]
        # D3's write time-out: a write that makes no progress drops the connection.
        try:
            await asyncio.wait_for(self.writer.drain(), self.cfg.timeout)
        except TimeoutError:
            raise Lost(f"a write to the slave made no progress for {self.cfg.timeout:g} s") from None

    async def _event(self, reader: asyncio.StreamReader, conn: Connection, deadline: float) -> object:
        """The next event during the handshake."""
        while True:
            event = conn.next_event()
            if event is not NEED_DATA:
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise Lost(f"the slave did not finish the handshake within {self.cfg.timeout:g} s")
            data = await asyncio.wait_for(reader.read(READ_CHUNK), left)
            conn.receive_data(data)

    async def _session(self) -> bool:
        cfg = self.cfg
        self.rt.set_state(st.WAIT_CALL_RESPONSE)
        ctx = client_ssl(cfg)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port, ssl=ctx, server_hostname=cfg.host if ctx else None, limit=READ_CHUNK),
            cfg.timeout)
        self.writer = writer
        conn = Connection(MASTER, cfg.name, cfg.code.encode(), history_id=self.system.history_id, epoch=self.system.epoch,
                          window=cfg.window, max_frame=DEFAULT_MAX_FRAME)
        deadline = time.monotonic() + cfg.timeout
        await self._send(conn.send(conn.hello(self.queue.last_tno())))
        try:
            welcome = await self._event(reader, conn, deadline)
            if isinstance(welcome, ev.Refuse):
                raise self._refused(welcome)
            if welcome is CLOSED or not isinstance(welcome, ev.Welcome):
                raise Lost("the slave closed the call during the handshake")
            await self._send(conn.send(conn.proof()))  # the caller proves first; the slave proves in Accept
            accept = await self._event(reader, conn, deadline)
            if isinstance(accept, ev.Refuse):
                raise self._refused(accept)
            if not isinstance(accept, ev.Accept):
                raise Lost("the slave closed the call during the handshake")
            await self._judge(conn, welcome)  # the Welcome is proved now: its position can be trusted
        except RemoteProtocolError as exc:
            reply = conn.error_reply  # tell the slave why, so both sides log it
            if reply is not None:
                with contextlib.suppress(Exception):
                    await self._send(conn.send(reply))
            self.rt.incidents.raise_("refused", f"handshake failed: {exc}")
            raise Refusal(str(exc)) from None
        self.conn = conn
        self.rt.incidents.clear("refused", "handshake accepted")
        self._align_cursor(welcome.last_applied)
        self.rt.log(f"Connected to {cfg.host}:{cfg.port} (system {cfg.target}); the slave holds up to {welcome.last_applied}")
        self.rt.incidents.clear("connection", f"connection restored ({cfg.host}:{cfg.port})")
        self.rt.set_state(st.CONNECTED, peer=f"{cfg.host}:{cfg.port}", connected_since=time.time(),
                          acked_trans=max(welcome.last_applied, int(self.rt.figures["acked_trans"])), error="",  # type: ignore[call-overload]
                          connections=int(self.rt.figures["connections"]) + 1)  # type: ignore[call-overload]
        self.last_heard = time.monotonic()
        self.next_test = time.monotonic() + cfg.check
        self.error = None
        reading = asyncio.create_task(self._read_loop(reader, conn))
        try:
            await self._flow(conn)
        finally:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
        return True

    async def _judge(self, conn: Connection, welcome: ev.Welcome) -> None:
        """Refuse, as the first message after Accept, a slave this master cannot continue."""
        diverged = admission.divergence(self.system, self.cfg, welcome)
        if diverged is not None:  # the slave needs a resync, not this master: nothing is marked here
            with contextlib.suppress(Exception):
                await self._send(conn.refuse(*diverged))
            self.rt.incidents.raise_("refused", f"refused the slave: {diverged[1]}")
            raise Fatal(diverged[1])
        gap = self._gap(welcome.last_applied)
        if gap:
            with contextlib.suppress(Exception):
                await self._send(conn.refuse(ev.RESYNC_REQUIRED, gap))
            self._mark_resync(gap)
            raise Fatal(gap)

    def _refused(self, refusal: ev.Refuse) -> Exception:
        text = f"the slave refused the call ({refusal.reason}): {refusal.message}"
        self.rt.incidents.raise_("refused", text)
        if refusal.reason in (ev.RESYNC_REQUIRED, ev.HISTORY_MISMATCH, ev.VERSION):
            return Fatal(text)
        return Refusal(text)

    def _gap(self, last_applied: int) -> str:
        return admission.gap(self.queue, last_applied)

    def _align_cursor(self, held: int) -> None:
        """Make this slave's cursor say what the slave itself says it holds.

        Ahead of the cursor (acks lost in a crash): move it on and purge.
        Behind it (a slave never acknowledged anything yet, or put back to an
        older copy while the queue still has what it needs, as _gap checked):
        move it back, so nothing the slave still needs is purged under it.
        Queue has no call to move a cursor back, hence the SQL here.
        """
        cursor = self.queue.cursor(self.cfg.name)
        if cursor is None or held > cursor:
            self.queue.add_cursor(self.cfg.name, held)
            self.queue.ack(self.cfg.name, held)
        elif held < cursor:
            with self.system.transaction():
                self.system.q("UPDATE cursors SET acked=? WHERE server=?", (held, self.cfg.name))
            self.rt.log(f"The slave holds up to {held}, less than the {cursor} acknowledged before; resending from {held + 1}")

    def _mark_resync(self, reason: str) -> None:
        self.system.set_meta(RESYNC_META + self.cfg.name, time.strftime("%Y-%m-%d %H:%M:%S ") + reason)
        self.rt.update(resync_required=reason)

    def _check_cap(self) -> None:
        cfg = self.cfg
        if not cfg.cap:
            return
        cursor = self.queue.cursor(cfg.name)
        if cursor is None:
            return
        held = self.queue.last_tno() - cursor
        if held > cfg.cap:
            text = (f"the queue holds {held} transactions for this slave, over its cap of {cfg.cap}: resync required "
                    f"(cursor dropped so the queue can purge)")
            self.queue.drop_cursor(cfg.name)
            self._mark_resync(text)
            self.rt.incidents.raise_("cap", text)
            raise Fatal(text)

    # -- connected -----------------------------------------------------------------------
    async def _read_loop(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                conn.receive_data(data)
                self.last_heard = time.monotonic()
                while (event := conn.next_event()) is not NEED_DATA:
                    if event is CLOSED:
                        raise Lost("the slave closed the connection")
                    self._on_event(conn, event)
                self.wake.set()
        except BaseException as exc:  # handed to the flow loop, which ends the session
            self.error = exc
            self.wake.set()

    def _on_event(self, conn: Connection, event: object) -> None:
        name = self.cfg.name
        if isinstance(event, ev.Ack):
            self.queue.ack(name, event.stored)
            self.rt.update(acked_trans=event.stored)
            if self.pending_test and event.stored >= self.pending_test[0]:
                tno = self.pending_test[0]
                self.pending_test = None
                self.rt.incidents.clear("test-record", f"test record {tno} acknowledged: the logging path works")
        elif isinstance(event, ev.StatsRequest):
            assert self.writer is not None
            self.writer.write(conn.send(ev.StatsReply(self.local_statistics())))
        elif isinstance(event, ev.StatsReply):
            while self.stats_waiters:
                fut = self.stats_waiters.pop(0)
                if not fut.done():
                    fut.set_result(event.stats)
                    break
        elif isinstance(event, ev.Bye):
            if event.reason.startswith(FATAL):
                text = f"the slave stopped on an error: {event.reason[len(FATAL):]}"
                self.rt.incidents.raise_("slave-error", text)
                raise Fatal(text)
            raise Lost(f"the slave ended the connection: {event.reason or 'no reason given'}")

    async def _flow(self, conn: Connection) -> None:
        cfg = self.cfg
        last_beat = 0.0  # a heartbeat at once: the slave learns it was accepted even when the queue is empty
        waiting_since: float | None = None
        while not self.stopping.is_set():
            if self.error is not None:
                raise self.error
            self._check_cap()
            sent = await self._fill_window(conn)
            now = time.monotonic()
            self._test_record(now)  # before the ack time-out below, so a late test record is reported as such
            self._verify_marker(now)
            if conn.unacked_batches:
                waiting_since = waiting_since or now
                if now - max(waiting_since, self.last_heard) > cfg.timeout:
                    raise Lost(f"no acknowledgement from the slave for {cfg.timeout:g} s")
            else:
                waiting_since = None
            if now - self.last_heard > max(cfg.timeout, 3 * cfg.check):
                raise Lost(f"nothing heard from the slave for {now - self.last_heard:.0f} s")
            if now - last_beat >= cfg.check:
                last_beat = now
                await self._send(conn.send(ev.Heartbeat(time.time(), self.queue.last_tno())))
            self._figures(conn)
            self.wake.clear()
            if sent and conn.can_send_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(cfg.txlog, cfg.check))
        # A clean stop: say goodbye so the slave does not count it as an incident.
        with contextlib.suppress(Exception):
            await self._send(conn.send(ev.Bye("the master server is stopping")))

    async def _fill_window(self, conn: Connection) -> bool:
        sent = False
        while conn.can_send_batch:
            after = conn.last_sent if conn.batches_sent else conn.last_acked
            if not sent and self.rt.state == st.IDLE:
                self.rt.set_state(st.READING_QUEUE)
            txns = self.queue.read(after, limit=self.cfg.batch, max_bytes=BATCH_BYTES)
            if not txns:
                break
            if txns[0].tno != after + 1:
                text = self._gap(after) or f"gap: transaction {after + 1} is missing from the queue"
                self._mark_resync(text)
                raise Fatal(text)
            self.rt.set_state(st.WRITING_NETWORK, cur_trans=txns[-1].tno)
            await self._send(conn.send(ev.Batch(tuple(txns))))
            sent = True
        return sent

    def _test_record(self, now: float) -> None:
        cfg = self.cfg
        if self.pending_test is not None:
            tno, written = self.pending_test
            late = 2 * cfg.check
            if now - written >= late:
                self.rt.incidents.raise_("test-record", f"test record {tno} not acknowledged after {late:g} s: updates may not be reaching the slave")
            return
        if now < self.next_test:
            return
        self.next_test = now + cfg.check
        if not (self.system.logging and self.system.enqueuing):
            return  # nothing is enqueued now, so nothing could prove the path
        tno = self.system.enqueue(Kind.TEST, 0, "", "", None, body=f"tltest {cfg.name} {time.time():.3f}".encode())
        self.pending_test = (tno, now)

    def _verify_marker(self, now: float) -> None:
        """Periodic verify (field verify=SECONDS): a marker through the queue; the slave judges it."""
        cfg = self.cfg
        if not cfg.verify or now < self.next_verify:
            return
        self.next_verify = now + cfg.verify
        if not (self.system.logging and self.system.enqueuing):
            return
        tno = store_verify.write_marker(self.system, note=f"periodic {cfg.name}")
        self.rt.log(f"Verify marker {tno} written (every {cfg.verify:g} s); the slave compares its digests when it applies it")

    def _figures(self, conn: Connection) -> None:
        last = self.queue.last_tno()
        acked = conn.last_acked
        lag_s = 0.0
        if acked < last:
            oldest = self.queue.read(acked, limit=1)
            if oldest:
                lag_s = max(0.0, time.time() - oldest[0].ts)
        state = st.WAITING_ACK if not conn.can_send_batch else (st.IDLE if acked >= last else st.READING_QUEUE)
        if conn.unacked_batches == 0 and acked >= last:
            state = st.IDLE
        self.rt.set_state(state, queue_last=last, lag_trans=max(0, last - acked), lag_seconds=lag_s,
                          batches=conn.batches_sent, total_recvd=conn.bytes_received)
