"""The vault link: a source system stores and reads virtual volumes on a target.

Sans-IO: :class:`ClientConn` (the source, or a third system importing) and
:class:`ServerConn` (the vault) take bytes with ``feed()`` and return events;
what they want sent is drained with ``data_to_send()``.  Frames are
d3hb.protocol.frames envelopes; payloads are JSON except DATA (raw bytes).

Handshake (the source calls, as TSM's source server calls its target)::

    client HELLO   {tag, version, node, want, nonce}     want: session | define | forcesync
    server CHALLENGE {nonce}
    client AUTH    {proof, code_proof, sealed}
    server ACCEPT  {mode: rw | ro, proof}   or ERROR {what, todo}

Both proofs are HMAC-SHA256 keyed with the node's password key over the
transcript (HELLO and CHALLENGE payloads as sent), so neither side sends the
password and a recorded session cannot be replayed.  ``code_proof`` proves
the verification code the same way; a session proving the code stored on
the target is read/write, one with the password only is read-only (a third
system importing).  ``define`` and ``forcesync`` carry a new code *sealed*:
XORed with an HMAC keystream of the password key and the transcript, so
it never crosses the wire in clear.  Whether the target accepts a new code,
and what a read-only session may do, is the server's policy, not this
module's.

After ACCEPT the client sends REQUEST {op, ...}; ``put`` is followed by DATA
frames and END {size, digest}; the server answers REPLY {...} or ERROR, and
``get`` is answered by REPLY, DATA frames and END.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from d3hb.errors import LocalProtocolError, RemoteProtocolError
from d3hb.protocol.frames import FrameDecoder, encode_frame

VAULT_VERSION = 1
VAULT_TAG = "D3VAULT"  # tells a vault peer from a replication or tape-socket peer on a wrong port
NONCE_SIZE = 32
CODE_SIZE = 32
CHUNK = 256 * 1024
FRAME_LIMIT = CHUNK + 4096
HANDSHAKE_LIMIT = 4096  # nothing bigger is buffered before the password is proved
KEY_ROUNDS = 20_000
WANTS = ("session", "define", "forcesync")
MODES = ("rw", "ro")

HELLO, CHALLENGE, AUTH, ACCEPT, ERROR, REQUEST, DATA, END, REPLY = range(1, 10)

_CLIENT_LABEL = b"d3hb vault client proof\x00"
_SERVER_LABEL = b"d3hb vault server proof\x00"
_CODE_LABEL = b"d3hb vault code proof\x00"
_SEAL_LABEL = b"d3hb vault code seal\x00"
_LEN = struct.Struct(">I")


def password_key(node: str, password: str) -> bytes:
    """What both sides key their proofs with; the target stores this, never the password."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), b"d3hb vault node " + node.encode("utf-8"), KEY_ROUNDS)


def _transcript(hello: bytes, challenge: bytes) -> bytes:
    return _LEN.pack(len(hello)) + hello + _LEN.pack(len(challenge)) + challenge


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, label + b"".join(_LEN.pack(len(p)) + p for p in parts), hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# -- events -----------------------------------------------------------------


@dataclass(frozen=True)
class HelloReceived:
    """Server side: who calls and what it wants; answer with :meth:`ServerConn.challenge`."""

    node: str
    want: str
    version: int


@dataclass(frozen=True)
class AuthReceived:
    """Server side: proofs arrived; judge them with :meth:`ServerConn.check`."""


@dataclass(frozen=True)
class AuthCheck:
    """What the proofs showed (the server decides what to make of it)."""

    password_ok: bool
    code_ok: bool  # the session proved the stored code
    new_code: bytes | None  # define / forcesync: the code the client sent, unsealed


@dataclass(frozen=True)
class Accepted:
    """Client side: the session is open, read/write or read-only."""

    mode: str
    note: str = ""


@dataclass(frozen=True)
class ErrorReceived:
    what: str
    todo: str = ""


@dataclass(frozen=True)
class RequestReceived:
    op: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    data: bytes


@dataclass(frozen=True)
class End:
    size: int
    digest: str


Event = HelloReceived | AuthReceived | Accepted | ErrorReceived | RequestReceived | Reply | Data | End


def _json(payload: bytes, what: str) -> dict:
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RemoteProtocolError(f"malformed vault {what} message", "the peer is not a d3hb vault of this release") from None
    if not isinstance(doc, dict):
        raise RemoteProtocolError(f"malformed vault {what} message", "the peer is not a d3hb vault of this release")
    return doc


def _enc(ftype: int, doc: dict) -> bytes:
    return encode_frame(ftype, json.dumps(doc, separators=(",", ":")).encode("utf-8"), FRAME_LIMIT)


