"""The tape-socket link: handshake, credit, end of tape, check, shutdown and failures."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d3hb.errors import LocalProtocolError, RemoteProtocolError
from d3hb.protocol.frames import encode_frame
from d3hb.protocol.tapesock import (
    FRAME_ROOM,
    MAX_CHUNK,
    MAX_CREDIT,
    NEED_DATA,
    Bye,
    Check,
    CheckReply,
    ConnectionClosed,
    Credit,
    Data,
    EndOfTape,
    EndOfTapeAck,
    Error,
    Hello,
    HelloReply,
    Shutdown,
    ShutdownAck,
    State,
    TapeLink,
    clock_offset,
)

SERVER = "ssave"


def drain(link: TapeLink) -> list:
    out = []
    while (ev := link.next_event()) is not NEED_DATA:
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            break
    return out


def deliver(src: TapeLink, dst: TapeLink, *events) -> list:
    """Send events from src, feed the bytes to dst, return what dst makes of them."""
    wire = b"".join(src.send(e) for e in events)
    if wire:  # receive_data(b"") would mean the peer closed
        dst.receive_data(wire)
    return drain(dst)


def connected(credit: int = 4) -> tuple[TapeLink, TapeLink]:
    out, inp = TapeLink("output", SERVER), TapeLink("input", SERVER)
    assert deliver(out, inp, Hello(SERVER, sent_at=100.0)) == [Hello(SERVER, "output", 1, 100.0)]
    assert deliver(inp, out, HelloReply(SERVER, sent_at=103.0), Credit(credit)) == [HelloReply(SERVER, "input", 1, 103.0), Credit(credit)]
    assert out.state is inp.state is State.CONNECTED
    return out, inp


# -- a whole conversation, however the bytes are cut ----------------------


CONVERSATION = [
    ("out", Hello(SERVER, sent_at=None)),
    ("in", HelloReply(SERVER)),
    ("in", Credit(3)),
    ("out", Data(b"\x00" * 10)),
    ("out", Data(bytes(range(256)) * 256)),  # a full 64 KiB chunk
    ("out", EndOfTape()),
    ("in", EndOfTapeAck()),
    ("in", Check(7)),
    ("out", CheckReply(7, "Reading pipe", "tape 2")),
    ("out", Data(b"second tape")),
    ("out", EndOfTape()),
    ("in", Error("pipe /dev/pipein: broken pipe")),
]


def run_conversation(split) -> tuple[list, list]:
    links = {"out": TapeLink("output", SERVER), "in": TapeLink("input", SERVER)}
    other = {"out": "in", "in": "out"}
    got: dict[str, list] = {"out": [], "in": []}
    for who, ev in CONVERSATION:
        wire = links[who].send(ev)
        dst = other[who]
        for piece in split(wire):
            links[dst].receive_data(piece)
            got[dst] += drain(links[dst])
    return got["in"], got["out"]


def test_conversation_byte_at_a_time() -> None:
    to_in, to_out = run_conversation(lambda w: [w[i : i + 1] for i in range(len(w))])
    assert to_in == [e for who, e in CONVERSATION if who == "out"]
    assert to_out == [e for who, e in CONVERSATION if who == "in"]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_conversation_random_splits(seed: int) -> None:
    rng = random.Random(seed)

    def split(w: bytes) -> list[bytes]:
        cuts = sorted(rng.sample(range(1, len(w)), min(len(w) - 1, rng.randrange(0, 6))))
        return [w[a:b] for a, b in zip([0, *cuts], [*cuts, len(w)])]

    to_in, to_out = run_conversation(split)
    assert to_in == [e for who, e in CONVERSATION if who == "out"]
    assert to_out == [e for who, e in CONVERSATION if who == "in"]


# -- handshake ---------------------------------------------------------------


def test_data_is_sent_in_two_parts_and_decoded_from_a_reused_buffer() -> None:
    """The servers' hot path: the chunk is written after its header without a join, and the
    receiver may hand in a view of a buffer it refills at once (frames must not share it)."""
    out, inp = connected(credit=8)
    twin, _ = connected(credit=8)
    chunks = [bytes([i]) * (MAX_CHUNK - i) for i in range(3)]
    wire = bytearray()
    for c in chunks:
        parts = out.send_parts(Data(c))
        assert len(parts) == 2 and parts[1] is c
        assert b"".join(parts) == twin.send(Data(c))
        wire += b"".join(parts)
    # The output server reads each chunk behind room for its header and sends the frame from there.
    room = bytearray(FRAME_ROOM + MAX_CHUNK)
    room[FRAME_ROOM : FRAME_ROOM + 5] = b"fifth"
    frame = out.send_in_place(memoryview(room), 5)
    assert bytes(frame) == twin.send(Data(b"fifth")) and out.credit == twin.credit
    wire += frame
    chunks.append(b"fifth")
    buf = bytearray(100_003)  # an odd size: frames straddle the refills
    got = []
    for pos in range(0, len(wire), len(buf)):
        n = len(wire[pos : pos + len(buf)])
        buf[:n] = wire[pos : pos + n]
        inp.receive_data(memoryview(buf)[:n])
        got += drain(inp)
        buf[:] = b"\xee" * len(buf)  # overwritten before the frames are used
    assert [e.data for e in got] == chunks


def _recv_into(link: TapeLink, wire: bytes, rnd: random.Random) -> list:
    """Deliver ``wire`` as a receiver using recv_into does: into the buffers the link lends."""
    got, pos = [], 0
    while pos < len(wire):
        buf = link.get_buffer()
        n = min(len(buf), rnd.randint(1, 300_000), len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        link.buffer_updated(n)
        pos += n
        got += drain(link)
    return got


@pytest.mark.parametrize("seed", range(5))
def test_chunks_received_in_place_are_those_sent(seed: int) -> None:
    rnd = random.Random(seed)
    out, inp = connected(credit=8)
    chunks = [rnd.randbytes(rnd.choice([1, 100, 65535, 65536, 70_000, MAX_CHUNK])) for _ in range(8)]
    wire = b"".join(out.send(Data(c)) for c in chunks) + out.send(EndOfTape())
    before = inp.bytes_received
    got = _recv_into(inp, wire, rnd)
    assert [bytes(e.data) for e in got[:-1]] == chunks and isinstance(got[-1], EndOfTape)
    assert inp.bytes_received - before == len(wire)


def test_a_flipped_byte_in_a_chunk_received_in_place_is_caught() -> None:
    out, inp = connected(credit=2)
    wire = bytearray(out.send(Data(b"\x07" * 500_000)))
    wire[400_000] ^= 0x10
    with pytest.raises(RemoteProtocolError, match="checksum"):
        _recv_into(inp, bytes(wire), random.Random(1))


def test_the_connection_closed_in_the_middle_of_a_chunk_received_in_place() -> None:
    out, inp = connected(credit=2)
    wire = out.send(Data(b"\x01" * 300_000))
    assert _recv_into(inp, wire[:200_000], random.Random(2)) == []
    inp.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        inp.next_event()


def test_only_the_output_server_opens() -> None:
    inp = TapeLink("input", SERVER)
    with pytest.raises(LocalProtocolError):
        inp.send(Hello(SERVER, role="input"))
    with pytest.raises(LocalProtocolError):
        TapeLink("output", SERVER).send(Hello("other"))
    out = TapeLink("output", SERVER)
    with pytest.raises(LocalProtocolError):
        out.send(Data(b"x"))


def test_hello_for_another_server_is_refused_and_reported() -> None:
    out, inp = TapeLink("output", "ssave"), TapeLink("input", "default")
    inp.receive_data(out.send(Hello("ssave")))
    with pytest.raises(RemoteProtocolError, match="server 'ssave' reached server 'default'"):
        inp.next_event()
    assert inp.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        inp.next_event()  # stays dead
    # The refusing side can still say why, and the caller hears it.
    assert deliver(inp, out, Error("no server ssave on this port")) == [Error("no server ssave on this port")]
    assert out.state is inp.state is State.CLOSED


def hello_frame(version: int = 1, tag: bytes = b"D3TS", role: int = 0) -> bytes:
    return encode_frame(1, struct.pack(">4sHBBd", tag, version, role, 0, 0.0) + struct.pack(">H", len(SERVER)) + SERVER.encode())


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (hello_frame(version=2), "tape-socket version 2"),
        (hello_frame(tag=b"D3HB"), "not a tape-socket server"),
        (hello_frame(role=1), "an input server called the input server"),
        (encode_frame(99, b""), "unknown tape-socket message type 99"),
    ],
)
def test_bad_greetings(frame: bytes, message: str) -> None:
    inp = TapeLink("input", SERVER)
    inp.receive_data(frame)
    with pytest.raises(RemoteProtocolError, match=message):
        inp.next_event()


def test_clock_offset() -> None:
    # Sent at 100, the peer stamped 153, received at 102: the peer is 52 s ahead.
    assert clock_offset(100.0, 153.0, 102.0) == 52.0


# -- credit ------------------------------------------------------------------


def test_no_data_without_credit() -> None:
    out, inp = connected(credit=2)
    deliver(out, inp, Data(b"a"), Data(b"b"))
    with pytest.raises(LocalProtocolError, match="no credit"):
        out.send(Data(b"c"))
    assert out.state is State.CONNECTED  # nothing was sent; the link goes on
    deliver(inp, out, Credit(1))
    assert deliver(out, inp, Data(b"c")) == [Data(b"c")]


def test_data_beyond_credit_from_the_peer_is_refused() -> None:
    out, inp = connected(credit=1)
    inp.receive_data(out.send(Data(b"ok")) + encode_frame(3, b"rogue"))
    assert inp.next_event() == Data(b"ok")
    with pytest.raises(RemoteProtocolError, match="beyond the credit"):
        inp.next_event()


def test_chunk_size_limits() -> None:
    out, inp = connected()
    with pytest.raises(LocalProtocolError):
        out.send(Data(b"x" * (MAX_CHUNK + 1)))
    with pytest.raises(LocalProtocolError):
        out.send(Data(b""))
    assert deliver(out, inp, Data(b"x" * MAX_CHUNK)) == [Data(b"x" * MAX_CHUNK)]
    inp.receive_data(encode_frame(3, b"x" * (MAX_CHUNK + 1)))
    with pytest.raises(RemoteProtocolError, match="data chunk"):
        inp.next_event()


def test_credit_is_bounded() -> None:
    out, inp = connected(credit=MAX_CREDIT - 1)
    with pytest.raises(LocalProtocolError):
        inp.send(Credit(2))
    with pytest.raises(LocalProtocolError):
        inp.send(Credit(0))
    out2, _ = connected(credit=MAX_CREDIT)
    out2.receive_data(encode_frame(6, struct.pack(">I", 1)))
    with pytest.raises(RemoteProtocolError, match="credit"):
        out2.next_event()


def test_slow_reader_slows_the_sender() -> None:
    """A pipe that drains one chunk per round: the backlog never exceeds the window."""
    window = 3
    out, inp = connected(credit=window)
    source = [bytes([n]) * 1000 for n in range(40)]
    pipe: list[bytes] = []  # written to the input pipe, in order
    unwritten: list[bytes] = []  # received by the input server, not yet in the pipe
    rounds = 0
    while len(pipe) < len(source):
        rounds += 1
        # The save writes as fast as it may: as many chunks as it has credit for.
        first = len(pipe) + len(unwritten)
        sent_now = [Data(c) for c in source[first : first + out.credit]]
        unwritten += [e.data for e in deliver(out, inp, *sent_now)]
        assert out.credit == 0 or first + len(sent_now) == len(source)
        assert len(unwritten) <= window
        if unwritten:  # the restore reads one chunk per round
            pipe.append(unwritten.pop(0))
            assert deliver(inp, out, Credit(1)) == [Credit(1)]
    assert pipe == source
    assert rounds >= len(source)  # paced by the reader, not the writer
    assert out.data_sent == inp.data_received == 40_000


# -- end of tape ---------------------------------------------------------------


def test_tapes_end_in_band_and_are_acknowledged() -> None:
    out, inp = connected(credit=10)
    for n, chunks in enumerate(([b"ab", b"cd"], [], [b"x" * 100]), start=1):
        got = deliver(out, inp, *[Data(c) for c in chunks], EndOfTape())
        assert got[-1] == EndOfTape() and [e.data for e in got[:-1]] == chunks
        assert out.unacknowledged_tapes == 1
        regained = [Credit(len(chunks))] if chunks else []
        assert deliver(inp, out, EndOfTapeAck(), *regained) == [EndOfTapeAck(), *regained]
        assert out.unacknowledged_tapes == 0 and out.tapes.acked == n
    f_out, f_in = out.figures(), inp.figures()
    assert (f_out.tapes_sent, f_in.tapes_received, f_in.tapes_acked) == (3, 3, 3)
    assert f_out.data_sent == f_in.data_received == 104
    assert f_out.bytes_sent == f_in.bytes_received > 104
    assert f_out.bytes_received == f_in.bytes_sent


def test_ack_without_a_tape() -> None:
    out, inp = connected()
    with pytest.raises(LocalProtocolError):
        inp.send(EndOfTapeAck())
    out.receive_data(encode_frame(5, struct.pack(">IQ", 1, 0)))
    with pytest.raises(RemoteProtocolError, match="acknowledgement of tape 1"):
        out.next_event()


def test_end_of_tape_with_wrong_count_is_lost_data() -> None:
    out, inp = connected()
    inp.receive_data(out.send(Data(b"abc")) + encode_frame(4, struct.pack(">IQ", 1, 99)))
    assert inp.next_event() == Data(b"abc")
    with pytest.raises(RemoteProtocolError, match="data was lost"):
        inp.next_event()


def test_input_cannot_send_data_or_end_tapes() -> None:
    _, inp = connected()
    for ev in (Data(b"x"), EndOfTape(), Shutdown()):
        with pytest.raises(LocalProtocolError):
            inp.send(ev)


# -- check ---------------------------------------------------------------------


def test_check_during_a_transfer() -> None:
    out, inp = connected()
    got = deliver(out, inp, Data(b"1"), Check(5), Data(b"2"))
    assert got == [Data(b"1"), Check(5), Data(b"2")]
    assert deliver(inp, out, CheckReply(5, "Writing to pipe", "2 bytes")) == [CheckReply(5, "Writing to pipe", "2 bytes")]
    with pytest.raises(LocalProtocolError):
        inp.send(CheckReply(5, "again"))  # answered already
    out.send(Check(6))
    with pytest.raises(LocalProtocolError, match="already awaiting"):
        out.send(Check(6))
    inp.receive_data(encode_frame(8, struct.pack(">I", 42) + b"\x00\x00\x00\x00"))
    with pytest.raises(RemoteProtocolError, match="check 42"):
        inp.next_event()


# -- shutdown and bye ------------------------------------------------------------


def test_shutdown_stops_both_sides() -> None:
    out, inp = connected()
    deliver(out, inp, Data(b"last"), EndOfTape())
    # The input server's credit crosses the Shutdown on the wire: both are fine.
    credit = inp.send(Credit(1))
    inp.receive_data(out.send(Shutdown()))
    assert drain(inp) == [Shutdown()]
    assert out.state is inp.state is State.SHUTTING_DOWN
    out.receive_data(credit)
    assert drain(out) == [Credit(1)]
    with pytest.raises(LocalProtocolError):
        out.send(Data(b"more"))
    assert deliver(inp, out, EndOfTapeAck(), ShutdownAck()) == [EndOfTapeAck(), ShutdownAck()]
    assert out.state is inp.state is State.CLOSED
    for link in (out, inp):
        with pytest.raises(LocalProtocolError, match="closed"):
            link.send(Bye())
        link.receive_data(b"")
        assert link.next_event() == ConnectionClosed()


def test_only_the_sending_side_shuts_down() -> None:
    out, inp = connected()
    with pytest.raises(LocalProtocolError):
        inp.send(Shutdown())
    inp_wire = encode_frame(9, b"")
    out.receive_data(inp_wire)
    with pytest.raises(RemoteProtocolError, match="input server sent Shutdown"):
        out.next_event()


def test_bye_ends_the_connection_not_the_servers() -> None:
    out, inp = connected()
    assert deliver(out, inp, Bye()) == [Bye()]
    assert out.state is inp.state is State.CLOSED
    inp.receive_data(encode_frame(3, b"late"))
    with pytest.raises(RemoteProtocolError, match="after the output server ended"):
        inp.next_event()


def test_an_error_crossing_our_bye_is_still_reported() -> None:
    out, inp = connected()
    bye = out.send(Bye())
    late = inp.send(Credit(1)) + inp.send(Error("pipe /tmp/p: no reader"))
    out.receive_data(late)
    assert drain(out) == [Error("pipe /tmp/p: no reader")]  # the Credit is moot, the Error is not
    inp.receive_data(bye)
    assert drain(inp) == []  # its own Error closed it; the crossing Bye is moot


# -- failures --------------------------------------------------------------------


def test_error_from_the_input_server_mid_tape() -> None:
    out, inp = connected()
    deliver(out, inp, Data(b"abc"))
    assert deliver(inp, out, Error("writing /dev/pipein: broken pipe")) == [Error("writing /dev/pipein: broken pipe")]
    assert out.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        out.send(Data(b"d"))


def test_connection_lost_mid_tape_is_an_error_on_both_sides() -> None:
    out, inp = connected()
    deliver(out, inp, Data(b"abcd"))
    inp.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="in the middle of tape 1 after 4 bytes"):
        inp.next_event()
    out.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed the connection in the middle of tape 1"):
        out.next_event()
    with pytest.raises(LocalProtocolError):
        out.receive_data(b"more")


def test_connection_lost_before_the_ack() -> None:
    out, inp = connected()
    deliver(out, inp, Data(b"abcd"), EndOfTape())
    out.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="before tape 1 was acknowledged"):
        out.next_event()


def test_connection_lost_mid_frame() -> None:
    out, inp = connected()
    wire = out.send(Data(b"abcdef"))
    inp.receive_data(wire[:-2])
    assert inp.next_event() is NEED_DATA
    inp.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        inp.next_event()


def test_corrupt_frame_after_good_ones() -> None:
    out, inp = connected()
    good = out.send(Data(b"fine"))
    bad = bytearray(out.send(Data(b"flipped")))
    bad[-1] ^= 1
    inp.receive_data(good)
    inp.receive_data(bytes(bad))
    assert inp.next_event() == Data(b"fine")  # what arrived before the damage is delivered
    with pytest.raises(RemoteProtocolError, match="checksum"):
        inp.next_event()
    assert inp.state is State.ERROR


def test_send_failed_makes_the_link_unusable() -> None:
    out, _ = connected()
    with pytest.raises(RemoteProtocolError):
        out.send_failed()
    with pytest.raises(LocalProtocolError):
        out.send(Data(b"x"))
    with pytest.raises(RemoteProtocolError):
        out.next_event()


# -- fuzz ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), role=st.sampled_from(["input", "output"]), handshaken=st.booleans())
def test_fuzz_only_protocol_errors(data: bytes, role: str, handshaken: bool) -> None:
    pair = connected() if handshaken else (TapeLink("output", SERVER), TapeLink("input", SERVER))
    link = pair[0] if role == "output" else pair[1]
    try:
        link.receive_data(data)
        drain(link)
        link.receive_data(b"")
        drain(link)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_valid_frames_in_random_order(data: st.DataObject) -> None:
    """Well-formed frames in any order: the state table refuses, nothing crashes."""
    link = data.draw(st.sampled_from([lambda: connected()[0], lambda: connected()[1], lambda: TapeLink("input", SERVER)]))()
    payloads = {1: hello_frame()[12:], 3: b"x", 4: struct.pack(">IQ", 1, 1), 5: struct.pack(">IQ", 1, 1), 6: struct.pack(">I", 1),
                7: struct.pack(">I", 1), 8: struct.pack(">I", 1) + b"\x00\x00\x00\x00", 11: b"\x00\x01e"}  # fmt: skip
    for ftype in data.draw(st.lists(st.integers(1, 12), max_size=8)):
        try:
            link.receive_data(encode_frame(ftype, payloads.get(ftype, b"")))
            drain(link)
        except RemoteProtocolError:
            break
