"""The replication Connection: handshake, authentication, sequencing, flow and failures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d3hb.errors import LocalProtocolError, RemoteProtocolError, UsageError
from d3hb.protocol import auth
from d3hb.protocol.events import (
    BAD_CODE, BUSY, HISTORY_MISMATCH, PROTOCOL, PROTOCOL_VERSION, RESYNC_REQUIRED, TYPES, UNKNOWN_SERVER, VERSION,
    Accept, Ack, Batch, Bye, Heartbeat, Hello, Proof, Refuse, StatsReply, StatsRequest, Welcome,
    batch_size, encode_event,
)  # fmt: skip
from d3hb.protocol.frames import HEADER, MAGIC, FRAME_VERSION, encode_frame
from d3hb.protocol.replication import CLOSED, HANDSHAKE_LIMIT, NEED_DATA, Connection, State
from d3hb.protocol.tapesock import Hello as TapeHello
from d3hb.protocol.tapesock import TapeLink
from d3hb.store.txn import Kind, Transaction

SERVER, CODE, HISTORY, EPOCH = "pick0", b"a shared verification code", "hist-7f3a", 3
M_NONCE, S_NONCE = bytes([1]) * 32, bytes([2]) * 32


def txn(tno: int, body: bytes = b"body") -> Transaction:
    return Transaction(tno, Kind.WRITE, fof=12, account="dm", dict_name="invoices", data_name="invoices", item=b"I%d" % tno, body=body)


def batch(first: int, last: int) -> Batch:
    return Batch(tuple(txn(n) for n in range(first, last + 1)))


def raw(event) -> bytes:
    """A frame built by hand, bypassing a Connection's own checks (a hostile or broken peer)."""
    return encode_frame(TYPES[type(event)], encode_event(event))


def drain(conn: Connection) -> list:
    out = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
        if ev is CLOSED:
            break
    return out


class ConnectionPair:
    """A master and a slave Connection with the bytes shuttled between them by hand."""

    def __init__(self, *, master_code: bytes = CODE, slave_code: bytes = CODE, master_server: str = SERVER, slave_server: str = SERVER,
                 last_applied: int = 0, window: int = 4, m_nonce: bytes = M_NONCE, s_nonce: bytes = S_NONCE) -> None:  # fmt: skip
        self.master = Connection("master", master_server, master_code, history_id=HISTORY, epoch=EPOCH, window=window, nonce=m_nonce)
        self.slave = Connection("slave", slave_server, slave_code, history_id=HISTORY, epoch=EPOCH, last_applied=last_applied, nonce=s_nonce)
        self.from_master = bytearray()  # everything each side sent, for replay tests
        self.from_slave = bytearray()
        self.slave_chunks: list[bytes] = []  # the slave's bytes, one list entry per to_master call

    def to_slave(self, *events) -> list:
        wire = b"".join(self.master.send(e) for e in events)
        self.from_master += wire
        self.slave.receive_data(wire)
        return drain(self.slave)

    def to_master(self, *events) -> list:
        wire = b"".join(self.slave.send(e) for e in events)
        self.from_slave += wire
        self.slave_chunks.append(wire)
        self.master.receive_data(wire)
        return drain(self.master)

    def handshake(self, last_tno: int = 100) -> None:
        hello = self.master.hello(last_tno)
        assert self.to_slave(hello) == [hello]
        welcome = self.slave.welcome()
        assert self.to_master(welcome) == [welcome]
        proof = self.master.proof()
        assert self.to_slave(proof) == [proof]
        assert self.slave.authenticated and not self.master.authenticated  # the master has proved; the slave not yet
        accept = self.slave.accept()
        assert self.to_master(accept) == [accept]
        assert self.master.state is self.slave.state is State.READY


def ready(**kw) -> ConnectionPair:
    pair = ConnectionPair(**kw)
    pair.handshake()
    return pair


# -- handshake -----------------------------------------------------------------------


def test_full_handshake_carries_both_sides_fields() -> None:
    pair = ConnectionPair(last_applied=41)
    assert not pair.master.authenticated and not pair.slave.authenticated
    pair.handshake(last_tno=57)
    m, s = pair.master, pair.slave
    assert m.authenticated and s.authenticated
    assert s.peer_hello == Hello(SERVER, PROTOCOL_VERSION, HISTORY, EPOCH, 57, M_NONCE)
    assert s.peer_last_tno == 57
    assert m.peer_welcome is not None and (m.peer_welcome.last_applied, m.peer_welcome.nonce) == (41, S_NONCE)
    assert m.last_acked == 41 and m.unacked_batches == 0 and m.can_send_batch
    assert not s.can_send_batch  # only a master sends batches


