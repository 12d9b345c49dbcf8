"""The tape-socket link: an output server sends a pipe's bytes to an input server.

Sans-IO, in the h11 manner: :class:`TapeLink` takes bytes with
``receive_data()``, gives events with ``next_event()`` and turns events into
bytes with ``send()``.  Sockets, pipes and timers belong to d3hb/servers.
Frames are d3hb.protocol.frames envelopes; this module decides what they mean.

The output server calls (only the receiver's host name is configured, as in
D3) and speaks first.  One conversation, the same state on both sides::

    start --Hello(out)--> hello --HelloReply(in)--> connected
    connected: Data, EndOfTape (out); Credit, EndOfTapeAck (in); Check/CheckReply (both)
    connected --Shutdown(out)--> shutting down --ShutdownAck(in)--> closed
    any state --Error--> closed;  connected / shutting down --Bye--> closed

Flow control: the input server grants credit in chunks it has written to its
pipe; the output server may send one Data chunk (at most 1 MiB) per credit.
A slow restore therefore slows the save, and nothing buffers beyond the
credit window.  A tape ends with an in-band EndOfTape (the reader of the
input pipe then sees end of file) which the input server acknowledges once
the pipe is closed; both carry the tape number and byte count for a check.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

from d3hb.errors import LocalProtocolError, RemoteProtocolError
from d3hb.protocol.frames import HEADER, Frame, FrameDecoder, frame_header

logger = logging.getLogger(__name__)

LINK_VERSION = 1
LINK_TAG = b"D3TS"  # tells a tape-socket peer from a replication peer on a wrong port
# One chunk is what one read of a 1 MiB pipe returns: big enough that the
# per-frame cost (a CRC call, a credit, a wake-up) vanishes beside the copy.
MAX_CHUNK = 1024 * 1024
MAX_CREDIT = 64  # chunks outstanding: at most 64 MiB in flight
FRAME_LIMIT = MAX_CHUNK + 1024  # control frames are tiny; nothing bigger than a chunk is buffered
LEND = 64 * 1024  # Data payloads this big are received in place (see get_buffer)
FRAME_ROOM = HEADER.size  # bytes kept in front of a chunk for its header (see send_in_place)
OUTPUT, INPUT = "output", "input"
ROLES = (OUTPUT, INPUT)


# -- events -----------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """The output server's opening: which server it wants, and its clock (None: option ``s``)."""

    server: str
    role: str = OUTPUT
    version: int = LINK_VERSION
    sent_at: float | None = None


@dataclass(frozen=True)
class HelloReply:
    server: str
    role: str = INPUT
    version: int = LINK_VERSION
    sent_at: float | None = None


@dataclass(frozen=True)
class Data:
    data: bytes


@dataclass(frozen=True)
class EndOfTape:
    """The writer of the output pipe closed it: the input server closes its pipe too."""


@dataclass(frozen=True)
class EndOfTapeAck:
    """The input server wrote the whole tape to its pipe and closed it."""


@dataclass(frozen=True)
class Credit:
    chunks: int


@dataclass(frozen=True)
class Check:
    token: int = 0


@dataclass(frozen=True)
class CheckReply:
    token: int
    state: str  # the server's state as the status screen names it
    detail: str = ""


@dataclass(frozen=True)
class Shutdown:
    """From the sending side: stop both servers."""


@dataclass(frozen=True)
class ShutdownAck:
    pass


@dataclass(frozen=True)
class Error:
    """This side failed (its pipe broke, a tape was lost): the peer reports it too."""

    message: str


@dataclass(frozen=True)
class Bye:
    """An orderly end of the connection; the servers go on."""