def _hex(doc: dict, key: str, size: int | None, what: str) -> bytes:
    try:
        raw = bytes.fromhex(str(doc.get(key, "")))
    except ValueError:
        raise RemoteProtocolError(f"vault {what}: {key} is not hex", "the peer is misbehaving") from None
    if size is not None and raw and len(raw) != size:
        raise RemoteProtocolError(f"vault {what}: {key} has {len(raw)} bytes, not {size}", "the peer is misbehaving")
    return raw


class _Conn:
    """What both ends share: framing, the outbox, the session's data phase."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder(HANDSHAKE_LIMIT)
        self._out = bytearray()
        self.state = "start"
        self._hello = b""
        self._challenge = b""

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _send(self, frame: bytes) -> None:
        self._out += frame

    def _open(self) -> None:
        self.state = "open"
        self._decoder.limit = FRAME_LIMIT

    def close(self) -> None:
        """The peer closed the connection: a partial frame is an error."""
        self._decoder.close()

    def error(self, what: str, todo: str = "") -> None:
        """Refuse: before the session is open this ends it; after, only the request fails."""
        self._send(_enc(ERROR, {"what": what, "todo": todo}))
        if self.state != "open":
            self.state = "closed"

    # data phase, both directions
    def send_data(self, data: bytes) -> None:
        self._need_open("send data")
        for i in range(0, len(data), CHUNK):
            self._send(encode_frame(DATA, bytes(data[i : i + CHUNK]), FRAME_LIMIT))

    def send_end(self, size: int, digest: str) -> None:
        self._need_open("end an object")
        self._send(_enc(END, {"size": size, "digest": digest}))

    def _need_open(self, what: str) -> None:
        if self.state != "open":
            raise LocalProtocolError(f"cannot {what}: the vault session is {self.state}", "open a session first")

    def _data_event(self, ftype: int, payload: bytes) -> Event | None:
        if ftype == DATA:
            return Data(payload)
        if ftype == END:
            doc = _json(payload, "end")
            return End(int(doc.get("size", -1)), str(doc.get("digest", "")))
        if ftype == ERROR:
            doc = _json(payload, "error")
            return ErrorReceived(str(doc.get("what", "the vault refused")), str(doc.get("todo", "")))
        return None


class ClientConn(_Conn):
    """The calling side.  ``code`` is the verification code held (None: read-only import);
    ``new_code`` is sent sealed when ``want`` is define or forcesync."""

    def __init__(self, node: str, key: bytes, *, want: str = "session", code: bytes | None = None,
                 new_code: bytes | None = None, random_bytes: Callable[[int], bytes]) -> None:
        super().__init__()
        if want not in WANTS:
            raise LocalProtocolError(f"unknown session kind {want!r}", f"use one of {', '.join(WANTS)}")
        if (want != "session") != (new_code is not None):
            raise LocalProtocolError("a new verification code goes with define or forcesync only", "pass new_code for those")
        self.node, self.key, self.want, self.code, self.new_code = node, key, want, code, new_code
        self._nonce = random_bytes(NONCE_SIZE)
        self.mode: str | None = None

    def start(self) -> None:
        self._hello = json.dumps({"tag": VAULT_TAG, "version": VAULT_VERSION, "node": self.node, "want": self.want,
                                  "nonce": self._nonce.hex()}, separators=(",", ":")).encode()
        self._send(encode_frame(HELLO, self._hello, FRAME_LIMIT))
        self.state = "hello"

    def request(self, op: str, **args: object) -> None:
        self._need_open(f"send {op}")
        self._send(_enc(REQUEST, {"op": op, **args}))

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for fr in self._decoder.feed(data):
            if fr.type == ERROR:
                ev = self._data_event(fr.type, fr.payload)
                self.state = "closed" if self.state != "open" else self.state
                events.append(ev)  # type: ignore[arg-type]
            elif self.state == "hello" and fr.type == CHALLENGE:
                self._challenge = fr.payload
                _hex(_json(fr.payload, "challenge"), "nonce", NONCE_SIZE, "challenge")
                self._send(encode_frame(AUTH, self._auth(), FRAME_LIMIT))
                self.state = "auth"
            elif self.state == "auth" and fr.type == ACCEPT:
                doc = _json(fr.payload, "accept")
                mode = str(doc.get("mode"))
                if mode not in MODES:
                    raise RemoteProtocolError(f"vault accepted with unknown mode {mode!r}", "upgrade d3hb on both sides")
                expect = _mac(self.key, _SERVER_LABEL, _transcript(self._hello, self._challenge), mode.encode())
                if not hmac.compare_digest(expect, _hex(doc, "proof", 32, "accept")):
                    self.state = "closed"
                    raise RemoteProtocolError("the vault could not prove it knows this node's password",
                                              "check host and port: this is not the vault the node was registered on")
                self.mode = mode
                self._open()
                events.append(Accepted(mode, str(doc.get("note", ""))))
            elif self.state == "open" and fr.type == REPLY:
                events.append(Reply(_json(fr.payload, "reply")))
            elif self.state == "open" and fr.type in (DATA, END):
                events.append(self._data_event(fr.type, fr.payload))  # type: ignore[arg-type]
            else:
                self.state = "closed"
                raise RemoteProtocolError(f"unexpected vault frame type {fr.type} in state {self.state}", "the peer is not a d3hb vault of this release")
        return events

    def _auth(self) -> bytes:
        t = _transcript(self._hello, self._challenge)
        code_proof = _mac(self.code, _CODE_LABEL, t) if self.code else b""
        sealed = _xor(self.new_code, _mac(self.key, _SEAL_LABEL, t)) if self.new_code else b""
        proof = _mac(self.key, _CLIENT_LABEL, t, code_proof, sealed)
        return json.dumps({"proof": proof.hex(), "code_proof": code_proof.hex(), "sealed": sealed.hex()}).encode()


class ServerConn(_Conn):
    """The vault's side of one connection."""

    def __init__(self) -> None:
        super().__init__()
        self.node = ""
        self.want = "session"
        self._auth: dict | None = None

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for fr in self._decoder.feed(data):
            if self.state == "start" and fr.type == HELLO:
                doc = _json(fr.payload, "hello")
                if doc.get("tag") != VAULT_TAG:
                    raise RemoteProtocolError("the caller is not a d3hb vault client", "check the port: it belongs to the vault")
                self._hello = fr.payload
                self.node, self.want = str(doc.get("node", "")), str(doc.get("want", ""))
                if self.want not in WANTS:
                    raise RemoteProtocolError(f"unknown session kind {self.want!r}", "upgrade d3hb on both sides")
                _hex(doc, "nonce", NONCE_SIZE, "hello")
                self.state = "hello"
                events.append(HelloReceived(self.node, self.want, int(doc.get("version", 0))))
            elif self.state == "challenged" and fr.type == AUTH:
                self._auth = _json(fr.payload, "auth")
                self.state = "auth"
                events.append(AuthReceived())
            elif self.state == "open" and fr.type == REQUEST:
                doc = _json(fr.payload, "request")
                op = str(doc.pop("op", ""))
                events.append(RequestReceived(op, doc))
            elif self.state == "open" and fr.type in (DATA, END, ERROR):
                events.append(self._data_event(fr.type, fr.payload))  # type: ignore[arg-type]
            else:
                state, self.state = self.state, "closed"
                raise RemoteProtocolError(f"unexpected vault frame type {fr.type} in state {state}", "the peer is not a d3hb vault client of this release")
        return events

    def challenge(self, nonce: bytes) -> None:
        if self.state != "hello":
            raise LocalProtocolError("challenge before hello", "wait for the caller's hello")
        self._challenge = json.dumps({"nonce": nonce.hex()}).encode()
        self._send(encode_frame(CHALLENGE, self._challenge, FRAME_LIMIT))
        self.state = "challenged"

    def check(self, key: bytes, stored_code: bytes | None) -> AuthCheck:
        """Judge the caller's proofs against the node's password key and stored code."""
        if self.state != "auth" or self._auth is None:
            raise LocalProtocolError("no proofs to check yet", "wait for the caller's auth")
        t = _transcript(self._hello, self._challenge)
        code_proof = _hex(self._auth, "code_proof", 32, "auth")
        sealed = _hex(self._auth, "sealed", CODE_SIZE, "auth")
        ok = hmac.compare_digest(_mac(key, _CLIENT_LABEL, t, code_proof, sealed), _hex(self._auth, "proof", 32, "auth"))
        code_ok = bool(ok and stored_code and code_proof and hmac.compare_digest(_mac(stored_code, _CODE_LABEL, t), code_proof))
        new_code = _xor(sealed, _mac(key, _SEAL_LABEL, t)) if ok and sealed and self.want != "session" else None
        return AuthCheck(ok, code_ok, new_code)

    def accept(self, key: bytes, mode: str, note: str = "") -> None:
        if mode not in MODES:
            raise LocalProtocolError(f"unknown session mode {mode!r}", "rw or ro")
        proof = _mac(key, _SERVER_LABEL, _transcript(self._hello, self._challenge), mode.encode())
        self._send(_enc(ACCEPT, {"mode": mode, "proof": proof.hex(), "note": note}))
        self._open()

    def reply(self, **fields: object) -> None:
        self._need_open("reply")
        self._send(_enc(REPLY, fields))
