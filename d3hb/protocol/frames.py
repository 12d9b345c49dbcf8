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

import struct
import zlib
from dataclasses import dataclass

from d3hb.errors import RemoteProtocolError

MAGIC = b"\xd3\x4b"
FRAME_VERSION = 1
HEADER = struct.Struct(">2sBBII")
DEFAULT_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes


def _crc(ftype: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">BI", ftype, len(payload))))


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
    """Accumulates bytes and yields whole frames."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._dead: RemoteProtocolError | None = None
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[Frame]:
        if self._dead is not None:
            raise self._dead
        self.bytes_in += len(data)
        # Frames are cut straight out of what arrived when nothing is held back
        # (the common case), and each payload is copied once: a tape link moves
        # 1 MiB frames, where every extra copy shows in the throughput.
        if self._buf:
            self._buf += data
            src = self._buf
        else:
            src = data
        frames: list[Frame] = []
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
        return len(self._buf)

    def close(self) -> None:
        """The peer closed the stream: an incomplete frame is an error."""
        if self._dead is not None:
            raise self._dead
        if self._buf:
            self._dead = RemoteProtocolError(
                f"connection closed in the middle of a frame ({len(self._buf)} bytes pending)", "the sender will resend"
            )
            raise self._dead