@dataclass(frozen=True)
class ConnectionClosed:
    """Only from next_event(): the peer closed the connection after the conversation ended."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

Event = Hello | HelloReply | Data | EndOfTape | EndOfTapeAck | Credit | Check | CheckReply | Shutdown | ShutdownAck | Error | Bye


class State(str, Enum):
    START = "start"
    HELLO = "hello"
    CONNECTED = "connected"
    SHUTTING_DOWN = "shutting down"
    CLOSED = "closed"
    ERROR = "error"


# -- state table: (state, role of the sender, event type) -> next state -------

S = State
_TABLE: dict[tuple[State, str, type], State] = {
    (S.START, OUTPUT, Hello): S.HELLO,
    (S.HELLO, INPUT, HelloReply): S.CONNECTED,
    (S.CONNECTED, OUTPUT, Data): S.CONNECTED,
    (S.CONNECTED, OUTPUT, EndOfTape): S.CONNECTED,
    (S.CONNECTED, INPUT, Credit): S.CONNECTED,
    (S.CONNECTED, INPUT, EndOfTapeAck): S.CONNECTED,
    (S.CONNECTED, OUTPUT, Shutdown): S.SHUTTING_DOWN,
    # What the input server sent before it saw the Shutdown still arrives.
    (S.SHUTTING_DOWN, INPUT, Credit): S.SHUTTING_DOWN,
    (S.SHUTTING_DOWN, INPUT, EndOfTapeAck): S.SHUTTING_DOWN,
    (S.SHUTTING_DOWN, INPUT, ShutdownAck): S.CLOSED,
}
for _role in ROLES:
    for _st in (S.CONNECTED, S.SHUTTING_DOWN):
        _TABLE[(_st, _role, Check)] = _st
        _TABLE[(_st, _role, CheckReply)] = _st
        _TABLE[(_st, _role, Bye)] = S.CLOSED
    for _st in (S.START, S.HELLO, S.CONNECTED, S.SHUTTING_DOWN):
        _TABLE[(_st, _role, Error)] = S.CLOSED
_CLOSING = (Bye, ShutdownAck, Error)


# -- wire form ----------------------------------------------------------------

_TYPES: dict[type, int] = {
    Hello: 1, HelloReply: 2, Data: 3, EndOfTape: 4, EndOfTapeAck: 5, Credit: 6,
    Check: 7, CheckReply: 8, Shutdown: 9, ShutdownAck: 10, Error: 11, Bye: 12,
}  # fmt: skip
_CLASSES = {v: k for k, v in _TYPES.items()}
_GREETING = struct.Struct(">4sHBBd")  # tag, version, role, has clock, clock
_TAPE_MARK = struct.Struct(">IQ")  # tape number, its byte count
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def _s(text: str) -> bytes:
    # A long message is cut, but never inside a character: the peer must decode it.
    raw = text.encode()[:0xFFFF].decode(errors="ignore").encode()
    return _U16.pack(len(raw)) + raw


def _encode(event: Event, mark: tuple[int, int]) -> bytes:
    if isinstance(event, Data):
        return event.data
    if isinstance(event, Hello | HelloReply):
        clock = event.sent_at is not None
        head = _GREETING.pack(LINK_TAG, event.version, ROLES.index(event.role), clock, event.sent_at if clock else 0.0)
        return head + _s(event.server)
    if isinstance(event, EndOfTape | EndOfTapeAck):
        return _TAPE_MARK.pack(*mark)
    if isinstance(event, Credit):
        return _U32.pack(event.chunks)
    if isinstance(event, Check):
        return _U32.pack(event.token)
    if isinstance(event, CheckReply):
        return _U32.pack(event.token) + _s(event.state) + _s(event.detail)
    if isinstance(event, Error):
        return _s(event.message)
    return b""


def _decode(frame: Frame) -> tuple[Event, tuple[int, int]]:
    """Frame -> event and, for tape marks, (tape number, byte count)."""
    cls = _CLASSES.get(frame.type)
    if cls is None:
        raise RemoteProtocolError(f"unknown tape-socket message type {frame.type}", "the peer runs another protocol or release; check its port and version")
    p = frame.payload
    try:
        if cls is Data:
            return Data(p), (0, 0)
        if cls in (Hello, HelloReply):
            tag, version, role, clock, sent_at = _GREETING.unpack_from(p)
            if tag != LINK_TAG:
                raise RemoteProtocolError("the peer is not a tape-socket server", "check the port: it may belong to a hot backup server")
            if version != LINK_VERSION:
                # Named before the rest is parsed: another version may lay it out differently.
                raise RemoteProtocolError(f"the peer speaks tape-socket version {version}, this server {LINK_VERSION}", "install the same d3hb release on both hosts")
            server, end = _text(p, _GREETING.size)
            _done(p, end)
            return cls(server, ROLES[role], version, sent_at if clock else None), (0, 0)
        if cls in (EndOfTape, EndOfTapeAck):
            _done(p, _TAPE_MARK.size)
            return cls(), _TAPE_MARK.unpack(p)
        if cls in (Credit, Check):
            _done(p, _U32.size)
            return cls(_U32.unpack(p)[0]), (0, 0)
        if cls is CheckReply:
            (token,) = _U32.unpack_from(p)
            state, end = _text(p, _U32.size)
            detail, end = _text(p, end)
            _done(p, end)
            return CheckReply(token, state, detail), (0, 0)
        if cls is Error:
            message, end = _text(p, 0)
            _done(p, end)
            return Error(message), (0, 0)
        _done(p, 0)
        return cls(), (0, 0)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"malformed tape-socket {cls.__name__} message ({exc})", "the peer is misbehaving; check its version") from None


def _text(p: bytes, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(p, pos)
    end = pos + _U16.size + n
    if end > len(p):
        raise ValueError("text runs past the end of the message")
    return p[pos + _U16.size : end].decode(), end


def _done(p: bytes, end: int) -> None:
    if end != len(p):
        raise ValueError(f"{len(p)} bytes where {end} belong")


def clock_offset(sent_at: float, peer_sent_at: float, received_at: float) -> float:
    """How far the peer's clock is ahead, from one Hello/HelloReply round trip."""
    return peer_sent_at - (sent_at + received_at) / 2


