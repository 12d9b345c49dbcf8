"""The events of the hot backup replication link, as frozen dataclasses.

These are what :class:`d3hb.protocol.replication.Connection` yields from
``next_event()`` and takes in ``send()``, together with their byte form
(``encode_event`` / ``decode_event``, the payloads of d3hb.protocol.frames
frames; docs/protocol.md is the reference).  No state and no policy here: the
conversation is in replication.py, what a server does with it in d3hb/servers.

Who sends what, in order::

    master                                slave
    Hello(server, ..., nonce)      -->
                                   <--    Welcome(..., nonce)            (no proof: the master proves first)
    Proof(proof)                   -->
                                   <--    Accept(proof)
    Batch(txns), Heartbeat,        -->
    StatsRequest, StatsReply, Bye
                                   <--    Ack(received, stored, applied),
                                          Heartbeat, StatsRequest, StatsReply, Bye

Either side may answer any handshake step with ``Refuse(reason, message)``;
the master may also refuse right after Accept, before anything else, once
the slave's proof has made its Welcome trustworthy (d3hb.servers.admission).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import NoReturn

from d3hb.errors import RemoteProtocolError
from d3hb.store import txn as txncodec
from d3hb.store.txn import Transaction

PROTOCOL_VERSION = 2  # 2: the master proves first (1: the slave's proof came in Welcome)
NONCE_SIZE = 32
PROOF_SIZE = 32  # HMAC-SHA256
LINK_TAG = b"D3HR"  # tells a replication peer from a tape-socket peer on a wrong port
MAX_TEXT = 512  # Refuse messages and Bye reasons: one line for a log

# Refusal reasons.  The Connection itself refuses with BAD_CODE, UNKNOWN_SERVER,
# VERSION and PROTOCOL; the servers above decide the others from the handshake.
BAD_CODE = "bad-code"
UNKNOWN_SERVER = "unknown-server"
VERSION = "version"
HISTORY_MISMATCH = "history-mismatch"
RESYNC_REQUIRED = "resync-required"
BUSY = "busy"
PROTOCOL = "protocol"
REFUSE_REASONS = frozenset({BAD_CODE, UNKNOWN_SERVER, VERSION, HISTORY_MISMATCH, RESYNC_REQUIRED, BUSY, PROTOCOL})

StatValue = int | float | str


@dataclass(frozen=True)
class Hello:
    """master -> slave: who is calling.  Not trusted until the master's Proof arrives."""

    server: str
    version: int
    history_id: str
    epoch: int
    last_tno: int  # the master's last queued transaction number
    nonce: bytes


@dataclass(frozen=True)
class Welcome:
    """slave -> master: the slave's side of the handshake, without any proof (the master proves first).

    ``history_id`` and ``epoch`` are what the slave *follows*: the master's
    history and the epoch of the last transaction it applied (empty and 0
    before its first).  ``last_applied`` is the highest number the slave
    holds durably (applied, or kept in its hold file): the master resumes
    after it.  Not trusted until the slave's proof arrives in Accept.
    """

    version: int
    history_id: str
    epoch: int
    last_applied: int
    nonce: bytes


@dataclass(frozen=True)
class Proof:
    """master -> slave: the master's proof of the code."""

    proof: bytes


@dataclass(frozen=True)
class Accept:
    """slave -> master: the master's proof is good, and the slave's own proof of the code."""

    proof: bytes


@dataclass(frozen=True)
class Refuse:
    """Either side, during the handshake: the connection is refused, and why.

    ``reason`` is one of REFUSE_REASONS (a newer peer may send others);
    ``message`` is one line for the administrator.
    """

    reason: str
    message: str


@dataclass(frozen=True)
class Batch:
    """master -> slave: transactions in strictly increasing, contiguous number order."""

    txns: tuple[Transaction, ...]


@dataclass(frozen=True)
class Ack:
    """slave -> master, cumulative: the highest transaction number read off the
    wire, held durably (hold file or applied), and applied to the database.
    Always ``applied <= stored <= received``."""

    received: int
    stored: int
    applied: int