def test_handshake_states_step_through_the_table() -> None:
    pair = ConnectionPair()
    seen = []
    pair.to_slave(pair.master.hello(0))
    seen.append((pair.master.state, pair.slave.state))
    pair.to_master(pair.slave.welcome())
    seen.append((pair.master.state, pair.slave.state))
    pair.to_slave(pair.master.proof())
    seen.append((pair.master.state, pair.slave.state))
    assert seen == [(State.HELLO, State.HELLO), (State.WELCOME, State.WELCOME), (State.PROOF, State.PROOF)]
    assert pair.master.handshaking and not pair.master.can_send_batch
    assert not pair.master.authenticated and pair.slave.authenticated


def test_nonces_come_from_the_random_source_when_not_given() -> None:
    calls = []

    def rnd(n: int) -> bytes:
        calls.append(n)
        return b"\x07" * n

    conn = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, random_bytes=rnd)
    assert conn.nonce == b"\x07" * 32 and calls == [32]
    assert Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH).nonce != Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH).nonce
    with pytest.raises(ValueError):
        Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=b"short")


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(UsageError, match="no verification code"):
        Connection("slave", SERVER, b"", history_id=HISTORY, epoch=EPOCH)
    with pytest.raises(UsageError, match="server name"):
        Connection("slave", "x" * 65, CODE, history_id=HISTORY, epoch=EPOCH)
    with pytest.raises(ValueError):
        Connection("observer", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)


@pytest.mark.parametrize("wrong", ["slave", "master"])
def test_wrong_code_on_either_side_is_refused_by_the_slave_before_it_proves_anything(wrong: str) -> None:
    other = b"not the same code"
    pair = ConnectionPair(**{f"{wrong}_code": other})
    pair.to_slave(pair.master.hello(0))
    welcome = pair.slave.welcome()
    assert pair.to_master(welcome) == [welcome]  # no proof in it: nothing to test guesses against
    assert not hasattr(welcome, "proof") and len(pair.from_slave) < 100
    proof = pair.master.proof()
    with pytest.raises(RemoteProtocolError, match="master did not prove the verification code"):
        pair.to_slave(proof)
    m, s = pair.master, pair.slave
    assert s.state is State.ERROR and not s.authenticated
    assert isinstance(s.error_reply, Refuse) and s.error_reply.reason == BAD_CODE
    with pytest.raises(LocalProtocolError):
        s.accept()  # the slave never builds its proof for an unproved master
    m.receive_data(s.send(s.error_reply))
    [refusal] = drain(m)
    assert refusal == Refuse(BAD_CODE, refusal.message) and "same code=" in refusal.message
    assert m.state is State.CLOSED and m.refused == refusal and not m.authenticated
    with pytest.raises(LocalProtocolError):
        s.send(Refuse(BAD_CODE, "twice"))  # the one reply has gone


def test_master_checks_the_slaves_proof_in_accept() -> None:
    """A slave that knows no code cannot fake an Accept: the master refuses it and sends nothing else."""
    pair = ConnectionPair()
    pair.to_slave(pair.master.hello(0))
    pair.to_master(pair.slave.welcome())
    pair.master.send(pair.master.proof())
    forged = auth.make_proof(b"guess", auth.SLAVE_LABEL, b"", b"")
    pair.master.receive_data(raw(Accept(forged)) + raw(Ack(1, 1, 1)))
    with pytest.raises(RemoteProtocolError, match="slave did not prove the verification code"):
        drain(pair.master)
    m = pair.master
    assert m.state is State.ERROR and not m.authenticated and not m.can_send_batch and m.last_acked == 0
    assert isinstance(m.error_reply, Refuse) and m.error_reply.reason == BAD_CODE
    with pytest.raises(LocalProtocolError):
        m.send(batch(1, 1))


def test_slave_checks_the_masters_proof_itself() -> None:
    """A master that guesses its proof is refused, and what it sent after is never surfaced."""
    pair = ConnectionPair()
    pair.to_slave(pair.master.hello(0))
    welcome = pair.slave.welcome()
    pair.slave.send(welcome)
    forged = auth.make_proof(b"guess", auth.MASTER_LABEL, b"", b"")
    pair.slave.receive_data(raw(Proof(forged)) + raw(batch(1, 2)))
    with pytest.raises(RemoteProtocolError, match="master did not prove the verification code"):
        drain(pair.slave)
    assert pair.slave.error_reply is not None and pair.slave.error_reply.reason == BAD_CODE
    with pytest.raises(RemoteProtocolError):
        pair.slave.next_event()  # stays dead: the batch behind it is never surfaced