# -- the connection -----------------------------------------------------------


@dataclass(frozen=True)
class LinkFigures:
    """The counters the Query screen shows."""

    state: str
    bytes_sent: int
    bytes_received: int
    data_sent: int
    data_received: int
    tapes_sent: int
    tapes_received: int
    tapes_acked: int
    credit: int


@dataclass
class _Tapes:
    sent: int = 0  # EndOfTape marks this side sent
    received: int = 0  # ... and received
    acked: int = 0  # EndOfTapeAcks sent (input) or received (output)
    current: int = 0  # data bytes of the tape in progress
    sizes: deque = field(default_factory=deque)  # byte counts of finished tapes not yet acknowledged


class TapeLink:
    """One end of a tape-socket connection, for the output or the input server."""

    def __init__(self, role: str, server: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be {OUTPUT!r} or {INPUT!r}, not {role!r}")
        self.role = role
        self.peer_role = INPUT if role == OUTPUT else OUTPUT
        self.server = server
        self.state = State.START
        self.peer_hello: Hello | HelloReply | None = None
        self.credit = 0  # output: chunks it may send; input: chunks granted and not yet received
        self.bytes_sent = self.bytes_received = 0
        self.data_sent = self.data_received = 0
        self.tapes = _Tapes()
        self._decoder = FrameDecoder(FRAME_LIMIT, lend=LEND)
        self._frames: deque[Frame] = deque()
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._deferred: RemoteProtocolError | None = None
        self._closed_by_us = False
        self._our_checks: set[int] = set()  # Checks we sent, awaiting a reply
        self._peer_checks: set[int] = set()  # Checks the peer sent, awaiting our reply

    # -- sending --

    def send(self, event: Event) -> bytes:
        """The bytes for ``event``; LocalProtocolError if it is not allowed now."""
        return b"".join(self.send_parts(event))

    def send_parts(self, event: Event) -> tuple[bytes, ...]:
        """As :meth:`send`, in pieces to write one after the other: a Data chunk
        comes back as (header, the chunk itself), so 1 MiB is not copied to join them."""
        if self.state is State.ERROR and isinstance(event, Error):
            nxt = State.CLOSED
        else:
            nxt = _TABLE.get((self.state, self.role, type(event)))
        if nxt is None:
            raise LocalProtocolError(f"the {self.role} server cannot send {type(event).__name__} while the link is {self.state.value}", "this is a bug in d3hb; report it")
        mark = self._check_send(event)
        payload = _encode(event, mark)
        head = frame_header(_TYPES[type(event)], payload, FRAME_LIMIT)
        self.bytes_sent += len(head) + len(payload)
        self.state = nxt
        if nxt is State.CLOSED:
            self._closed_by_us = True
        return (head, payload) if payload else (head,)

    def send_in_place(self, frame: memoryview, n: int) -> memoryview:
        """Send the chunk at ``frame[FRAME_ROOM:FRAME_ROOM + n]`` as Data: its header is
        written in the room in front, and the whole frame is returned to be sent as it is."""
        head, _ = self.send_parts(Data(frame[FRAME_ROOM : FRAME_ROOM + n]))  # type: ignore[arg-type]
        frame[:FRAME_ROOM] = head
        return frame[: FRAME_ROOM + n]

    def send_failed(self) -> None:
        """The bytes of the last send() never reached the peer: the link is unusable."""
        self._die(RemoteProtocolError(f"the connection of server {self.server} failed while sending", "check the network, then restart the transfer"))

    def _check_send(self, ev: Event) -> tuple[int, int]:
        if isinstance(ev, Hello | HelloReply):
            if ev.role != self.role or ev.server != self.server or ev.version != LINK_VERSION:
                raise LocalProtocolError(f"a {type(ev).__name__} for {ev.role} server {ev.server!r} version {ev.version} sent by {self.role} server {self.server!r}", "build it from the link's own role and name")
        elif isinstance(ev, Data):
            if not 0 < len(ev.data) <= MAX_CHUNK:
                raise LocalProtocolError(f"a data chunk of {len(ev.data)} bytes", f"send 1 to {MAX_CHUNK} bytes at a time")
            if self.credit <= 0:
                raise LocalProtocolError("no credit left to send data", "wait for the input server to grant credit")
            self.credit -= 1
            self.data_sent += len(ev.data)
            self.tapes.current += len(ev.data)
        elif isinstance(ev, EndOfTape):
            self.tapes.sent += 1
            mark = (self.tapes.sent, self.tapes.current)
            self.tapes.sizes.append(self.tapes.current)
            self.tapes.current = 0
            return mark
        elif isinstance(ev, EndOfTapeAck):
            if not self.tapes.sizes:
                raise LocalProtocolError("EndOfTapeAck with no tape to acknowledge", "acknowledge a tape once its EndOfTape arrived and the pipe is closed")
            self.tapes.acked += 1
            return (self.tapes.acked, self.tapes.sizes.popleft())
        elif isinstance(ev, Credit):
            if ev.chunks < 1 or self.credit + ev.chunks > MAX_CREDIT:
                raise LocalProtocolError(f"credit of {ev.chunks} on top of {self.credit}", f"keep at most {MAX_CREDIT} chunks outstanding")
            self.credit += ev.chunks
        elif isinstance(ev, Check):
            if ev.token in self._our_checks:
                raise LocalProtocolError(f"check {ev.token} is already awaiting its reply", "use a new token")
            self._our_checks.add(ev.token)
        elif isinstance(ev, CheckReply):
            if ev.token not in self._peer_checks:
                raise LocalProtocolError(f"reply to check {ev.token}, which the peer never sent", "reply only to a Check received")
            self._peer_checks.discard(ev.token)
        return (0, 0)

    # -- receiving --

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed the connection."""
        if self._eof:
            raise LocalProtocolError("data received after the connection was closed", "this is a bug in d3hb; report it")
        if not data:
            self._eof = True
            return
        self.bytes_received += len(data)
        if self._deferred is not None or self._error is not None:
            return
        try:
            self._frames.extend(self._decoder.feed(data))
        except RemoteProtocolError as exc:
            self._deferred = exc  # raised by next_event after the good frames before it

    def get_buffer(self) -> memoryview:
        """Where the next bytes from the peer may be put (``recv_into``); then :meth:`buffer_updated`.

        While a big Data chunk is arriving this is the rest of its own buffer,
        so the chunk is handed out (a ``memoryview``) without a copy; :meth:`release` recycles it.
        """
        return self._decoder.get_buffer()

    def release(self, data: bytes | bytearray | memoryview) -> None:
        """A received Data chunk has been used (written to the pipe): its buffer serves a later chunk."""
        self._decoder.release(data)

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` from the peer were put at the start of the last :meth:`get_buffer`."""
        if self._eof:
            raise LocalProtocolError("data received after the connection was closed", "this is a bug in d3hb; report it")
        if nbytes <= 0:
            return
        self.bytes_received += nbytes
        if self._deferred is not None or self._error is not None:
            return
        try:
            self._frames.extend(self._decoder.buffer_updated(nbytes))
        except RemoteProtocolError as exc:
            self._deferred = exc

    def next_event(self) -> Event | ConnectionClosed | _NeedData:
        if self._error is not None:
            raise self._error
        while self._frames:
            frame = self._frames.popleft()
            try:
                event = self._receive(frame)
            except RemoteProtocolError as exc:
                self._die(exc)
            if event is not None:
                return event
        if self._deferred is not None:
            self._die(self._deferred)
        if not self._eof:
            return NEED_DATA
        try:
            self._decoder.close()
        except RemoteProtocolError as exc:
            self._die(exc)
        if self.state is State.CLOSED:
            return ConnectionClosed()
        self._die(RemoteProtocolError(f"the {self.peer_role} server of {self.server} closed the connection {self._where()}", "see that server's log, then run the transfer again"))

    def _receive(self, frame: Frame) -> Event | None:
        event, mark = _decode(frame)
        if self.state is State.CLOSED:
            if not self._closed_by_us:
                raise RemoteProtocolError(f"{type(event).__name__} after the {self.peer_role} server ended the conversation", "the peer is misbehaving; check its version")
            # It crossed our closing message.  A failure must still be reported; the rest is moot.
            return event if isinstance(event, Error) else None
        nxt = _TABLE.get((self.state, self.peer_role, type(event)))
        if nxt is None:
            raise RemoteProtocolError(f"the {self.peer_role} server sent {type(event).__name__} while the link is {self.state.value}", "the peer is misbehaving; check its version")
        self._check_received(event, mark)
        self.state = nxt
        return event

    def _check_received(self, ev: Event, mark: tuple[int, int]) -> None:
        if isinstance(ev, Hello | HelloReply):
            if ev.role != self.peer_role:
                raise RemoteProtocolError(f"an {ev.role} server called the {self.role} server {self.server}", "pair an output server with an input server")
            if ev.server != self.server:
                raise RemoteProtocolError(f"server {ev.server!r} reached server {self.server!r}", "give both servers the same name, or check the port numbers")
            self.peer_hello = ev
        elif isinstance(ev, Data):
            if not 0 < len(ev.data) <= MAX_CHUNK:
                raise RemoteProtocolError(f"a data chunk of {len(ev.data)} bytes", "the peer is misbehaving; check its version")
            if self.credit <= 0:
                raise RemoteProtocolError("the output server sent data beyond the credit granted", "the peer is misbehaving; check its version")
            self.credit -= 1
            self.data_received += len(ev.data)
            self.tapes.current += len(ev.data)
        elif isinstance(ev, EndOfTape):
            self.tapes.received += 1
            if mark != (self.tapes.received, self.tapes.current):
                raise RemoteProtocolError(
                    f"end of tape {mark[0]} after {mark[1]} bytes, but this is tape {self.tapes.received} with {self.tapes.current} bytes received",
                    "data was lost in transit; run the transfer again",
                )
            self.tapes.sizes.append(self.tapes.current)
            self.tapes.current = 0
        elif isinstance(ev, EndOfTapeAck):
            expected = (self.tapes.acked + 1, self.tapes.sizes[0]) if self.tapes.sizes else None
            if mark != expected:
                raise RemoteProtocolError(f"acknowledgement of tape {mark[0]} ({mark[1]} bytes) does not match what was sent", "data was lost in transit; run the transfer again")
            self.tapes.acked += 1
            self.tapes.sizes.popleft()
        elif isinstance(ev, Credit):
            if ev.chunks < 1 or self.credit + ev.chunks > MAX_CREDIT:
                raise RemoteProtocolError(f"a credit of {ev.chunks} chunks on top of {self.credit}", "the peer is misbehaving; check its version")
            self.credit += ev.chunks
        elif isinstance(ev, Check):
            self._peer_checks.add(ev.token)
        elif isinstance(ev, CheckReply):
            if ev.token not in self._our_checks:
                raise RemoteProtocolError(f"a reply to check {ev.token}, which was never sent", "the peer is misbehaving; check its version")
            self._our_checks.discard(ev.token)

    def _die(self, exc: RemoteProtocolError) -> NoReturn:
        self.state = State.ERROR
        self._error = exc
        raise exc

    def _where(self) -> str:
        if self.tapes.current:
            number = (self.tapes.sent if self.role == OUTPUT else self.tapes.received) + 1
            return f"in the middle of tape {number} after {self.tapes.current} bytes"
        if self.tapes.sizes:
            return f"before tape {self.tapes.acked + 1} was acknowledged"
        return f"while the link was {self.state.value}"

    # -- figures --

    @property
    def unacknowledged_tapes(self) -> int:
        """Tapes ended but not yet confirmed written to the input pipe."""
        return len(self.tapes.sizes)

    def figures(self) -> LinkFigures:
        t = self.tapes
        return LinkFigures(
            self.state.value, self.bytes_sent, self.bytes_received, self.data_sent, self.data_received, t.sent, t.received, t.acked, self.credit
        )
