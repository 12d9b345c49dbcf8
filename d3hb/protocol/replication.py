"""The hot backup replication link between a master and a slave server.

Sans-IO, in the h11 manner: :class:`Connection` takes the peer's bytes with
``receive_data()``, gives events (d3hb.protocol.events) with ``next_event()``
and turns this side's events into bytes with ``send()``.  Sockets, TLS,
timers and what a slave does with a transaction belong to d3hb/servers.
The wire form is documented in docs/protocol.md.

The master calls; both sides walk the same conversation::

    start --Hello(m)--> hello --Welcome(s)--> welcome --Proof(m)--> proof --Accept(s)--> ready
    start..proof --Refuse(either)--> closed
    ready --Refuse(m), before the master sends anything else--> closed
    ready: Batch (m), Ack (s), Heartbeat / StatsRequest / StatsReply (either)
    ready --Bye sent--> closing --Bye received, or end of file--> closed
    ready --Bye received--> closed

The master proves first: the Welcome carries the slave's nonce and no proof,
the master's Proof covers the transcript, and only a slave that has checked
it answers with Accept carrying its own proof.  A caller that does not know
the code never receives anything it could test guesses against offline.

Policy stays above: the Connection refuses on its own only what it can judge
(a wrong verification code, another server's name, another protocol version,
malformed or out-of-order messages); history, resync and busy refusals are
the server's, made with ``refuse()``: the slave's once it has seen Hello (its
fields are proved by the master's Proof), the master's once Accept has proved
the Welcome (as its first message in the ready state).
Sequencing is the Connection's: a master may not run ahead of its window,
a slave drops numbers it already holds and never lets a gap through.
"""

from __future__ import annotations

import math
import os
import struct
from collections import deque
from collections.abc import Callable
from enum import Enum
from itertools import pairwise
from typing import NoReturn

from d3hb.errors import LocalProtocolError, RemoteProtocolError, UsageError
from d3hb.protocol import auth
from d3hb.protocol.events import (
    BAD_CODE, CLASSES, PROTOCOL, PROTOCOL_VERSION, REFUSE_REASONS, TYPES, UNKNOWN_SERVER,
    Accept, Ack, Batch, Bye, Event, Heartbeat, Hello, Proof, Refuse, Reject, StatsReply, StatsRequest, Welcome,
    check_stats, decode_event, encode_event, hello_payload, one_line, welcome_body,
)  # fmt: skip
from d3hb.protocol.frames import Frame, FrameDecoder, encode_frame

MASTER, SLAVE = "master", "slave"
DEFAULT_MAX_FRAME = 8 * 1024 * 1024
HANDSHAKE_LIMIT = 4096  # until the peer has proved the code, it cannot make us buffer more
MAX_SERVER_NAME = 64
MAX_HISTORY_ID = 128
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1


class State(str, Enum):
    START = "start"
    HELLO = "hello"
    WELCOME = "welcome"
    PROOF = "proof"
    READY = "ready"
    CLOSING = "closing"  # we said Bye; what the peer sent before it saw it still counts
    CLOSED = "closed"
    ERROR = "error"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
CLOSED = State.CLOSED  # what next_event() returns after end of file: the same object as the state
HANDSHAKE = (State.START, State.HELLO, State.WELCOME, State.PROOF)

# -- the conversation: who may send what; (state, sent by this side?, type) -> next state

_BOTH = frozenset({MASTER, SLAVE})
_SENDERS: dict[type, frozenset[str]] = {
    Hello: frozenset({MASTER}), Welcome: frozenset({SLAVE}), Proof: frozenset({MASTER}), Accept: frozenset({SLAVE}),
    Refuse: _BOTH, Batch: frozenset({MASTER}), Ack: frozenset({SLAVE}),
    Heartbeat: _BOTH, StatsRequest: _BOTH, StatsReply: _BOTH, Bye: _BOTH,
}  # fmt: skip
_FLOW = (Batch, Ack, Heartbeat, StatsRequest, StatsReply)
S = State
_TABLE: dict[tuple[State, bool, type], State] = {}
for _ours in (True, False):
    _TABLE[(S.START, _ours, Hello)] = S.HELLO
    _TABLE[(S.HELLO, _ours, Welcome)] = S.WELCOME
    _TABLE[(S.WELCOME, _ours, Proof)] = S.PROOF
    _TABLE[(S.PROOF, _ours, Accept)] = S.READY
    for _st in HANDSHAKE:
        _TABLE[(_st, _ours, Refuse)] = S.CLOSED
    for _cls in _FLOW:
        _TABLE[(S.READY, _ours, _cls)] = S.READY
    _TABLE[(S.READY, _ours, Refuse)] = S.CLOSED  # the master's verdict on a proved Welcome; see _late_refusal
