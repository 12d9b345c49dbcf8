"""The output server's reusable frame buffer: the chunk part starts on a page boundary."""

from __future__ import annotations

import ctypes
import mmap
import os

from d3hb.protocol import tapesock as ts
from d3hb.servers.tsbase import aligned_frame


def test_the_chunk_behind_the_header_room_is_page_aligned_and_reads_from_a_pipe_land_there() -> None:
    frame = aligned_frame(ts.FRAME_ROOM, ts.MAX_CHUNK)
    assert len(frame) == ts.FRAME_ROOM + ts.MAX_CHUNK
    chunk = frame[ts.FRAME_ROOM :]
    assert ctypes.addressof(ctypes.c_char.from_buffer(chunk)) % mmap.PAGESIZE == 0
    r, w = os.pipe()
    try:
        os.write(w, b"tape bytes")
        n = os.readv(r, [chunk])
    finally:
        os.close(r)
        os.close(w)
    assert bytes(chunk[:n]) == b"tape bytes"
