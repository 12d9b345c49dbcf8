"""The vault link, sans-IO: handshake, proofs, sealed codes, the data phase, malformed input."""

from __future__ import annotations

import json
import os

import pytest

from d3hb.errors import LocalProtocolError, RemoteProtocolError
from d3hb.protocol import vault as vp
from d3hb.protocol.frames import encode_frame

KEY = vp.password_key("pick0", "s3cret")
CODE = b"C" * vp.CODE_SIZE


def pump(a, b, *, bytewise: bool = False) -> tuple[list, list]:
    """Move bytes both ways until quiet; events seen by each side."""
    ev_a, ev_b = [], []
    for _ in range(20):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for data, peer, evs in ((out_a, b, ev_b), (out_b, a, ev_a)):
            chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
            for ch in chunks:
                if ch:
                    evs += peer.feed(ch)
    return ev_a, ev_b


def handshake(client_code, stored_code, *, want="session", new_code=None, server_key=KEY, client_key=KEY, bytewise=False):
    cl = vp.ClientConn("pick0", client_key, want=want, code=client_code, new_code=new_code, random_bytes=os.urandom)
    sv = vp.ServerConn()
    cl.start()
    _, ev_s = pump(cl, sv, bytewise=bytewise)
    assert ev_s == [vp.HelloReceived("pick0", want, vp.VAULT_VERSION)]
    sv.challenge(os.urandom(vp.NONCE_SIZE))
    _, ev_s = pump(cl, sv, bytewise=bytewise)
    assert ev_s == [vp.AuthReceived()]
    return cl, sv, sv.check(server_key, stored_code)


@pytest.mark.parametrize("bytewise", [False, True])
def test_matching_code_opens_read_write(bytewise):
    cl, sv, chk = handshake(CODE, CODE, bytewise=bytewise)
    assert chk == vp.AuthCheck(True, True, None)
    sv.accept(KEY, "rw")
    ev_c, _ = pump(cl, sv, bytewise=bytewise)
    assert ev_c == [vp.Accepted("rw", "")]
    assert cl.mode == "rw" and cl.state == "open"


def test_no_code_or_wrong_code_proves_password_only():
    _, _, chk = handshake(None, CODE)
    assert chk.password_ok and not chk.code_ok
    _, _, chk = handshake(b"X" * vp.CODE_SIZE, CODE)
    assert chk.password_ok and not chk.code_ok


def test_wrong_password_fails_the_proof():
    _, _, chk = handshake(CODE, CODE, client_key=vp.password_key("pick0", "guess"))
    assert not chk.password_ok and not chk.code_ok


def test_password_key_depends_on_node():
    assert vp.password_key("pick0", "pw") != vp.password_key("pick1", "pw")


def test_define_carries_the_new_code_sealed():
    new = os.urandom(vp.CODE_SIZE)
    cl = vp.ClientConn("pick0", KEY, want="define", new_code=new, random_bytes=os.urandom)
    sv = vp.ServerConn()
    cl.start()
    pump(cl, sv)
    sv.challenge(os.urandom(vp.NONCE_SIZE))
    cl.feed(sv.data_to_send())
    wire = cl.data_to_send()
    assert new.hex() not in wire.decode("latin-1") and new not in wire  # never in clear
    assert sv.feed(wire) == [vp.AuthReceived()]
    assert sv.check(KEY, None) == vp.AuthCheck(True, False, new)
    # A vault that has the node but another password recovers no code.
    sv_other = vp.ServerConn()
    cl2 = vp.ClientConn("pick0", KEY, want="define", new_code=new, random_bytes=os.urandom)
    cl2.start()
    pump(cl2, sv_other)
    sv_other.challenge(os.urandom(vp.NONCE_SIZE))
    pump(cl2, sv_other)
    assert sv_other.check(vp.password_key("pick0", "other"), None) == vp.AuthCheck(False, False, None)


def test_tampered_seal_fails_the_proof():
    cl = vp.ClientConn("pick0", KEY, want="forcesync", new_code=CODE, random_bytes=os.urandom)
    sv = vp.ServerConn()
    cl.start()
    pump(cl, sv)
    sv.challenge(os.urandom(vp.NONCE_SIZE))
    cl.feed(sv.data_to_send())
    wire = cl.data_to_send()
    frame = sv._decoder.feed(wire)  # read the frame as the server would, then rebuild it altered
    doc = json.loads(frame[0].payload)
    doc["sealed"] = ("00" if doc["sealed"][:2] != "00" else "11") + doc["sealed"][2:]
    sv2_events = sv.feed(encode_frame(vp.AUTH, json.dumps(doc).encode()))
    assert sv2_events == [vp.AuthReceived()]
    assert sv.check(KEY, None).password_ok is False