@dataclass(frozen=True)
class Heartbeat:
    """Either way, after the handshake: the sender is alive; ``last_tno`` is its
    latest number (master: last queued, slave: last applied) so lag can be shown."""

    sent_at: float
    last_tno: int


@dataclass(frozen=True)
class StatsRequest:
    """Ask the peer for its statistics (D3's Show statistics, run on the master)."""


@dataclass(frozen=True)
class StatsReply:
    stats: dict[str, StatValue]


@dataclass(frozen=True)
class Bye:
    """Either side, after the handshake: nothing more will come from the sender."""

    reason: str = ""


Event = Hello | Welcome | Proof | Accept | Refuse | Batch | Ack | Heartbeat | StatsRequest | StatsReply | Bye


# -- wire form ---------------------------------------------------------------

TYPES: dict[type, int] = {
    Hello: 1, Welcome: 2, Proof: 3, Accept: 4, Refuse: 5, Batch: 6,
    Ack: 7, Heartbeat: 8, StatsRequest: 9, StatsReply: 10, Bye: 11,
}  # fmt: skip
CLASSES = {v: k for k, v in TYPES.items()}
_TAG = struct.Struct(">4sH")  # tag, protocol version: parsed before anything else
_HELLO = struct.Struct(f">{NONCE_SIZE}sIQ")  # nonce, epoch, last_tno; then server, history_id
_WELCOME = struct.Struct(f">{NONCE_SIZE}sIQ")  # nonce, epoch, last_applied; then history_id
_ACK = struct.Struct(">QQQ")
_BEAT = struct.Struct(">dQ")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class Reject(Exception):
    """What the peer sent wrong, and the refusal reason to give it.

    Raised by :func:`decode_event`; the Connection turns it into a
    :class:`RemoteProtocolError` and remembers the refusal to send back.
    """

    def __init__(self, reason: str, what: str, todo: str = "the peer is misbehaving; check that both hosts run the same d3hb release") -> None:
        super().__init__(what)
        self.reason, self.what, self.todo = reason, what, todo


def _s(text: str, limit: int = 0xFFFF) -> bytes:
    # Cut long text, but never inside a character: the peer must decode it.
    raw = text.encode()[:limit].decode(errors="ignore").encode()
    return _U16.pack(len(raw)) + raw