def test_a_masters_proof_reflected_as_the_slaves_is_refused() -> None:
    pair = ConnectionPair()
    pair.to_slave(pair.master.hello(0))
    pair.to_master(pair.slave.welcome())
    proof = pair.master.proof()
    pair.master.send(proof)
    pair.master.receive_data(raw(Accept(proof.proof)))  # a rogue slave hands the master's proof back
    with pytest.raises(RemoteProtocolError, match="verification code"):
        drain(pair.master)


def test_a_welcome_echoing_the_masters_nonce_is_refused() -> None:
    pair = ConnectionPair()
    pair.master.send(pair.master.hello(0))
    pair.master.receive_data(raw(Welcome(PROTOCOL_VERSION, HISTORY, EPOCH, 0, M_NONCE)))
    with pytest.raises(RemoteProtocolError, match="own nonce"):
        drain(pair.master)


def test_replayed_handshake_from_an_earlier_session_is_refused() -> None:
    old = ready()
    old.to_slave(batch(1, 3))
    recorded_master = bytes(old.from_master)
    recorded_welcome, recorded_accept = old.slave_chunks[0], old.slave_chunks[1]

    # The master's bytes played to a new slave: its fresh nonce makes the old proof worthless.
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=bytes([9]) * 32)
    slave.receive_data(recorded_master)
    assert isinstance(slave.next_event(), Hello)
    slave.send(slave.welcome())
    with pytest.raises(RemoteProtocolError, match="verification code"):
        slave.next_event()
    assert not slave.authenticated and slave.batches_received == 0

    # The slave's bytes played to a new master: the old Accept does not cover the new master nonce.
    master = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=bytes([8]) * 32)
    master.send(master.hello(100))
    master.receive_data(recorded_welcome)
    assert isinstance(master.next_event(), Welcome)
    master.send(master.proof())
    master.receive_data(recorded_accept)
    with pytest.raises(RemoteProtocolError, match="verification code"):
        master.next_event()
    assert not master.authenticated


def test_a_field_changed_in_transit_breaks_the_proof() -> None:
    pair = ConnectionPair(last_applied=10)
    pair.to_slave(pair.master.hello(0))
    w = pair.slave.welcome()
    pair.slave.send(w)
    tampered = Welcome(w.version, w.history_id, w.epoch, 99, w.nonce)  # claims to hold more
    pair.master.receive_data(raw(tampered))
    assert drain(pair.master) == [tampered]  # not trusted yet: the master proves over what it saw
    pair.slave.receive_data(pair.master.send(pair.master.proof()))
    with pytest.raises(RemoteProtocolError, match="verification code"):
        pair.slave.next_event()
    assert not pair.master.authenticated and pair.master.last_acked == 0


def test_hello_naming_another_server_is_refused() -> None:
    pair = ConnectionPair(master_server="pick1")
    with pytest.raises(RemoteProtocolError, match="claims another server's name: 'pick1' called server 'pick0'"):
        pair.to_slave(pair.master.hello(0))
    reply = pair.slave.error_reply
    assert isinstance(reply, Refuse) and reply.reason == UNKNOWN_SERVER
    pair.master.receive_data(pair.slave.send(reply))
    assert drain(pair.master) == [reply]
    assert pair.master.state is State.CLOSED and pair.master.refused == reply


def test_another_protocol_version_is_refused_with_reason_version() -> None:
    assert PROTOCOL_VERSION == 2
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(raw(Hello(SERVER, 1, HISTORY, EPOCH, 0, M_NONCE)))  # a release where the slave proved first
    with pytest.raises(RemoteProtocolError, match="the peer speaks replication protocol 1, this server 2"):
        slave.next_event()
    assert slave.error_reply is not None and slave.error_reply.reason == VERSION
    assert "\n" not in slave.error_reply.message and "protocol 1, this server 2" in slave.error_reply.message


def test_a_version_1_welcome_is_refused_before_its_proof_is_parsed() -> None:
    master = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, nonce=M_NONCE)
    master.send(master.hello(0))
    v1 = encode_frame(TYPES[Welcome], encode_event(Welcome(1, HISTORY, EPOCH, 0, S_NONCE)) + b"\x00" * 32)
    master.receive_data(v1)
    with pytest.raises(RemoteProtocolError, match="protocol 1, this server 2"):
        master.next_event()
    assert master.error_reply is not None and master.error_reply.reason == VERSION


