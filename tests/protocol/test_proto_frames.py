"""The frame envelope: round trip, size limit before buffering, checksums, splits."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d3hb.errors import RemoteProtocolError
from d3hb.protocol.frames import DEFAULT_LIMIT, FRAME_VERSION, HEADER, MAGIC, Frame, FrameDecoder, encode_frame

FRAMES = [Frame(1, b"hello"), Frame(0, b""), Frame(255, bytes(range(256)) * 3), Frame(7, b"\xfe\xfd\xfc")]
WIRE = b"".join(encode_frame(f.type, f.payload) for f in FRAMES)


def test_round_trip_in_one_feed() -> None:
    dec = FrameDecoder()
    assert dec.feed(WIRE) == FRAMES
    assert dec.pending == 0
    assert dec.bytes_in == len(WIRE)
    dec.close()  # a clean end: no error


def test_header_layout_is_as_documented() -> None:
    out = encode_frame(9, b"abc")
    magic, version, ftype, length, _crc = HEADER.unpack_from(out)
    assert (magic, version, ftype, length) == (MAGIC, FRAME_VERSION, 9, 3)
    assert out[HEADER.size :] == b"abc"


def test_one_byte_at_a_time_gives_the_same_frames() -> None:
    dec = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(WIRE)):
        got += dec.feed(WIRE[i : i + 1])
    assert got == FRAMES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=6), st.randoms(use_true_random=False))
def test_random_splits_give_the_same_frames(frames: list[tuple[int, bytes]], rnd: random.Random) -> None:
    wire = b"".join(encode_frame(t, p) for t, p in frames)
    dec = FrameDecoder()
    got: list[Frame] = []
    pos = 0
    while pos < len(wire):
        step = rnd.randint(1, 40)
        got += dec.feed(wire[pos : pos + step])
        pos += step
    assert got == [Frame(t, p) for t, p in frames]
    assert dec.pending == 0


def test_a_header_claiming_3_gib_fails_at_once() -> None:
    dec = FrameDecoder()
    header = HEADER.pack(MAGIC, FRAME_VERSION, 1, 3 * 1024**3, 0)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        dec.feed(header)  # the header alone: nothing of the payload was needed or buffered
    assert dec.pending == len(header)


def test_limit_is_inclusive_and_applies_to_encoding_too() -> None:
    dec = FrameDecoder(limit=10)
    assert dec.feed(encode_frame(1, b"x" * 10, limit=10)) == [Frame(1, b"x" * 10)]
    with pytest.raises(ValueError):
        encode_frame(1, b"x" * 11, limit=10)
    with pytest.raises(RemoteProtocolError):
        dec.feed(encode_frame(1, b"x" * 11, limit=DEFAULT_LIMIT)[: HEADER.size])
    with pytest.raises(ValueError):
        encode_frame(256, b"")


def test_every_single_byte_flip_is_detected() -> None:
    frame = encode_frame(3, b"a payload of some length")
    for pos in range(len(frame)):
        for xor in (0x01, 0x80, 0xFF):
            bad = bytearray(frame)
            bad[pos] ^= xor
            dec = FrameDecoder()
            with pytest.raises(RemoteProtocolError):
                # A flip that makes the length longer leaves the decoder waiting: end of file then fails.
                assert dec.feed(bytes(bad)) == []
                dec.close()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"XX" + encode_frame(1, b"abc")[2:], "bad frame magic"),
        (MAGIC + bytes([FRAME_VERSION + 1]) + encode_frame(1, b"abc")[3:], "frame version"),
    ],
)
def test_wrong_magic_or_version_is_named(wire: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        FrameDecoder().feed(wire)


def test_end_of_file_mid_frame_is_an_error() -> None:
    dec = FrameDecoder()
    frame = encode_frame(1, b"abcdef")
    assert dec.feed(frame[:-2]) == []
    with pytest.raises(RemoteProtocolError, match="in the middle of a frame"):
        dec.close()


def test_good_frames_before_a_bad_one_are_delivered_then_it_stays_dead() -> None:
    good = encode_frame(1, b"first")
    bad = bytearray(encode_frame(2, b"second"))
    bad[-1] ^= 1
    dec = FrameDecoder()
    assert dec.feed(good + bytes(bad)) == [Frame(1, b"first")]
    with pytest.raises(RemoteProtocolError, match="checksum"):
        dec.feed(b"")
    with pytest.raises(RemoteProtocolError, match="checksum"):
        dec.feed(encode_frame(1, b"more"))  # dead: even good bytes are refused
    with pytest.raises(RemoteProtocolError):
        dec.close()


def test_crc_covers_the_type_and_the_length() -> None:
    frame = bytearray(encode_frame(4, b"abcd"))
    frame[3] = 5  # another type, same payload
    with pytest.raises(RemoteProtocolError, match="checksum"):
        FrameDecoder().feed(bytes(frame))
    shorter = bytearray(encode_frame(4, b"abcd"))
    struct.pack_into(">I", shorter, 4, 3)  # claim 3 bytes: the fourth then looks like the next header
    with pytest.raises(RemoteProtocolError, match="checksum"):
        FrameDecoder().feed(bytes(shorter))