def _text(p: bytes, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(p, pos)
    end = pos + _U16.size + n
    if end > len(p):
        raise ValueError("text runs past the end of the message")
    return p[pos + _U16.size : end].decode(), end


def one_line(text: str) -> str:
    # Peer text ends up in logs and on screens: no control characters, bounded.
    return "".join(c if c.isprintable() else " " for c in text)[:MAX_TEXT]


def _done(p: bytes, end: int) -> None:
    if end != len(p):
        raise ValueError(f"{len(p)} bytes where {end} belong")


def batch_size(txns: tuple[Transaction, ...] | list[Transaction]) -> int:
    """The payload size of a Batch: keep it within the connection's ``max_frame``."""
    return _U32.size + sum(_U32.size + len(txncodec.encode(t)) for t in txns)


def hello_payload(ev: Hello) -> bytes:
    return _TAG.pack(LINK_TAG, ev.version) + _HELLO.pack(ev.nonce, ev.epoch, ev.last_tno) + _s(ev.server) + _s(ev.history_id)


def welcome_body(ev: Welcome) -> bytes:
    return _TAG.pack(LINK_TAG, ev.version) + _WELCOME.pack(ev.nonce, ev.epoch, ev.last_applied) + _s(ev.history_id)


def encode_event(ev: Event) -> bytes:
    """The payload of ``ev``'s frame (its frame type is ``TYPES[type(ev)]``)."""
    if isinstance(ev, Hello):
        return hello_payload(ev)
    if isinstance(ev, Welcome):
        return welcome_body(ev)
    if isinstance(ev, Proof | Accept):
        return ev.proof
    if isinstance(ev, Refuse):
        return _s(ev.reason) + _s(ev.message, MAX_TEXT)
    if isinstance(ev, Batch):
        parts = [_U32.pack(len(ev.txns))]
        for t in ev.txns:
            rec = txncodec.encode(t)
            parts += [_U32.pack(len(rec)), rec]
        return b"".join(parts)
    if isinstance(ev, Ack):
        return _ACK.pack(ev.received, ev.stored, ev.applied)
    if isinstance(ev, Heartbeat):
        return _BEAT.pack(ev.sent_at, ev.last_tno)
    if isinstance(ev, StatsReply):
        return json.dumps(ev.stats, allow_nan=False, sort_keys=True, separators=(",", ":")).encode()
    if isinstance(ev, Bye):
        return _s(ev.reason, MAX_TEXT)
    return b""  # StatsRequest


def decode_event(cls: type, p: bytes) -> Event:
    """The event of class ``cls`` in payload ``p``; :class:`Reject` if malformed."""
    try:
        if cls in (Hello, Welcome):
            tag, version = _TAG.unpack_from(p)
            if tag != LINK_TAG:
                raise Reject(PROTOCOL, "the peer is not a hot backup server", "check the port: it may belong to a tape-socket server")
            if version != PROTOCOL_VERSION:
                # Refused before the rest is parsed: another version may lay it out differently.
                raise Reject(VERSION, f"the peer speaks replication protocol {version}, this server {PROTOCOL_VERSION}", "install the same d3hb release on both hosts")
            if cls is Hello:
                nonce, epoch, last_tno = _HELLO.unpack_from(p, _TAG.size)
                server, end = _text(p, _TAG.size + _HELLO.size)
                history_id, end = _text(p, end)
                _done(p, end)
                return Hello(server, version, history_id, epoch, last_tno, nonce)
            nonce, epoch, last_applied = _WELCOME.unpack_from(p, _TAG.size)
            history_id, end = _text(p, _TAG.size + _WELCOME.size)
            _done(p, end)
            return Welcome(version, history_id, epoch, last_applied, nonce)
        if cls in (Proof, Accept):
            _done(p, PROOF_SIZE)
            return cls(p)
        if cls is Refuse:
            reason, end = _text(p, 0)
            message, end = _text(p, end)
            _done(p, end)
            return Refuse(one_line(reason)[:32], one_line(message))
        if cls is Batch:
            (count,) = _U32.unpack_from(p)
            pos, txns = _U32.size, []
            for _ in range(count):
                (n,) = _U32.unpack_from(p, pos)
                pos += _U32.size
                if pos + n > len(p):
                    raise ValueError("transaction record runs past the end of the batch")
                t, end = txncodec.decode(p[pos : pos + n])
                _done(p[pos : pos + n], end)
                txns.append(t)
                pos += n
            _done(p, pos)
            return Batch(tuple(txns))
        if cls is Ack:
            _done(p, _ACK.size)
            return Ack(*_ACK.unpack(p))
        if cls is Heartbeat:
            _done(p, _BEAT.size)
            sent_at, last_tno = _BEAT.unpack(p)
            if not math.isfinite(sent_at):
                raise ValueError("heartbeat time is not a number")
            return Heartbeat(sent_at, last_tno)
        if cls is StatsReply:
            stats = json.loads(p.decode(), parse_constant=_no_constant)
            check_stats(stats, ValueError)
            return StatsReply(stats)
        if cls is Bye:
            reason, end = _text(p, 0)
            _done(p, end)
            return Bye(one_line(reason))
        _done(p, 0)
        return cls()
    except Reject:
        raise
    except (struct.error, ValueError, UnicodeDecodeError, RecursionError, RemoteProtocolError) as exc:
        raise Reject(PROTOCOL, f"malformed {cls.__name__} message ({one_line(str(exc))[:120]})") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a statistic")


def check_stats(stats: object, error: type[Exception]) -> None:
    if not isinstance(stats, dict):
        raise error("statistics must be a mapping")
    for key, value in stats.items():
        ok = isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))
        if not isinstance(key, str) or not ok:
            raise error(f"statistic {str(key)[:40]!r} must be named by text and be a number or text")
