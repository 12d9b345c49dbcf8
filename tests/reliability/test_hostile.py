"""Hostile callers against a running slave that already holds data.

Each is refused with an incident in the slave's log, and the data stays
exactly as it was (same applied number, same per-file digests); afterwards
the real master still replicates, and the oracle holds.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from d3hb.ops import supervisor as sv
from d3hb.protocol import auth
from d3hb.protocol.events import (
    PROTOCOL_VERSION, TYPES, Batch, Hello, Proof, Refuse, Welcome, decode_event, encode_event, hello_payload, welcome_body,
)
from d3hb.protocol.frames import FRAME_VERSION, HEADER, MAGIC, FrameDecoder, encode_frame
from d3hb.servers import status as st
from d3hb.store import System, digests
from d3hb.store import apply as store_apply
from d3hb.store.txn import Kind, Transaction
from d3hb.testing import oracle, procs


def write(m: System, log: oracle.WriteLog, n: int, start: int) -> None:
    inv = m.file("acme", "inv")
    with m.transaction():
        for j in range(start, start + n):
            log.write(inv, f"k{j % 50}", f"value {j}")


@pytest.fixture
def held(home):
    """A slave holding replicated data, its master stopped: (master, slave, port, log)."""
    m, s, port = procs.make_pair(home, master_fields={"timeout": "2"}, slave_fields={"timeout": "1"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write(m, log, 100, 0)
    procs.wait_applied(s, "hb", log.last)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 10, "the acknowledgement")
    sv.stop(m, "hb")
    return m, s, port, log


def _frames(sock: socket.socket, want: int = 1, timeout: float = 5.0) -> list:
    dec = FrameDecoder(1 << 20)
    sock.settimeout(timeout)
    out: list = []
    while len(out) < want:
        data = sock.recv(65536)
        if not data:
            break
        out += dec.feed(data)
    return out


def _event(frame):
    from d3hb.protocol.events import CLASSES

    return decode_event(CLASSES[frame.type], frame.payload)


def _hello(m: System, name: str = "hb") -> Hello:
    return Hello(name, PROTOCOL_VERSION, m.history_id, m.epoch, m.queue.last_tno(), os.urandom(32))


def _forged_batch() -> bytes:
    t = Transaction(10_000, Kind.WRITE, fof=9, account="acme", dict_name="inv", data_name="inv", item=b"forged", body=b"evil")
    return encode_frame(TYPES[Batch], encode_event(Batch((t,))))


def _handshake(port: int, m: System, code: bytes, name: str = "hb", extra: bytes = b"") -> tuple[bytes, list]:
    """Call the slave as a master would, proving ``code``; returns the bytes sent and the slave's answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        hello = _hello(m, name)
        first = encode_frame(TYPES[Hello], hello_payload(hello))
        c.sendall(first)
        got = _frames(c)
        answers = [_event(f) for f in got]
        if not answers or not isinstance(answers[0], Welcome):
            return first, answers
        proof = auth.make_proof(code, auth.MASTER_LABEL, hello_payload(hello), welcome_body(answers[0]))
        second = encode_frame(TYPES[Proof], proof) + extra
        c.sendall(second)
        answers += [_event(f) for f in _frames(c)]
        return first + second, answers


def _incident(s: System, words: str) -> None:
    procs.wait_until(lambda: any("INCIDENT" in ln and words in ln for ln in st.recent_messages(sv.files(s, "hb"), 0, permanent=True)),
                     15, f"an incident naming {words!r}")


def _untouched(s: System, applied: int, digest: dict) -> None:
    with System.open(s.path) as fresh:
        assert store_apply.last_applied(fresh, "hb") == applied
        assert digests(fresh) == digest
        assert fresh.find_file("acme", "inv", "inv") is not None
        assert fresh.file("acme", "inv").read("forged") is None


def _still_replicates(m: System, s: System, log: oracle.WriteLog) -> None:
    sv.start(m, "hb")
    write(m, log, 100, 100)
    procs.wait_applied(s, "hb", log.last, 30)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 10, "the acknowledgement")
    log.observe_ack(m.queue.cursor("hb"))
    oracle.check(m, s, "hb", log)
    assert sv.is_running(s, "hb")


def _state(s: System) -> tuple[int, dict]:
    return store_apply.last_applied(s, "hb"), digests(s)


def test_wrong_verification_code(held):
    m, s, port, log = held
    before = _state(s)
    _, answers = _handshake(port, m, b"not the code", extra=_forged_batch())
    assert [type(a).__name__ for a in answers][-1] == "Refuse"
    _incident(s, "verification code")
    _untouched(s, *before)
    _still_replicates(m, s, log)


