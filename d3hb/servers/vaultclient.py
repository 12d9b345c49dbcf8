"""A blocking session with a vault: the source's (or an importing system's) side.

One :class:`VaultSession` is one TCP connection driving a
:class:`~d3hb.protocol.vault.ClientConn`.  Tape operations run in the
calling process and are sequential, so plain blocking sockets with
time-outs are enough here.  A connection that breaks raises
:class:`LinkLost` (the caller may retry the volume); a refusal by the vault
raises :class:`VaultRefused` with the vault's own words.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from typing import BinaryIO

from d3hb.errors import Refused, RemoteProtocolError, TapeError
from d3hb.protocol import vault as vp

TIMEOUT = 30.0


class LinkLost(TapeError):
    """The connection to the vault broke or timed out."""


class VaultRefused(Refused):
    """The vault said no (its message, and what to do)."""


class VaultSession:
    def __init__(self, host: str, port: int, node: str, key: bytes, *, want: str = "session",
                 code: bytes | None = None, new_code: bytes | None = None, timeout: float = TIMEOUT) -> None:
        self.where = f"vault {host}:{port}"
        self.conn = vp.ClientConn(node, key, want=want, code=code, new_code=new_code, random_bytes=os.urandom)
        self._events: list[vp.Event] = []
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise LinkLost(f"cannot reach the {self.where} ({exc.strerror or exc})",
                           "check that 'vault serve' runs on the vault system, and the host and port") from None
        try:
            self.conn.start()
            self._flush()
            ev = self._next()
            if isinstance(ev, vp.ErrorReceived):
                raise VaultRefused(ev.what, ev.todo or None)
            if not isinstance(ev, vp.Accepted):
                raise RemoteProtocolError(f"the {self.where} answered {type(ev).__name__} to the handshake", "check the port: it must be the vault's")
            self.mode, self.note = ev.mode, ev.note
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------
    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> VaultSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        try:
            if data:
                self.sock.sendall(data)
        except OSError as exc:
            raise LinkLost(f"the connection to the {self.where} broke ({exc.strerror or exc})", "retry; check the network") from None

    def _next(self) -> vp.Event:
        while not self._events:
            try:
                data = self.sock.recv(vp.CHUNK)
            except OSError as exc:
                raise LinkLost(f"the connection to the {self.where} broke ({exc.strerror or type(exc).__name__})", "retry; check the network") from None
            if not data:
                raise LinkLost(f"the {self.where} closed the connection", "retry; see the vault's server.log if it persists")
            self._events += self.conn.feed(data)
            self._flush()
        return self._events.pop(0)

    def _reply(self) -> dict:
        ev = self._next()
        if isinstance(ev, vp.ErrorReceived):
            raise VaultRefused(ev.what, ev.todo or None)
        if not isinstance(ev, vp.Reply):
            raise RemoteProtocolError(f"the {self.where} sent {type(ev).__name__} where a reply belongs", "upgrade d3hb on both systems")
        return ev.fields

    # -- requests ---------------------------------------------------------
    def list(self) -> list[dict]:
        self.conn.request("list")
        self._flush()
        return list(self._reply().get("objects", []))

    def mark(self, names: list[str], status: str) -> int:
        self.conn.request("mark", names=names, status=status)
        self._flush()
        return int(self._reply().get("count", 0))

    def put(self, name: str, stream: BinaryIO, *, vset: str, part: int, kind: str, created: float) -> tuple[int, str]:
        """Store one object from ``stream``; returns (size, sha256) as the vault confirmed them."""
        self.conn.request("put", name=name, vset=vset, part=part, kind=kind, created=created)
        self._flush()
        self._reply()  # ready, or the vault's refusal (read-only, no archive retention)
        sha, size = hashlib.sha256(), 0
        while chunk := stream.read(vp.CHUNK):
            sha.update(chunk)
            size += len(chunk)
            self.conn.send_data(chunk)
            self._flush()
        self.conn.send_end(size, sha.hexdigest())
        self._flush()
        got = self._reply()
        if got.get("size") != size or got.get("digest") != sha.hexdigest():
            raise TapeError(f"the vault confirmed volume {name} with other attributes than sent", "retry the operation; audit the vault")
        return size, sha.hexdigest()

    def get(self, name: str, offset: int = 0) -> Iterator[bytes]:
        """The object's bytes from ``offset``; the end is checked against its size."""
        self.conn.request("get", name=name, offset=offset)
        self._flush()
        info = self._reply()
        got = offset
        while True:
            ev = self._next()
            if isinstance(ev, vp.Data):
                got += len(ev.data)
                yield ev.data
            elif isinstance(ev, vp.End):
                if got != ev.size or ev.size != info.get("size"):
                    raise TapeError(f"volume {name} ended after {got} bytes, the vault lists {ev.size}", "audit the volume")
                return
            elif isinstance(ev, vp.ErrorReceived):
                raise VaultRefused(ev.what, ev.todo or None)
            else:
                raise RemoteProtocolError(f"the {self.where} sent {type(ev).__name__} in the middle of volume {name}", "upgrade d3hb on both systems")