def test_a_tape_socket_server_on_the_wrong_port_is_named() -> None:
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(TapeLink("output", SERVER).send(TapeHello(SERVER)))
    with pytest.raises(RemoteProtocolError, match="not a hot backup server"):
        slave.next_event()


@pytest.mark.parametrize(
    ("who", "when", "reason"),
    [("slave", "start", BUSY), ("slave", "hello", HISTORY_MISMATCH), ("master", "welcome", RESYNC_REQUIRED),
     ("slave", "proof", HISTORY_MISMATCH), ("master", "accept", RESYNC_REQUIRED)],
)
def test_policy_refusals_from_the_server_above(who: str, when: str, reason: str) -> None:
    pair = ConnectionPair()
    steps = [lambda: pair.to_slave(pair.master.hello(0)), lambda: pair.to_master(pair.slave.welcome()),
             lambda: pair.to_slave(pair.master.proof()), lambda: pair.to_master(pair.slave.accept())]
    for step in steps[: ["start", "hello", "welcome", "proof", "accept"].index(when)]:
        step()
    me, peer = (pair.slave, pair.master) if who == "slave" else (pair.master, pair.slave)
    peer.receive_data(me.refuse(reason, f"server {SERVER}: refused for {reason}"))
    events = drain(peer)
    assert events[-1] == Refuse(reason, f"server {SERVER}: refused for {reason}")
    assert me.state is peer.state is State.CLOSED
    peer.receive_data(b"")
    assert peer.next_event() is CLOSED


def test_the_master_refuses_after_accept_only_as_its_first_message() -> None:
    """The master judges the proved Welcome after Accept; once it has said anything else, it has accepted."""
    pair = ready()
    with pytest.raises(LocalProtocolError, match="slave refuses only during the handshake"):
        pair.slave.refuse(RESYNC_REQUIRED, "no")
    pair.to_slave(Heartbeat(1.0, 5))
    with pytest.raises(LocalProtocolError, match="before it sends anything"):
        pair.master.refuse(RESYNC_REQUIRED, "too late")
    pair.slave.receive_data(raw(Refuse(RESYNC_REQUIRED, "too late")))
    with pytest.raises(RemoteProtocolError, match="after it had accepted the slave"):
        drain(pair.slave)
    other = ready()
    other.master.receive_data(raw(Refuse(BUSY, "a slave changing its mind")))
    with pytest.raises(RemoteProtocolError, match="slave sent Refuse after the handshake"):
        drain(other.master)


def test_unknown_refusal_reasons_are_not_sent_but_are_received() -> None:
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError, match="unknown refusal reason"):
        pair.slave.refuse("moody", "no")
    pair.master.send(pair.master.hello(0))
    pair.master.receive_data(raw(Refuse("from-a-newer-release", "line one\nline two")))
    assert drain(pair.master) == [Refuse("from-a-newer-release", "line one line two")]  # kept to one line


def test_a_refusal_crossing_the_hello_is_dropped_quietly() -> None:
    pair = ConnectionPair()
    hello = pair.master.send(pair.master.hello(0))
    refusal = pair.slave.refuse(BUSY, "server pick0 already has a master connected")
    pair.slave.receive_data(hello)
    assert drain(pair.slave) == []
    pair.master.receive_data(refusal)
    assert drain(pair.master) == [Refuse(BUSY, "server pick0 already has a master connected")]


# -- batches, window, acknowledgements ---------------------------------------------------


def test_batches_and_cumulative_acks() -> None:
    pair = ready(window=3)
    m, s = pair.master, pair.slave
    assert pair.to_slave(batch(1, 3), batch(4, 4)) == [batch(1, 3), batch(4, 4)]
    assert m.unacked_batches == 2 and m.last_sent == 4 and s.last_seen == 4
    assert pair.to_master(Ack(4, 3, 1)) == [Ack(4, 3, 1)]  # stored 3: the first batch is done
    assert m.unacked_batches == 1 and m.last_acked == 3
    assert pair.to_master(Ack(4, 4, 4)) == [Ack(4, 4, 4)]
    assert m.unacked_batches == 0 and m.acked == Ack(4, 4, 4)
    assert (m.batches_sent, m.txns_sent, s.batches_received, s.txns_received) == (2, 4, 2, 4)


