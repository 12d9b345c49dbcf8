"""Fuzzing the replication Connection: hostile bytes fail cleanly and never pass as data.

Whatever arrives, a Connection may only raise RemoteProtocolError, and it may
only hand up an Accept, Batch, Ack, Heartbeat or statistics once the peer
proved the right verification code.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d3hb.errors import RemoteProtocolError
from d3hb.protocol import auth
from d3hb.protocol.events import TYPES, Accept, Ack, Batch, Heartbeat, Hello, Proof, StatsReply, StatsRequest, Welcome, encode_event, hello_payload, welcome_body
from d3hb.protocol.frames import HEADER, FrameDecoder, encode_frame
from d3hb.protocol.replication import CLOSED, NEED_DATA, Connection, State
from d3hb.store.txn import Kind, Transaction

SERVER, CODE, HISTORY, EPOCH = "pick0", b"the right code", "hist-1", 1
M_NONCE, S_NONCE = bytes([1]) * 32, bytes([2]) * 32
FLOW = (Batch, Ack, Heartbeat, StatsRequest, StatsReply)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def txn(tno: int) -> Transaction:
    return Transaction(tno, Kind.WRITE, fof=9, account="dm", dict_name="f", data_name="f", item=b"k%d" % tno, body=b"a\xfeb\xfdc")


def new_slave() -> Connection:
    return Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, last_applied=0, nonce=S_NONCE)


def master_stream(code: bytes) -> tuple[bytes, int]:
    """What a master sends a slave with nonce S_NONCE: Hello, Proof (made with ``code``), then data.

    Returns the bytes and where the handshake part ends.  The proof is made by
    hand so a wrong code gets as far as the slave's own check.
    """
    master = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=M_NONCE)
    hello = master.hello(50)
    slave = new_slave()
    slave.receive_data(master.send(hello))
    assert slave.next_event() == hello
    welcome = slave.welcome()
    proof = auth.make_proof(code, auth.MASTER_LABEL, hello_payload(hello), welcome_body(welcome))
    head = encode_frame(TYPES[Hello], hello_payload(hello)) + encode_frame(TYPES[Proof], proof)
    tail = b"".join(
        encode_frame(TYPES[type(e)], encode_event(e))
        for e in (Batch((txn(1), txn(2))), Heartbeat(3.0, 50), StatsRequest(), Batch((txn(3),)), Heartbeat(4.0, 50))
    )
    return head + tail, len(head)


GOOD, GOOD_HEAD = master_stream(CODE)
BAD, _ = master_stream(b"a wrong code")


def drive_slave(chunks: list[bytes]) -> tuple[list, bool]:
    """Feed chunks to a fresh slave the way a server would; return its events and whether it failed."""
    slave = new_slave()
    events: list = []
    try:
        for chunk in [*chunks, b""]:
            slave.receive_data(chunk)
            while (ev := slave.next_event()) is not NEED_DATA:
                if ev is CLOSED:
                    break
                events.append(ev)
                if isinstance(ev, FLOW):
                    assert slave.authenticated and slave.state in (State.READY, State.CLOSING), ev
                if isinstance(ev, Hello):
                    slave.send(slave.welcome())
                elif isinstance(ev, Proof):
                    slave.send(slave.accept())
            if ev is CLOSED:
                break
    except RemoteProtocolError:
        assert slave.state is State.ERROR
        return events, True
    return events, False


def split(data: bytes, rnd: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        step = rnd.choice([1, 2, 7, 12, 64, 500])
        out.append(data[pos : pos + step])
        pos += step
    return out


def test_the_unmutated_streams_behave() -> None:
    events, failed = drive_slave([GOOD])
    assert not failed and [type(e) for e in events].count(Batch) == 2
    events, failed = drive_slave([BAD])
    assert failed and not any(isinstance(e, Batch) for e in events)


@FUZZ
@given(st.binary(max_size=2000), st.randoms(use_true_random=False))
def test_arbitrary_bytes(data: bytes, rnd: random.Random) -> None:
    events, _ = drive_slave(split(data, rnd))
    assert not any(isinstance(e, FLOW) for e in events)


@FUZZ
@given(st.binary(max_size=300), st.randoms(use_true_random=False))
def test_arbitrary_bytes_after_a_valid_hello(data: bytes, rnd: random.Random) -> None:
    events, _ = drive_slave(split(GOOD[: GOOD_HEAD - HEADER.size - 32] + data, rnd))
    assert not any(isinstance(e, FLOW) for e in events)


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.integers(1, 255))


def mutate(data: bytes, how: tuple[str, int, int]) -> tuple[bytes, int]:
    kind, where, value = how
    if not data:
        return data, 0
    pos = where % len(data)
    buf = bytearray(data)
    if kind == "flip":
        buf[pos] ^= value
    elif kind == "insert":
        buf[pos:pos] = bytes([value])
    elif kind == "delete":
        del buf[pos]
    else:
        del buf[pos:]
    return bytes(buf), pos


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_mutated_valid_stream(hows: list, rnd: random.Random) -> None:
    data, first = GOOD, len(GOOD)
    for how in hows:
        data, pos = mutate(data, how)
        first = min(first, pos)
    events, _ = drive_slave(split(data, rnd))
    if first < GOOD_HEAD and data[:GOOD_HEAD] != GOOD[:GOOD_HEAD]:  # the handshake was damaged: nothing may pass
        assert not any(isinstance(e, FLOW) for e in events)


@FUZZ
@given(st.lists(mutation, min_size=0, max_size=3), st.randoms(use_true_random=False))
def test_mutated_wrong_code_stream(hows: list, rnd: random.Random) -> None:
    data = BAD
    for how in hows:
        data, _ = mutate(data, how)
    events, failed = drive_slave(split(data, rnd))
    assert not any(isinstance(e, FLOW) for e in events)


@FUZZ
@given(st.integers(0, 6), st.binary(max_size=200), st.randoms(use_true_random=False))
def test_a_payload_replaced_with_a_well_framed_one(index: int, payload: bytes, rnd: random.Random) -> None:
    """Checksums cannot save the parsers here: every message decoder meets hostile payloads."""
    frames = FrameDecoder().feed(GOOD)
    target = frames[index]
    if payload == target.payload:
        return
    wire = b"".join(encode_frame(f.type, payload if i == index else f.payload) for i, f in enumerate(frames))
    events, failed = drive_slave(split(wire, rnd))
    if index < 2:  # Hello or Proof changed: the proof no longer matches
        assert not any(isinstance(e, FLOW) for e in events)


@FUZZ
@given(st.integers(1, 11), st.binary(max_size=200))
def test_any_message_type_with_any_payload_at_a_ready_slave_and_master(ftype: int, payload: bytes) -> None:
    for role in ("slave", "master"):
        conn = ready_side(role)
        conn.receive_data(encode_frame(ftype, payload))
        try:
            while conn.next_event() is not NEED_DATA:
                pass
        except RemoteProtocolError:
            assert conn.state is State.ERROR


@FUZZ
@given(st.binary(max_size=1500), st.randoms(use_true_random=False))
def test_arbitrary_bytes_to_a_master_that_called(data: bytes, rnd: random.Random) -> None:
    master = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=M_NONCE)
    master.send(master.hello(0))
    try:
        for chunk in [*split(data, rnd), b""]:
            master.receive_data(chunk)
            while (ev := master.next_event()) is not NEED_DATA and ev is not CLOSED:
                assert not isinstance(ev, FLOW | Accept)  # an Accept would need the code
                if isinstance(ev, Welcome):  # needs no code: the master proves first, as its server would
                    master.send(master.proof())
    except RemoteProtocolError:
        assert master.state is State.ERROR
    assert not master.authenticated


def ready_side(role: str) -> Connection:
    master = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=M_NONCE)
    slave = new_slave()
    slave.receive_data(master.send(master.hello(0)))
    slave.next_event()
    master.receive_data(slave.send(slave.welcome()))
    master.next_event()
    slave.receive_data(master.send(master.proof()))
    slave.next_event()
    master.receive_data(slave.send(slave.accept()))
    master.next_event()
    if role == "master":
        master.send(Batch((txn(1), txn(2))))
        master.send(StatsRequest())
        return master
    return slave