def test_recorded_auth_is_useless_in_a_new_session():
    cl, sv, chk = handshake(CODE, CODE)
    assert chk.code_ok
    recorded = sv._auth
    cl2 = vp.ClientConn("pick0", KEY, code=CODE, random_bytes=os.urandom)
    sv2 = vp.ServerConn()
    cl2.start()
    pump(cl2, sv2)
    sv2.challenge(os.urandom(vp.NONCE_SIZE))
    cl2.feed(sv2.data_to_send())
    cl2.data_to_send()  # the genuine auth is dropped; the recorded one is played instead
    sv2.feed(encode_frame(vp.AUTH, json.dumps(recorded).encode()))
    assert sv2.check(KEY, CODE) == vp.AuthCheck(False, False, None)


def test_client_refuses_a_server_without_the_password():
    cl, sv, _ = handshake(CODE, CODE)
    sv.accept(vp.password_key("pick0", "other"), "rw")
    with pytest.raises(RemoteProtocolError, match="could not prove"):
        pump(cl, sv)
    assert cl.mode is None


def test_refusal_reaches_the_client_as_an_event():
    cl = vp.ClientConn("nobody", KEY, random_bytes=os.urandom)
    sv = vp.ServerConn()
    cl.start()
    pump(cl, sv)
    sv.error("node 'nobody' is not registered on this vault", "register it")
    ev_c, _ = pump(cl, sv)
    assert ev_c == [vp.ErrorReceived("node 'nobody' is not registered on this vault", "register it")]
    assert sv.state == "closed"


def test_data_phase_round_trip_bytewise():
    cl, sv, _ = handshake(CODE, CODE)
    sv.accept(KEY, "rw")
    pump(cl, sv)
    payload = os.urandom(vp.CHUNK + 1000)  # two DATA frames
    cl.request("put", name="v.001", part=1)
    cl.send_data(payload)
    cl.send_end(len(payload), "abc")
    _, ev_s = pump(cl, sv, bytewise=False)
    assert ev_s[0] == vp.RequestReceived("put", {"name": "v.001", "part": 1})
    got = b"".join(e.data for e in ev_s if isinstance(e, vp.Data))
    assert got == payload and ev_s[-1] == vp.End(len(payload), "abc")
    sv.reply(stored="v.001")
    sv.error("disk full", "free space")  # after open, an error fails the request, not the session
    ev_c, _ = pump(cl, sv, bytewise=True)
    assert ev_c == [vp.Reply({"stored": "v.001"}), vp.ErrorReceived("disk full", "free space")]
    assert sv.state == "open" and cl.state == "open"


def test_requests_before_open_are_refused_locally():
    cl = vp.ClientConn("pick0", KEY, random_bytes=os.urandom)
    cl.start()
    with pytest.raises(LocalProtocolError):
        cl.request("list")
    with pytest.raises(LocalProtocolError):
        vp.ClientConn("pick0", KEY, want="define", random_bytes=os.urandom)  # a define needs a new code


def test_out_of_order_and_foreign_frames_are_refused():
    sv = vp.ServerConn()
    with pytest.raises(RemoteProtocolError):
        sv.feed(encode_frame(vp.REQUEST, b'{"op":"list"}'))  # before any handshake
    sv = vp.ServerConn()
    with pytest.raises(RemoteProtocolError, match="not a d3hb vault client"):
        sv.feed(encode_frame(vp.HELLO, b'{"tag":"D3TS","node":"x","want":"session","nonce":""}'))
    sv = vp.ServerConn()
    with pytest.raises(RemoteProtocolError):
        sv.feed(b"GET / HTTP/1.1\r\n\r\n")
    # Before the password is proved nothing large is buffered.
    sv = vp.ServerConn()
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        sv.feed(encode_frame(vp.HELLO, b"x" * (vp.HANDSHAKE_LIMIT + 1)))


def test_fuzzed_bytes_never_escape_as_other_errors():
    import random

    rnd = random.Random(9)
    cl, sv, _ = handshake(CODE, CODE)
    sv.accept(KEY, "rw")
    good = sv.data_to_send()
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        c = vp.ClientConn("pick0", KEY, code=CODE, random_bytes=os.urandom)
        c.start()
        c.state = "auth"
        try:
            c.feed(bytes(data))
        except RemoteProtocolError:
            pass