def test_window_of_unacknowledged_batches() -> None:
    pair = ready(window=2)
    m = pair.master
    pair.to_slave(batch(1, 1), batch(2, 2))
    assert not m.can_send_batch
    with pytest.raises(LocalProtocolError, match="window of 2"):
        m.send(batch(3, 3))
    assert m.last_sent == 2 and m.state is State.READY  # the refused send changed nothing
    pair.to_master(Ack(2, 1, 0))  # received is not enough: the window opens on stored
    assert m.can_send_batch
    assert pair.to_slave(batch(3, 3)) == [batch(3, 3)]


def test_a_large_batch_travels_after_the_handshake_but_not_beyond_max_frame() -> None:
    pair = ready()
    big = Batch((txn(1, b"x" * 200_000),))
    assert pair.to_slave(big) == [big]
    small = Connection("master", SERVER, CODE, history_id=HISTORY, epoch=EPOCH, max_frame=HANDSHAKE_LIMIT * 2)
    assert batch_size(big.txns) > small.max_frame
    pair2 = ConnectionPair()
    pair2.master = small
    pair2.handshake()
    with pytest.raises(LocalProtocolError, match="exceeds the frame limit"):
        small.send(big)
    assert small.last_sent == 0 and small.unacked_batches == 0


def test_master_refuses_to_send_out_of_order_or_with_gaps() -> None:
    pair = ready(last_applied=10)
    m = pair.master
    with pytest.raises(LocalProtocolError, match="slave holds up to 10"):
        m.send(batch(12, 13))
    with pytest.raises(LocalProtocolError, match="in one batch"):
        m.send(Batch((txn(5), txn(7))))
    with pytest.raises(LocalProtocolError, match="empty batch"):
        m.send(Batch(()))
    pair.to_slave(batch(9, 11))
    with pytest.raises(LocalProtocolError, match="after 11"):
        m.send(batch(13, 14))


def test_duplicates_are_dropped_exactly_once() -> None:
    pair = ready(last_applied=5)
    m, s = pair.master, pair.slave
    assert pair.to_slave(batch(3, 4)) == []  # all held already: no event at all
    assert m.unacked_batches == 0  # and the master does not wait for them
    assert pair.to_slave(batch(5, 8)) == [batch(6, 8)]
    assert s.duplicates_skipped == 3 and s.last_seen == 8 and s.txns_received == 3
    pair.to_master(Ack(8, 8, 8))
    assert m.last_acked == 8


def test_a_resend_after_reconnect_is_dropped_by_the_next_session() -> None:
    first = ready()
    first.to_slave(batch(1, 4))
    first.to_master(Ack(4, 4, 4))  # suppose this Ack is lost: the master's cursor stays at 0
    second = ready(last_applied=first.slave.last_seen)
    assert second.to_slave(batch(1, 6)) == [batch(5, 6)]
    assert second.slave.duplicates_skipped == 4


def test_a_gap_raises_and_is_never_skipped() -> None:
    pair = ready(last_applied=5)
    pair.slave.receive_data(raw(batch(7, 9)))
    with pytest.raises(RemoteProtocolError, match="gap in transaction numbers: expected 6, got 7"):
        pair.slave.next_event()
    assert pair.slave.last_seen == 5
    assert isinstance(pair.slave.error_reply, Bye) and "gap" in pair.slave.error_reply.reason


def test_a_gap_across_batches_and_disorder_within_one_raise() -> None:
    pair = ready()
    assert pair.to_slave(batch(1, 2)) == [batch(1, 2)]
    pair.slave.receive_data(raw(batch(4, 5)))
    with pytest.raises(RemoteProtocolError, match="expected 3, got 4"):
        pair.slave.next_event()
    other = ready()
    other.slave.receive_data(raw(Batch((txn(1), txn(3), txn(2)))))
    with pytest.raises(RemoteProtocolError, match="out of order"):
        other.slave.next_event()
    third = ready()
    third.slave.receive_data(raw(Batch(())))
    with pytest.raises(RemoteProtocolError, match="empty batch"):
        third.slave.next_event()


@pytest.mark.parametrize(
    ("ack", "message"),
    [
        (Ack(9, 9, 9), "only up to 3 was sent"),
        (Ack(3, 3, 4), "out of order"),
        (Ack(2, 3, 0), "out of order"),
        (Ack(1, 1, 0), "going backwards"),
    ],
)
def test_master_checks_every_ack(ack: Ack, message: str) -> None:
    pair = ready()
    pair.to_slave(batch(1, 3))
    pair.to_master(Ack(2, 2, 0))
    pair.master.receive_data(raw(ack))
    with pytest.raises(RemoteProtocolError, match=message):
        pair.master.next_event()
    assert pair.master.state is State.ERROR


