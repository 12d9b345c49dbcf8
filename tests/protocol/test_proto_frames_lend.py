"""Lend mode of the frame decoder: reads stop at frame boundaries, big payloads land in
page-aligned buffers, and a released buffer is reused without disturbing payloads still held."""

from __future__ import annotations

import ctypes
import mmap
import random

from d3hb.protocol.frames import HEADER, SPARE_BUFFERS, FrameDecoder, encode_frame

LEND = 64 * 1024
LIMIT = 1024 * 1024 + 1024


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def receive(dec: FrameDecoder, wire: bytes, rnd: random.Random, *, release: bool) -> tuple[list, list[int]]:
    """recv_into-style delivery; returns the frames and every lent buffer's size."""
    frames, sizes, pos = [], [], 0
    while pos < len(wire):
        buf = dec.get_buffer()
        sizes.append(len(buf))
        n = min(len(buf), rnd.randint(1, 400_000), len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        pos += n
        for f in dec.buffer_updated(n):
            frames.append((f.type, bytes(f.payload)))
            if release:
                dec.release(f.payload)
    return frames, sizes


def test_a_lending_decoder_never_lends_past_the_frame_in_hand() -> None:
    rnd = random.Random(7)
    sent = [(1, b"x" * 5), (2, rnd.randbytes(LIMIT - 1024)), (3, b""), (2, rnd.randbytes(LEND)), (4, b"y" * 300)]
    wire = b"".join(encode_frame(t, p, LIMIT) for t, p in sent)
    dec = FrameDecoder(LIMIT, lend=LEND)
    frames, sizes = receive(dec, wire, rnd, release=True)
    assert frames == sent
    # The first lend is a header's worth: nothing of the next frame can be read with it.
    assert sizes[0] == HEADER.size
    assert dec.pending == 0


def test_big_payloads_are_page_aligned_and_their_buffers_reused_once_released() -> None:
    rnd = random.Random(3)
    chunks = [rnd.randbytes(rnd.choice([LEND, 500_000, LIMIT - 1024])) for _ in range(SPARE_BUFFERS + 6)]
    dec = FrameDecoder(LIMIT, lend=LEND)
    held, areas = [], []
    for i, c in enumerate(chunks):
        got = []
        wire = encode_frame(2, c, LIMIT)
        pos = 0
        while pos < len(wire):
            buf = dec.get_buffer()
            n = min(len(buf), len(wire) - pos)
            buf[:n] = wire[pos : pos + n]
            pos += n
            got += dec.buffer_updated(n)
        (frame,) = got
        payload = frame.payload
        assert isinstance(payload, memoryview) and address(payload) % mmap.PAGESIZE == 0
        assert bytes(payload) == c
        areas.append(payload.obj)
        if i % 2:
            dec.release(payload)  # every other one given back: its buffer serves the next frame
            assert areas[-1] is not None
        else:
            held.append((payload, c))
    # Buffers released were reused; payloads held were never written over by later frames.
    assert len({id(a) for a in areas}) < len(areas)
    assert all(bytes(p) == c for p, c in held)


def test_release_ignores_what_it_did_not_hand_out() -> None:
    dec = FrameDecoder(LIMIT, lend=LEND)
    for foreign in (b"abc", bytearray(10), memoryview(bytearray(10)), memoryview(mmap.mmap(-1, 4096))):
        dec.release(foreign)  # not a payload of this decoder's: nothing happens, nothing breaks
    other = FrameDecoder(LIMIT, lend=LEND)
    big = random.Random(2).randbytes(LIMIT - 1024)
    wire = encode_frame(2, big, LIMIT)
    # Another decoder's payload is not this one's to reuse either.
    pos, got = 0, []
    while pos < len(wire):
        buf = other.get_buffer()
        n = min(len(buf), len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        pos += n
        got += other.buffer_updated(n)
    dec.release(got[0].payload)
    wire = encode_frame(5, b"small", LIMIT) + encode_frame(2, big, LIMIT)
    frames, _ = receive(dec, wire, random.Random(1), release=False)
    assert frames == [(5, b"small"), (2, big)]
    assert bytes(got[0].payload) == big
