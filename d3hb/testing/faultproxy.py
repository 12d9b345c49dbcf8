"""A TCP fault proxy for tests: master -> proxy -> slave, with faults on command.

The proxy listens on 127.0.0.1 (or a given address) in threads of the test
process and forwards every connection to the upstream address.  The test
turns faults on and off while traffic flows:

- ``delay``: every chunk waits this long before it is forwarded;
- ``stall(seconds)``: nothing is forwarded, either way, for that long (a
  peer that stops reading: the sender's buffers fill, its time-outs fire);
- ``truncate()``: the next chunk (either way) is cut in half, then both
  connections are closed: the receiver sees a frame end early;
- ``reset()``: every open connection is closed with an RST;
- ``flip(direction)``: one byte of the next chunk going that way
  (``"up"``: client to upstream, ``"down"``: back) is inverted, the last
  byte, which is inside a frame's payload or checksum: the receiver must
  detect it (frames carry a CRC-32).

``counts`` says how many of each fault actually hit traffic.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
import time
from collections import Counter

logger = logging.getLogger(__name__)
UP, DOWN = "up", "down"
CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.delay = 0.0
        self.counts: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._stall_until = 0.0
        self._flip = {UP: 0, DOWN: 0}
        self._truncate = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._thread.start()

    # -- faults ------------------------------------------------------------------------
    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = time.monotonic() + seconds
            self.counts["stall"] += 1

    def flip(self, direction: str = UP, times: int = 1) -> None:
        with self._lock:
            self._flip[direction] += times

    def truncate(self) -> None:
        with self._lock:
            self._truncate += 1

    def reset(self) -> int:
        """RST every open connection; returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                _rst(s)
        if pairs:
            self.counts["reset"] += 1
        return len(pairs)

    def clear(self) -> None:
        """No more faults from now on (pending flips and truncations are dropped)."""
        with self._lock:
            self.delay = 0.0
            self._stall_until = 0.0
            self._flip = {UP: 0, DOWN: 0}
            self._truncate = 0

    @property
    def pending(self) -> int:
        """Flips and truncations asked for that have not hit traffic yet."""
        with self._lock:
            return self._flip[UP] + self._flip[DOWN] + self._truncate

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.reset()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding --------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError as exc:
                logger.debug("upstream %s: %s", self.upstream, exc)
                _rst(client)  # the caller sees what it would see calling a dead slave
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            for src, dst, direction in ((client, upstream, UP), (upstream, client, DOWN)):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not self._closing.is_set():
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                while time.monotonic() < self._stall_until and not self._closing.is_set():
                    time.sleep(0.02)
                if self.delay:
                    time.sleep(self.delay)
                    self.counts["delay"] += 1
                cut = False
                with self._lock:
                    if self._flip[direction] and data:
                        self._flip[direction] -= 1
                        data = data[:-1] + bytes([data[-1] ^ 0xFF])
                        self.counts["flip"] += 1
                    if self._truncate and len(data) > 1:
                        self._truncate -= 1
                        data = data[: len(data) // 2]
                        cut = True
                        self.counts["truncate"] += 1
                dst.sendall(data)
                if cut:
                    self._drop(src, dst, rst=False)
                    return
        except (OSError, ValueError):  # ValueError: the other pump closed the socket under select()
            pass
        self._drop(src, dst, rst=True)

    def _drop(self, a: socket.socket, b: socket.socket, *, rst: bool) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if a not in p]
        for s in (a, b):
            if rst:
                _rst(s)
            else:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()


def _rst(s: socket.socket) -> None:
    # SO_LINGER with a zero time-out makes close() send an RST instead of a FIN.
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