def test_an_ack_before_any_batch_is_out_of_order() -> None:
    pair = ready()
    pair.master.receive_data(raw(Ack(0, 0, 0)))
    with pytest.raises(RemoteProtocolError, match="before any batch was sent"):
        pair.master.next_event()
    with pytest.raises(LocalProtocolError, match="before any batch"):
        ready().slave.send(Ack(0, 0, 0))


def test_slave_acks_are_checked_before_they_leave() -> None:
    pair = ready()
    pair.to_slave(batch(1, 3))
    s = pair.slave
    with pytest.raises(LocalProtocolError):
        s.send(Ack(4, 4, 4))  # more than received
    with pytest.raises(LocalProtocolError):
        s.send(Ack(3, 1, 2))  # applied beyond stored
    s.send(Ack(3, 3, 1))
    with pytest.raises(LocalProtocolError, match="goes back"):
        s.send(Ack(3, 2, 1))


# -- heartbeats, statistics, closing ----------------------------------------------------


def test_heartbeats_both_ways() -> None:
    pair = ready()
    assert pair.to_slave(Heartbeat(1000.5, 120)) == [Heartbeat(1000.5, 120)]
    assert pair.to_master(Heartbeat(1001.0, 118)) == [Heartbeat(1001.0, 118)]
    assert pair.slave.peer_last_tno == 120 and pair.master.peer_last_tno == 118
    with pytest.raises(LocalProtocolError):
        pair.master.send(Heartbeat(float("nan"), 1))


def test_heartbeat_during_the_handshake_is_out_of_order() -> None:
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(raw(Heartbeat(1.0, 1)))
    with pytest.raises(RemoteProtocolError, match="before the handshake completed"):
        slave.next_event()


def test_statistics_request_and_reply() -> None:
    pair = ready()
    stats = {"received": 12, "applied": 11, "lag_seconds": 0.25, "state": "Connected"}
    with pytest.raises(LocalProtocolError, match="did not ask"):
        pair.slave.send(StatsReply(stats))
    assert pair.to_slave(StatsRequest()) == [StatsRequest()]
    with pytest.raises(LocalProtocolError):
        pair.slave.send(StatsReply({"ok": True}))  # booleans are not statistics
    assert pair.to_master(StatsReply(stats)) == [StatsReply(stats)]
    pair.master.receive_data(raw(StatsReply(stats)))  # a second, unasked reply
    with pytest.raises(RemoteProtocolError, match="nobody asked"):
        pair.master.next_event()


@pytest.mark.parametrize("payload", [b"[1, 2]", b'{"x": NaN}', b'{"x": 1e999}', b'{"x": [1]}', b"[" * 5000, b"\xff"])
def test_malformed_statistics_are_rejected(payload: bytes) -> None:
    pair = ready()
    pair.to_master(StatsRequest())
    pair.master.receive_data(encode_frame(TYPES[StatsReply], payload))
    with pytest.raises(RemoteProtocolError, match="malformed StatsReply"):
        pair.master.next_event()


def test_bye_and_what_crosses_it() -> None:
    pair = ready()
    m, s = pair.master, pair.slave
    pair.to_slave(batch(1, 2))
    ack = s.send(Ack(2, 2, 2))  # on the wire while the master says goodbye
    bye = m.send(Bye("server stopped"))
    late = raw(batch(3, 3))  # and a batch the slave will only see after its own Bye
    assert m.state is State.CLOSING
    m.receive_data(ack)
    assert drain(m) == [Ack(2, 2, 2)] and m.last_acked == 2  # still counted
    s.send(Bye("slave stopping"))
    s.receive_data(late + bye)
    assert drain(s) == [Bye("server stopped")]  # the crossing batch was dropped, not handed up
    assert s.last_seen == 2 and s.state is State.CLOSED
    m.receive_data(raw(Bye("slave stopping")))
    assert drain(m) == [Bye("slave stopping")] and m.bye_received == Bye("slave stopping")
    m.receive_data(b"")
    assert m.next_event() is CLOSED and m.state is CLOSED


def test_nothing_after_the_peers_bye() -> None:
    pair = ready()
    pair.to_master(Bye())
    assert pair.master.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        pair.master.send(batch(1, 1))
    pair.master.receive_data(raw(Heartbeat(1.0, 1)))
    with pytest.raises(RemoteProtocolError, match="after the slave ended"):
        pair.master.next_event()


# -- end of file ------------------------------------------------------------------------