def test_a_caller_without_the_code_gets_no_proof_from_the_slave(held):
    """The master proves first: a stranger sees the slave's Welcome (a nonce, no proof), and after its
    guessed Proof only a refusal and the end of the connection - nothing to test code guesses against."""
    m, s, port, log = held
    before = _state(s)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        hello = _hello(m)
        c.sendall(encode_frame(TYPES[Hello], hello_payload(hello)))
        [first] = _frames(c)
        welcome = _event(first)
        assert isinstance(welcome, Welcome) and first.payload == welcome_body(welcome)  # no proof appended
        c.sendall(encode_frame(TYPES[Proof], os.urandom(32)) + _forged_batch())
        rest = _frames(c, want=10)  # everything until the slave closes the connection
        c.settimeout(5)
        assert c.recv(1) == b""  # closed by the slave
    answers = [_event(f) for f in rest]
    assert [type(a) for a in answers] == [Refuse] and answers[0].reason == "bad-code", answers
    _incident(s, "master did not prove the verification code")
    _untouched(s, *before)
    _still_replicates(m, s, log)


def test_replayed_handshake_is_refused(held):
    m, s, port, log = held
    recorded, answers = _handshake(port, m, procs.CODE.encode())
    assert type(answers[-1]).__name__ == "Accept", answers  # a genuine call, recorded on the wire
    before = _state(s)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(recorded + _forged_batch())  # the same bytes again: the slave's nonce is new, the proof is stale
        replies = [type(_event(f)).__name__ for f in _frames(c, 2)]
    assert replies[0] == "Welcome" and replies[-1] == "Refuse", replies
    _incident(s, "verification code")
    _untouched(s, *before)
    _still_replicates(m, s, log)


def test_peer_claiming_another_servers_name(held):
    m, s, port, log = held
    before = _state(s)
    _, answers = _handshake(port, m, procs.CODE.encode(), name="intruder", extra=_forged_batch())
    assert type(answers[-1]).__name__ == "Refuse"
    _incident(s, "another server's name")
    _untouched(s, *before)
    _still_replicates(m, s, log)


def test_oversized_frame_is_refused_before_it_is_buffered(held):
    m, s, port, log = held
    before = _state(s)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(HEADER.pack(MAGIC, FRAME_VERSION, TYPES[Hello], 1 << 30, 0) + b"x" * 1000)
        replies = [type(_event(f)).__name__ for f in _frames(c)]
    assert replies == ["Refuse"]
    _incident(s, "exceeds the limit")
    _untouched(s, *before)
    _still_replicates(m, s, log)


def test_a_master_of_the_previous_protocol_version_is_refused_naming_both(held):
    """A release where the slave proved first (version 1) calls: one line names both versions."""
    m, s, port, log = held
    before = _state(s)
    old = Hello("hb", PROTOCOL_VERSION - 1, m.history_id, m.epoch, m.queue.last_tno(), os.urandom(32))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(encode_frame(TYPES[Hello], hello_payload(old)))
        answers = [_event(f) for f in _frames(c)]
    assert [type(a) for a in answers] == [Refuse] and answers[0].reason == "version", answers
    text = f"the peer speaks replication protocol {PROTOCOL_VERSION - 1}, this server {PROTOCOL_VERSION}"
    assert text in answers[0].message and "\n" not in answers[0].message
    _incident(s, text)
    _untouched(s, *before)
    _still_replicates(m, s, log)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connection_flood_while_the_pair_replicates(held):
    m, s, port, log = held
    sv.start(m, "hb")
    pid = st.pid_file_pid(sv.files(s, "hb"))
    procs.wait_until(lambda: sv.query(s, "hb")["state"] in (st.CONNECTED, st.READING_NETWORK), 15, "the master to connect")
    base = _fds(pid)
    stop = threading.Event()
    opened = [0]

    def flood(garbage: bool) -> None:
        socks = []
        while not stop.is_set() and len(socks) < 150:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=2)
                if garbage:
                    c.sendall(os.urandom(64))
                socks.append(c)
                opened[0] += 1
            except OSError:
                time.sleep(0.01)
        stop.wait(30)  # idle callers hold their sockets past the handshake time-out, until the test is done
        for c in socks:
            c.close()

    threads = [threading.Thread(target=flood, args=(g,), daemon=True) for g in (True, False, True, False)]
    for t in threads:
        t.start()
    try:
        procs.wait_until(lambda: opened[0] >= 400, 30, "the flood to open its connections")
        write(m, log, 300, 100)  # the real master goes on meanwhile
        procs.wait_applied(s, "hb", log.last, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert opened[0] >= 400
    _incident(s, "refused a call")
    procs.wait_until(lambda: _fds(pid) <= base + 5, 30, "the slave to close the flood's sockets")
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 10, "the acknowledgement")
    log.observe_ack(m.queue.cursor("hb"))
    oracle.check(m, s, "hb", log)
    assert sv.is_running(s, "hb") and sv.is_running(m, "hb")
