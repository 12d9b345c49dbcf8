"""Length-prefixed, checksummed frames: the envelope of every d3hb link.

Sans-IO: bytes go in, :class:`Frame` objects come out.  Both the replication
link and the tape-socket link use this envelope; what a frame *means* is
decided by the protocol above it.

Layout (big-endian), 12 bytes of header then the payload::

    magic   2  b"\\xd3\\x4b"
    version 1  FRAME_VERSION
    type    1  meaning chosen by the protocol above
    length  4  payload length, checked against the limit *before* buffering
    crc32   4  over type, length and payload: a flipped bit anywhere is caught

A malformed stream raises :class:`RemoteProtocolError` naming what was wrong;
after that the decoder is dead (the peer cannot be resynchronised safely).
"""

from __future__ import annotations

import mmap
import struct
import weakref
from dataclasses import dataclass

from d3hb.errors import RemoteProtocolError
from d3hb.protocol.crc import crc32

MAGIC = b"\xd3\x4b"
FRAME_VERSION = 1
HEADER = struct.Struct(">2sBBII")
DEFAULT_LIMIT = 4 * 1024 * 1024
SPARE_BUFFERS = 4  # released big-payload buffers kept for reuse (lend mode)


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes


def _crc(ftype: int, payload: bytes) -> int:
    return crc32(payload, crc32(struct.pack(">BI", ftype, len(payload))))


