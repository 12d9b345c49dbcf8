"""Mutual challenge-response over the pair's shared verification code.

Each side proves it knows the code without sending it: a proof is
HMAC-SHA256 keyed with the code over a role label and the handshake
*transcript* — the Hello payload and the Welcome payload exactly as they
crossed the wire.  The calling side (the master) proves first, in Proof; the
slave proves in Accept only after it has checked the master's proof, so
whoever merely reaches the slave's port never gets a proof to test guesses
of the code against.  The transcript holds both fresh nonces, the server
name and every field either side asserted, so

- a proof recorded in another session fails (the other side's nonce is new);
- one side's proof cannot be reflected back as the other's (the labels differ);
- a field changed in transit (epoch, history id, last numbers) fails the proof.

No I/O: the caller supplies the randomness.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

from d3hb.protocol.events import NONCE_SIZE

MASTER_LABEL = b"d3hb replication master proof\x00"
SLAVE_LABEL = b"d3hb replication slave proof\x00"
_LEN = struct.Struct(">I")


def new_nonce(random_bytes: Callable[[int], bytes]) -> bytes:
    nonce = random_bytes(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return bytes(nonce)


def transcript(hello_payload: bytes, welcome_body: bytes) -> bytes:
    # Length prefixes keep the split between the two parts unambiguous.
    return _LEN.pack(len(hello_payload)) + hello_payload + _LEN.pack(len(welcome_body)) + welcome_body


def make_proof(code: bytes, label: bytes, hello_payload: bytes, welcome_body: bytes) -> bytes:
    return hmac.new(code, label + transcript(hello_payload, welcome_body), hashlib.sha256).digest()


def check_proof(code: bytes, label: bytes, hello_payload: bytes, welcome_body: bytes, proof: bytes) -> bool:
    """Constant-time comparison, so timing says nothing about how close a guess was."""
    return hmac.compare_digest(make_proof(code, label, hello_payload, welcome_body), proof)