for _cls in _FLOW:
    _TABLE[(S.CLOSING, False, _cls)] = S.CLOSING
_TABLE[(S.READY, True, Bye)] = S.CLOSING
_TABLE[(S.READY, False, Bye)] = S.CLOSED
_TABLE[(S.CLOSING, False, Bye)] = S.CLOSED


def _local(what: str, todo: str = "this is a bug in d3hb; report it") -> LocalProtocolError:
    return LocalProtocolError(what, todo)


class Connection:
    """One end of a replication link: ``role`` is ``"master"`` (calls) or ``"slave"`` (listens).

    ``code`` is the pair's shared verification code; ``history_id`` and
    ``epoch`` this system's history.  A slave's ``last_applied`` is the highest
    number it holds durably (applied, or in its hold file): numbers at or
    below it are dropped as duplicates.  ``window`` is the master's limit of
    batches not yet acknowledged as stored.  ``nonce`` (32 bytes) is for
    tests; otherwise ``random_bytes`` supplies it.
    """

    def __init__(
        self,
        role: str,
        server: str,
        code: bytes,
        *,
        history_id: str,
        epoch: int,
        last_applied: int = 0,
        window: int = 8,
        max_frame: int = DEFAULT_MAX_FRAME,
        nonce: bytes | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if role not in (MASTER, SLAVE):
            raise ValueError(f"role must be {MASTER!r} or {SLAVE!r}, not {role!r}")
        if not server or len(server.encode()) > MAX_SERVER_NAME or not server.isprintable():
            raise UsageError(f"server name {server[:80]!r} is not usable", f"give 1 to {MAX_SERVER_NAME} printable characters")
        if not code:
            raise UsageError(f"server {server} has no verification code", "set the same code= on both servers of the pair")
        if len(history_id.encode()) > MAX_HISTORY_ID or not 0 <= epoch <= U32_MAX or not 0 <= last_applied <= U64_MAX:
            raise ValueError("history id, epoch or last applied number out of range")
        if window < 1 or max_frame < HANDSHAKE_LIMIT:
            raise ValueError(f"window must be at least 1 and max_frame at least {HANDSHAKE_LIMIT}")
        self.role, self.peer_role, self.server = role, (SLAVE if role == MASTER else MASTER), server
        self._code = bytes(code)
        self.history_id, self.epoch, self.window, self.max_frame = history_id, epoch, window, max_frame
        self.nonce = auth.new_nonce(lambda n: nonce) if nonce is not None else auth.new_nonce(random_bytes)
        self.state = State.START
        self.authenticated = False  # the peer has proved it knows the code
        self.peer_hello: Hello | None = None  # slave: the master's Hello (trusted once authenticated)
        self.peer_welcome: Welcome | None = None  # master: the slave's Welcome (trusted once authenticated)
        self._master_spoke = False  # the master sent something after Accept: too late for its Refuse
        self.refused: Refuse | None = None  # the peer's refusal, if it sent one
        self.bye_received: Bye | None = None
        self.error_reply: Refuse | Bye | None = None  # after a RemoteProtocolError: what to tell the peer
        self.peer_last_tno = 0  # from Hello and Heartbeats: the peer's latest number, for lag
        self.bytes_sent = self.bytes_received = 0
        self.batches_sent = self.batches_received = self.txns_sent = self.txns_received = 0
        self.duplicates_skipped = 0
        self._decoder = FrameDecoder(HANDSHAKE_LIMIT)
        self._frames: deque[Frame] = deque()
        self._eof = self._closed_by_us = False
        self._error: RemoteProtocolError | None = None
        self._deferred: RemoteProtocolError | None = None  # a bad frame after good ones
        self._hello_payload = self._welcome_body = b""  # the transcript both proofs cover
        self._stats_asked = self._stats_owed = 0
        # master: numbers sent, the batches awaiting a "stored" Ack (their last numbers), the latest Ack
        self.last_sent = 0
        self._unacked: deque[int] = deque()
        self.acked = Ack(0, 0, 0)
        # slave: the highest number handed up (or held before this session), and the latest Ack sent
        self.last_seen = last_applied
        self._ack_sent = Ack(last_applied, last_applied, 0)

    # -- building this side's handshake ------------------------------------------

    def hello(self, last_tno: int) -> Hello:
        """The master's Hello; ``last_tno`` is its last queued transaction number."""
        return Hello(self.server, PROTOCOL_VERSION, self.history_id, self.epoch, last_tno, self.nonce)

    def welcome(self) -> Welcome:
        """The slave's answer to the Hello received: its position and nonce, no proof (the master proves first)."""
        if self.role != SLAVE or self.state is not State.HELLO:
            raise _local(f"the {self.role} cannot build a Welcome while the connection is {self.state.value}")
        return Welcome(PROTOCOL_VERSION, self.history_id, self.epoch, self.last_seen, self.nonce)

    def proof(self) -> Proof:
        """The master's proof over the transcript, sent before the slave has proved anything."""
        if self.role != MASTER or self.state is not State.WELCOME:
            raise _local(f"the {self.role} cannot build a Proof while the connection is {self.state.value}")
        return Proof(auth.make_proof(self._code, auth.MASTER_LABEL, self._hello_payload, self._welcome_body))

    def accept(self) -> Accept:
        """The slave's Accept, with its own proof, once the master's Proof has checked out."""
        if self.role != SLAVE or self.state is not State.PROOF or not self.authenticated:
            raise _local(f"the {self.role} cannot build an Accept while the connection is {self.state.value}")
        return Accept(auth.make_proof(self._code, auth.SLAVE_LABEL, self._hello_payload, self._welcome_body))

    def refuse(self, reason: str, message: str) -> bytes:
        """Refuse the connection: during the handshake, or (master) just after Accept (the server's policy)."""
        return self.send(Refuse(reason, message))

    # -- sending -----------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes for ``event``; LocalProtocolError if it is not allowed now."""
        cls = type(event)
        if self.state is State.ERROR:
            if self.error_reply is None or event != self.error_reply:
                raise _local(f"the connection failed; only {self.error_reply!r} may still be sent")
            self.error_reply = None
            return self._frame(event)
        if self.role not in _SENDERS.get(cls, ()):
            raise _local(f"a {self.role} does not send {cls.__name__}")
        nxt = _TABLE.get((self.state, True, cls))
        if nxt is None:
            raise _local(f"the {self.role} cannot send {cls.__name__} while the connection is {self.state.value}")
        self._check_send(event)
        if self.state is State.READY:
            self._late_refusal(cls, received=False)
        out = self._frame(event)  # may refuse an oversized batch: nothing has changed yet
        self._sent(event)
        self.state = nxt
        return out

    def _frame(self, event: Event) -> bytes:
        try:
            payload = encode_event(event)
        except (struct.error, ValueError, TypeError) as exc:  # a field out of range for the wire
            raise _local(f"a {type(event).__name__} that cannot be encoded ({exc})") from None
        if len(payload) > self.max_frame:
            raise _local(f"a {type(event).__name__} of {len(payload)} bytes exceeds the frame limit of {self.max_frame}", "send fewer transactions per batch (see batch_size())")
        out = encode_frame(TYPES[type(event)], payload, self.max_frame)
        self.bytes_sent += len(out)
        return out

    def _check_send(self, ev: Event) -> None:
        if isinstance(ev, Hello):
            if ev != self.hello(ev.last_tno) or not 0 <= ev.last_tno <= U64_MAX:
                raise _local("a Hello that is not this connection's", "build it with conn.hello(last_tno)")
        elif isinstance(ev, Welcome):
            if ev != self.welcome():
                raise _local("a Welcome that is not this connection's", "build it with conn.welcome()")
        elif isinstance(ev, Proof):
            if ev != self.proof():
                raise _local("a Proof that is not this connection's", "build it with conn.proof()")
        elif isinstance(ev, Accept):
            if ev != self.accept():
                raise _local("an Accept that is not this connection's", "build it with conn.accept()")
        elif isinstance(ev, Refuse):
            if ev.reason not in REFUSE_REASONS:
                raise _local(f"unknown refusal reason {ev.reason!r}", f"use one of {', '.join(sorted(REFUSE_REASONS))}")
        elif isinstance(ev, Batch):
            self._check_batch_out(ev)
        elif isinstance(ev, Ack):
            prev = self._ack_sent
            if not self.batches_received:
                raise _local("an Ack before any batch was received")
            if not (ev.applied <= ev.stored <= ev.received <= self.last_seen):
                raise _local(f"{ev} does not satisfy applied <= stored <= received <= {self.last_seen} (last received)")
            if ev.received < prev.received or ev.stored < prev.stored or ev.applied < prev.applied:
                raise _local(f"{ev} goes back from {prev}")
        elif isinstance(ev, Heartbeat):
            if not math.isfinite(ev.sent_at) or not 0 <= ev.last_tno <= U64_MAX:
                raise _local(f"a heartbeat with time {ev.sent_at} and number {ev.last_tno}")
        elif isinstance(ev, StatsReply):
            if not self._stats_owed:
                raise _local("statistics the peer did not ask for")
            check_stats(ev.stats, LocalProtocolError)

    def _check_batch_out(self, ev: Batch) -> None:
        if not ev.txns:
            raise _local("an empty batch")
        if len(self._unacked) >= self.window:
            raise _local(f"the window of {self.window} unacknowledged batches is full", "wait for an Ack (see can_send_batch)")
        first = ev.txns[0].tno
        if self.batches_sent:
            if first != self.last_sent + 1:
                raise _local(f"a batch starting at {first} after {self.last_sent}", "send the queue in order, without gaps")
        elif not 1 <= first <= self.acked.stored + 1:
            raise _local(f"a first batch starting at {first}, but the slave holds up to {self.acked.stored}", "resume at or before the slave's last applied number + 1")
        for a, b in pairwise(ev.txns):
            if b.tno != a.tno + 1:
                raise _local(f"transaction {b.tno} after {a.tno} in one batch", "send the queue in order, without gaps")

    def _sent(self, ev: Event) -> None:
        if isinstance(ev, Hello):
            self._hello_payload = hello_payload(ev)
        elif isinstance(ev, Welcome):
            self._welcome_body = welcome_body(ev)
        elif isinstance(ev, Accept):
            self._decoder.limit = self.max_frame
        elif isinstance(ev, Batch):
            self.last_sent = ev.txns[-1].tno
            self.batches_sent += 1
            self.txns_sent += len(ev.txns)
            if self.last_sent > self.acked.stored:  # a batch the slave already holds needs no Ack
                self._unacked.append(self.last_sent)
        elif isinstance(ev, Ack):
            self._ack_sent = ev
        elif isinstance(ev, StatsRequest):
            self._stats_asked += 1
        elif isinstance(ev, StatsReply):
            self._stats_owed -= 1
        elif isinstance(ev, Refuse | Bye):
            self._closed_by_us = True

    # -- receiving ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed the connection."""
        if self._eof:
            raise _local("data received after the connection was closed")
        if not data:
            self._eof = True
            return
        self.bytes_received += len(data)
        if self._error or self._deferred or (self.state is State.CLOSED and self._closed_by_us):
            return  # dead, or we refused: nothing more from the peer matters
        try:
            self._frames.extend(self._decoder.feed(data))
            # The decoder keeps an error found after good frames for its next call: ask for it now.
            self._decoder.feed(b"")
        except RemoteProtocolError as exc:
            self._deferred = exc  # raised by next_event, after the good frames before it

    def next_event(self) -> Event | _NeedData | State:
        """The next event, NEED_DATA, or CLOSED once the peer has closed and all is read."""
        if self._error is not None:
            raise self._error
        while self._frames:
            frame = self._frames.popleft()
            try:
                event = self._receive(frame)
            except Reject as r:
                self._die(RemoteProtocolError(r.what, r.todo), r.reason)
            if event is not None:
                return event
        if self._deferred is not None:
            self._die(self._deferred, PROTOCOL)
        if not self._eof:
            return NEED_DATA
        try:
            self._decoder.close()
        except RemoteProtocolError as exc:
            self._die(exc, None)
        if self.state in (State.START, State.READY, State.CLOSING, State.CLOSED) and not (self.state is State.START and self.bytes_received):
            # A probe that connects and leaves, or a peer gone after the handshake: the server decides.
            self.state = State.CLOSED
            return CLOSED
        self._die(RemoteProtocolError(f"the {self.peer_role} of server {self.server} closed the connection during the handshake (state {self.state.value})", f"see the {self.peer_role}'s status log: it may have refused the call"), None)

    def _receive(self, frame: Frame) -> Event | None:
        cls = CLASSES.get(frame.type)
        if cls is None:
            raise Reject(PROTOCOL, f"unknown replication message type {frame.type}", "the peer runs another protocol or release; check its port and version")
        if self.state is State.CLOSED:
            if self._closed_by_us:
                return None  # it crossed our refusal
            raise Reject(PROTOCOL, f"{cls.__name__} after the {self.peer_role} ended the conversation")
        if self.peer_role not in _SENDERS[cls]:
            raise Reject(PROTOCOL, f"the {self.peer_role} sent {cls.__name__}, which only a {self.role} sends")
        nxt = _TABLE.get((self.state, False, cls))
        if nxt is None:
            when = "before the handshake completed" if self.state in HANDSHAKE else f"while the connection is {self.state.value}"
            raise Reject(PROTOCOL, f"the {self.peer_role} sent {cls.__name__} {when}")
        if self.state is State.CLOSING and cls is Batch:
            return None  # it crossed our Bye: not handed up, so the master resends it next time
        if self.state is State.READY:
            self._late_refusal(cls, received=True)
        event = self._check_received(decode_event(cls, frame.payload), frame.payload)
        self.state = nxt
        return event

    def _late_refusal(self, cls: type, *, received: bool) -> None:
        """In the ready state only the master refuses, and only before it has sent anything else.

        The master can judge the slave's position only once Accept has proved
        it; its verdict is then its first message, so a slave that has heard
        anything else from the master knows it was accepted.
        """
        by_master = (self.role == MASTER) != received
        if cls is not Refuse:
            self._master_spoke = self._master_spoke or by_master
            return
        if not by_master:
            if received:
                raise Reject(PROTOCOL, "the slave sent Refuse after the handshake completed")
            raise _local("a slave refuses only during the handshake", "close the connection with Bye instead")
        if self._master_spoke:
            if received:
                raise Reject(PROTOCOL, "the master sent Refuse after it had accepted the slave")
            raise _local("the master refuses only before it sends anything after Accept")

    def _check_received(self, ev: Event, payload: bytes) -> Event | None:
        if isinstance(ev, Hello):
            if ev.server != self.server:
                raise Reject(UNKNOWN_SERVER, f"a peer that claims another server's name: {one_line(ev.server)!r} called server {self.server!r}", "check the master's target host and port, or define a slave server of that name")
            self._hello_payload, self.peer_hello, self.peer_last_tno = payload, ev, ev.last_tno
        elif isinstance(ev, Welcome):
            if ev.nonce == self.nonce:  # our own challenge echoed back: a reflection, not a slave
                raise Reject(PROTOCOL, f"server {self.server}: the slave sent back the master's own nonce")
            self._welcome_body, self.peer_welcome = payload, ev  # not trusted until Accept proves it
        elif isinstance(ev, Proof):
            if not auth.check_proof(self._code, auth.MASTER_LABEL, self._hello_payload, self._welcome_body, ev.proof):
                raise Reject(BAD_CODE, f"server {self.server}: the master did not prove the verification code", "set the same code= on both servers of the pair")
            self.authenticated = True
        elif isinstance(ev, Accept):
            if not auth.check_proof(self._code, auth.SLAVE_LABEL, self._hello_payload, self._welcome_body, ev.proof):
                raise Reject(BAD_CODE, f"server {self.server}: the slave did not prove the verification code", "set the same code= on both servers of the pair")
            self.authenticated = True
            self._decoder.limit = self.max_frame
            assert self.peer_welcome is not None
            self.acked = Ack(self.peer_welcome.last_applied, self.peer_welcome.last_applied, 0)
        elif isinstance(ev, Refuse):
            self.refused = ev
        elif isinstance(ev, Bye):
            self.bye_received = ev
        elif isinstance(ev, Batch):
            return self._sequence(ev)
        elif isinstance(ev, Ack):
            self._check_ack(ev)
        elif isinstance(ev, Heartbeat):
            self.peer_last_tno = ev.last_tno
        elif isinstance(ev, StatsRequest):
            self._stats_owed += 1
        elif isinstance(ev, StatsReply):
            if not self._stats_asked:
                raise Reject(PROTOCOL, "the peer sent statistics nobody asked for")
            self._stats_asked -= 1
        return ev

    def _sequence(self, ev: Batch) -> Batch | None:
        """Exactly-once on the slave: drop what it holds, refuse gaps and disorder."""
        if not ev.txns:
            raise Reject(PROTOCOL, "the master sent an empty batch")
        if ev.txns[0].tno == 0:
            raise Reject(PROTOCOL, "transaction number 0 in a batch")
        for a, b in pairwise(ev.txns):
            if b.tno <= a.tno:
                raise Reject(PROTOCOL, f"transaction numbers out of order in a batch: {b.tno} after {a.tno}")
        fresh = [t for t in ev.txns if t.tno > self.last_seen]
        self.duplicates_skipped += len(ev.txns) - len(fresh)
        expected = self.last_seen + 1
        for t in fresh:
            if t.tno != expected:
                raise Reject(PROTOCOL, f"gap in transaction numbers: expected {expected}, got {t.tno}", "nothing after the gap was taken; the master must resend from the expected number, or the slave needs a resync")
            expected += 1
        self.batches_received += 1
        if not fresh:
            return None
        self.last_seen = fresh[-1].tno
        self.txns_received += len(fresh)
        return Batch(tuple(fresh))

    def _check_ack(self, ev: Ack) -> None:
        prev = self.acked
        if not self.batches_sent:
            raise Reject(PROTOCOL, f"the slave acknowledged {ev.received} before any batch was sent")
        sent = max(self.last_sent, self.peer_welcome.last_applied if self.peer_welcome else 0)
        if not ev.applied <= ev.stored <= ev.received:
            raise Reject(PROTOCOL, f"an Ack with applied {ev.applied}, stored {ev.stored}, received {ev.received} out of order")
        if ev.received > sent:
            raise Reject(PROTOCOL, f"the slave acknowledged {ev.received}, but only up to {sent} was sent")
        if ev.received < prev.received or ev.stored < prev.stored or ev.applied < prev.applied:
            raise Reject(PROTOCOL, f"an Ack going backwards: received {ev.received}, stored {ev.stored}, applied {ev.applied} after {prev.received}, {prev.stored}, {prev.applied}")
        self.acked = ev
        while self._unacked and self._unacked[0] <= ev.stored:
            self._unacked.popleft()

    def _die(self, exc: RemoteProtocolError, reason: str | None) -> NoReturn:
        """Dead for good; remember what the peer should hear, unless it cannot hear it."""
        if reason is not None and not self._closed_by_us:
            if self.state in HANDSHAKE:
                self.error_reply = Refuse(reason, one_line(str(exc)))
            elif self.state is State.READY:
                self.error_reply = Bye(one_line(f"protocol error: {exc}"))
        self.state = State.ERROR
        self._error = exc
        raise exc

    # -- figures -----------------------------------------------------------------

    @property
    def unacked_batches(self) -> int:
        """Master: batches sent and not yet acknowledged as stored by the slave."""
        return len(self._unacked)

    @property
    def can_send_batch(self) -> bool:
        return self.role == MASTER and self.state is State.READY and len(self._unacked) < self.window

    @property
    def last_acked(self) -> int:
        """Master: the highest number the slave holds durably; the queue may be purged up to it."""
        return self.acked.stored

    @property
    def handshaking(self) -> bool:
        return self.state in HANDSHAKE