def test_end_of_file_cases() -> None:
    probe = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    probe.receive_data(b"")
    assert probe.next_event() is CLOSED  # a readiness probe: no incident

    pair = ConnectionPair()
    pair.to_slave(pair.master.hello(0))
    pair.slave.send(pair.slave.welcome())
    pair.slave.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="during the handshake"):
        pair.slave.next_event()
    assert pair.slave.error_reply is None  # nobody is left to tell

    gone = ready()
    gone.slave.receive_data(b"")
    assert gone.slave.next_event() is CLOSED and gone.slave.bye_received is None
    with pytest.raises(LocalProtocolError):
        gone.slave.receive_data(b"more")


def test_end_of_file_mid_frame_is_truncation() -> None:
    pair = ready()
    wire = pair.master.send(batch(1, 3))
    pair.slave.receive_data(wire[:-5])
    assert pair.slave.next_event() is NEED_DATA
    pair.slave.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="in the middle of a frame"):
        pair.slave.next_event()


# -- malformed, oversized, corrupt ------------------------------------------------------


def test_a_header_claiming_3_gib_fails_before_any_payload() -> None:
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(HEADER.pack(MAGIC, FRAME_VERSION, TYPES[Hello], 3 * 1024**3, 0))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        slave.next_event()


def test_an_unauthenticated_peer_is_held_to_the_handshake_limit() -> None:
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(HEADER.pack(MAGIC, FRAME_VERSION, TYPES[Batch], HANDSHAKE_LIMIT + 1, 0))
    with pytest.raises(RemoteProtocolError, match=f"limit of {HANDSHAKE_LIMIT}"):
        slave.next_event()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (encode_frame(77, b""), "unknown replication message type 77"),
        (encode_frame(TYPES[Hello], b"D3HR\x00\x02short"), "malformed Hello"),
        (encode_frame(TYPES[Hello], raw(Hello(SERVER, PROTOCOL_VERSION, HISTORY, 0, 0, M_NONCE))[HEADER.size :] + b"x"), "malformed Hello"),
        (encode_frame(TYPES[Welcome], b""), "the master sent Welcome, which only a slave sends"),
        (encode_frame(TYPES[Proof], b"\x00" * 32), "Proof before the handshake completed"),
        (raw(batch(1, 1)), "Batch before the handshake completed"),
    ],
)
def test_malformed_and_out_of_order_frames_at_the_slave(frame: bytes, message: str) -> None:
    slave = Connection("slave", SERVER, CODE, history_id=HISTORY, epoch=EPOCH)
    slave.receive_data(frame)
    with pytest.raises(RemoteProtocolError, match=message):
        slave.next_event()
    assert slave.state is State.ERROR and slave.batches_received == 0
    assert isinstance(slave.error_reply, Refuse) and slave.error_reply.reason == PROTOCOL


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\x00\x00\x01", b"\x00\x00\x00\x01\x00\x00\x00\x05abcde", b"\x00\x00\x00\x00extra", b"\xff\xff\xff\xff"],
)
def test_malformed_batches_after_the_handshake(payload: bytes) -> None:
    pair = ready()
    pair.slave.receive_data(encode_frame(TYPES[Batch], payload))
    with pytest.raises(RemoteProtocolError, match="malformed Batch|empty batch"):
        pair.slave.next_event()


def test_flipping_any_byte_of_a_batch_frame_is_detected() -> None:
    wire = ready().master.send(batch(1, 2))
    for pos in range(len(wire)):
        pair = ready()
        bad = bytearray(wire)
        bad[pos] ^= 0x20
        pair.slave.receive_data(bytes(bad) + b"")
        pair.slave.receive_data(b"")
        with pytest.raises(RemoteProtocolError):
            drain(pair.slave)
        assert pair.slave.batches_received == 0


def test_a_failed_connection_stays_dead() -> None:
    pair = ready()
    pair.slave.receive_data(b"garbage that is not a frame")
    with pytest.raises(RemoteProtocolError) as first:
        pair.slave.next_event()
    pair.slave.receive_data(pair.master.send(batch(1, 1)))  # ignored now
    with pytest.raises(RemoteProtocolError) as again:
        pair.slave.next_event()
    assert again.value is first.value and pair.slave.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        pair.slave.send(Heartbeat(1.0, 0))
    reply = pair.slave.error_reply
    assert isinstance(reply, Bye) and "bad frame magic" in reply.reason
    pair.master.receive_data(pair.slave.send(reply))
    assert drain(pair.master) == [reply]