def frame_header(ftype: int, payload: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """The 12 header bytes of the frame carrying ``payload`` (written ahead of it, unjoined)."""
    if not 0 <= ftype <= 255:
        raise ValueError(f"frame type {ftype} out of range")
    if len(payload) > limit:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds the limit of {limit}")
    return HEADER.pack(MAGIC, FRAME_VERSION, ftype, len(payload), _crc(ftype, payload))


def encode_frame(ftype: int, payload: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    return frame_header(ftype, payload, limit) + payload


class FrameDecoder:
    """Accumulates bytes and yields whole frames.

    ``lend``: payloads of at least this many bytes are assembled in a buffer
    of their own and handed out as a ``memoryview`` of it; while one is being
    filled, :meth:`get_buffer` lends its empty part, so a receiver reading
    with ``recv_into`` (asyncio's BufferedProtocol) puts the bytes in place
    and no copy is made in this process.  Off by default: only a link whose
    big frames are opaque data (the tape-socket) wants mutable payloads.

    In lend mode :meth:`get_buffer` never lends past the end of the frame in
    hand, so a big payload is received from its first byte into its own
    buffer; those buffers are page-aligned (anonymous mmap), because the
    kernel's copy into a misaligned destination costs about three times the
    CPU.  A caller done with a big payload may hand it back with
    :meth:`release` so that later frames reuse its buffer (no allocation, no
    page faults, no zeroing per frame); one never released is simply freed.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, *, lend: int | None = None) -> None:
        self.limit = limit
        self.lend = lend
        self._buf = bytearray()
        self._dead: RemoteProtocolError | None = None
        self.bytes_in = 0
        # The big frame being filled: its header fields, payload buffer, bytes in it.
        self._big: tuple[int, int] | None = None
        self._big_buf: bytearray | memoryview = bytearray()
        self._big_fill = 0
        self._scratch = memoryview(bytearray(256 * 1024)) if lend else None
        self._spare: list[mmap.mmap] = []
        self._made: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()  # only these may come back

    def _big_buffer(self, length: int) -> memoryview:
        if self._spare:
            area = self._spare.pop()
        else:
            area = mmap.mmap(-1, max(self.limit, 1))
            self._made.add(area)
        return memoryview(area)[:length]

    def release(self, payload: bytes | bytearray | memoryview) -> None:
        """The caller is done with a big payload handed out in lend mode: reuse its buffer.

        Call it once per payload, after its last use; anything else is ignored.
        """
        area = payload.obj if isinstance(payload, memoryview) else None
        if not isinstance(area, mmap.mmap) or area not in self._made or len(self._spare) >= SPARE_BUFFERS or any(a is area for a in self._spare):
            return
        try:
            payload.release()  # type: ignore[union-attr]
        except BufferError:
            return  # still exported somewhere: in use, not to be written over
        self._spare.append(area)

    def get_buffer(self) -> memoryview:
        """Where the next bytes received may be written; then call :meth:`buffer_updated`."""
        if self._big is not None:
            return memoryview(self._big_buf)[self._big_fill :]
        if self._scratch is None:
            self._scratch = memoryview(bytearray(256 * 1024))
        if self.lend is None:
            return self._scratch
        # Up to the end of the frame in hand and no further (its header first).
        held = len(self._buf)
        want = HEADER.size - held
        if want <= 0:
            want = HEADER.size + HEADER.unpack_from(self._buf)[3] - held
        return self._scratch[: max(1, min(want, len(self._scratch)))]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`."""
        if self._big is not None:
            if self._dead is not None:
                raise self._dead
            self.bytes_in += nbytes
            self._big_fill += nbytes
            frame = self._big_done()
            return [frame] if frame is not None else []
        return self.feed(self._scratch[:nbytes])  # type: ignore[index]

    def _big_done(self) -> Frame | None:
        ftype, crc = self._big  # type: ignore[misc]
        if self._big_fill < len(self._big_buf):
            return None
        payload, self._big, self._big_buf, self._big_fill = self._big_buf, None, bytearray(), 0
        if _crc(ftype, payload) != crc:
            self._dead = RemoteProtocolError(f"frame checksum mismatch (type {ftype}, {len(payload)} bytes)", "the link corrupts data; check the network")
            raise self._dead
        return Frame(ftype, payload)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> list[Frame]:
        if self._dead is not None:
            raise self._dead
        self.bytes_in += len(data)
        frames: list[Frame] = []
        if self._big is not None:
            take = min(len(data), len(self._big_buf) - self._big_fill)
            self._big_buf[self._big_fill : self._big_fill + take] = memoryview(data)[:take]
            self._big_fill += take
            frame = self._big_done()
            if frame is None:
                return frames
            frames.append(frame)
            data = memoryview(data)[take:]
        # Frames are cut straight out of what arrived when nothing is held back
        # (the common case), and each payload is copied once: a tape link moves
        # 1 MiB frames, where every extra copy shows in the throughput.
        if self._buf:
            self._buf += data
            src = self._buf
        else:
            src = data
        pos = 0
        view = memoryview(src)
        try:
            try:
                while len(src) - pos >= HEADER.size:
                    magic, version, ftype, length, crc = HEADER.unpack_from(src, pos)
                    if magic != MAGIC:
                        raise RemoteProtocolError(f"bad frame magic {bytes(magic).hex()}", "the peer is not a d3hb server or the stream is corrupt")
                    if version != FRAME_VERSION:
                        raise RemoteProtocolError(f"frame version {version} not supported (this side speaks {FRAME_VERSION})", "upgrade d3hb on both sides to the same release")
                    if length > self.limit:
                        raise RemoteProtocolError(f"frame of {length} bytes exceeds the limit of {self.limit}", "the peer is misbehaving; check its version")
                    start = pos + HEADER.size
                    end = start + length
                    if len(src) < end:
                        if self.lend is not None and length >= self.lend:
                            # The rest of what arrived is the start of a big payload:
                            # it moves to the payload's own buffer, which is lent from now on.
                            self._big, self._big_buf = (ftype, crc), self._big_buffer(length)
                            self._big_fill = len(src) - start
                            self._big_buf[: self._big_fill] = view[start:]
                            pos = len(src)
                        break
                    payload = view[start:end].tobytes()
                    if _crc(ftype, payload) != crc:
                        raise RemoteProtocolError(f"frame checksum mismatch (type {ftype}, {length} bytes)", "the link corrupts data; check the network")
                    frames.append(Frame(ftype, payload))
                    pos = end
            finally:
                view.release()  # before the bytearray is resized below
                if src is self._buf:
                    del self._buf[:pos]
                elif pos < len(data):
                    self._buf += memoryview(data)[pos:]
        except RemoteProtocolError as exc:
            self._dead = exc
            if not frames:
                raise
            # Deliver the good frames that came before the bad bytes (a peer's
            # Error frame may be among them); the error is raised on the next call.
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf) + (HEADER.size + self._big_fill if self._big is not None else 0)

    def close(self) -> None:
        """The peer closed the stream: an incomplete frame is an error."""
        if self._dead is not None:
            raise self._dead
        if self.pending:
            self._dead = RemoteProtocolError(
                f"connection closed in the middle of a frame ({self.pending} bytes pending)", "the sender will resend"
            )
            raise self._dead