def test_good_frames_before_a_corrupt_one_are_delivered_first() -> None:
    pair = ready()
    good = pair.master.send(Heartbeat(5.0, 1))
    pair.slave.receive_data(good + b"\x00" * 12)
    assert pair.slave.next_event() == Heartbeat(5.0, 1)
    with pytest.raises(RemoteProtocolError):
        pair.slave.next_event()


def test_sending_what_the_state_forbids_is_a_local_error() -> None:
    pair = ConnectionPair()
    m, s = pair.master, pair.slave
    with pytest.raises(LocalProtocolError, match="cannot send Batch while the connection is start"):
        m.send(batch(1, 1))
    with pytest.raises(LocalProtocolError, match="does not send Welcome"):
        m.send(Welcome(PROTOCOL_VERSION, HISTORY, EPOCH, 0, M_NONCE))
    with pytest.raises(LocalProtocolError, match="not this connection's"):
        m.send(Hello("pick9", PROTOCOL_VERSION, HISTORY, EPOCH, 0, M_NONCE))
    with pytest.raises(LocalProtocolError):
        s.welcome()  # no Hello yet
    with pytest.raises(LocalProtocolError):
        s.accept()  # no proved Proof yet
    with pytest.raises(LocalProtocolError, match="does not send Accept"):
        m.send(Accept(b"\x00" * 32))
    with pytest.raises(LocalProtocolError):
        s.send(Bye())  # Bye is for after the handshake; Refuse before it


# -- splitting the stream ---------------------------------------------------------------


def session_bytes() -> tuple[bytes, bytes]:
    """Both directions of one complete session, made with the fixed nonces."""
    pair = ready(last_applied=2)
    pair.to_slave(batch(1, 4), Heartbeat(10.0, 9), StatsRequest())
    pair.to_master(Ack(4, 4, 3), StatsReply({"applied": 3}), Heartbeat(11.0, 3))
    pair.to_slave(batch(5, 9))
    pair.to_master(Ack(9, 9, 9), Bye("stopping"))
    return bytes(pair.from_master), bytes(pair.from_slave)


def replay(role: str, wire: bytes, cuts: list[int]) -> list:
    """Feed ``wire`` to a fresh ``role`` in pieces, answering as a server would; return its events."""
    pair = ConnectionPair(last_applied=2)
    conn = pair.slave if role == "slave" else pair.master
    if role == "master":
        conn.send(conn.hello(100))
    events: list = []
    last = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        if cut > last:
            conn.receive_data(wire[last:cut])
            last = cut
        while (ev := conn.next_event()) is not NEED_DATA:  # answer each event before reading on
            events.append(ev)
            if ev is CLOSED:
                break
            if isinstance(ev, Hello):
                conn.send(conn.welcome())
            elif isinstance(ev, Welcome):
                conn.send(conn.proof())
            elif isinstance(ev, Proof):
                conn.send(conn.accept())
            elif isinstance(ev, Accept):  # what the master sent in the session, so the Acks fit
                for out in (batch(1, 4), StatsRequest(), batch(5, 9)):
                    conn.send(out)
            elif isinstance(ev, StatsRequest):
                conn.send(StatsReply({"applied": 3}))
    return events


@pytest.mark.parametrize("role", ["slave", "master"])
def test_one_byte_at_a_time_gives_the_same_events(role: str) -> None:
    to_slave, to_master = session_bytes()
    wire = to_slave if role == "slave" else to_master
    whole = replay(role, wire, [])
    assert replay(role, wire, list(range(len(wire)))) == whole
    kinds = [type(e).__name__ for e in whole]
    if role == "slave":
        assert kinds == ["Hello", "Proof", "Batch", "Heartbeat", "StatsRequest", "Batch"]
        assert [t.tno for t in whole[2].txns] == [3, 4]
    else:
        assert kinds == ["Welcome", "Accept", "Ack", "StatsReply", "Heartbeat", "Ack", "Bye"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["slave", "master"]), st.randoms(use_true_random=False))
def test_random_splits_give_the_same_events(role: str, rnd: random.Random) -> None:
    to_slave, to_master = session_bytes()
    wire = to_slave if role == "slave" else to_master
    cuts = [rnd.randrange(len(wire)) for _ in range(rnd.randint(1, 30))]
    assert replay(role, wire, cuts) == replay(role, wire, [])


def test_a_transaction_out_of_range_for_the_wire_is_a_local_error() -> None:
    pair = ready()
    bad = Batch((Transaction(1, Kind.WRITE, fof=2**40),))
    with pytest.raises(LocalProtocolError, match="cannot be encoded"):
        pair.master.send(bad)
    assert pair.master.last_sent == 0 and pair.master.can_send_batch
