"""MultiValue delimiters, item-id rules and the display form of item bodies.

D3 is byte-oriented: an item body is attributes separated by the attribute
mark (254), values by the value mark (253), subvalues by the subvalue mark
(252).  On a terminal D3 shows them as ``^``, ``]`` and ``\\``.
"""

from __future__ import annotations

from d3hb.errors import UsageError

SM = 0xFF  # segment mark: end of item on disk, never part of data
AM = 0xFE
VM = 0xFD
SVM = 0xFC
SB = 0xFB  # start-buffer mark

AM_B, VM_B, SVM_B = bytes([AM]), bytes([VM]), bytes([SVM])
MAX_ID = 100
FIRST_RESERVED = 247  # no byte at or above this in an item id


def as_bytes(value: str | bytes) -> bytes:
    """str -> bytes as D3 does it: one character, one byte (latin-1)."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise UsageError(
            f"{value[:20]!r} has characters beyond one byte", "pass bytes (UTF-8 encoded) to store such text"
        ) from None


def check_id(item_id: str | bytes) -> bytes:
    """Return the id as bytes, or refuse it with the reason."""
    raw = as_bytes(item_id)
    if not raw:
        raise UsageError("empty item-id", "give an item-id of 1 to 100 characters")
    if len(raw) > MAX_ID:
        raise UsageError(f"item-id of {len(raw)} characters is too long", f"item-ids are at most {MAX_ID} characters")
    bad = next((b for b in raw if b >= FIRST_RESERVED), None)
    if bad is not None:
        names = {SM: "segment mark", AM: "attribute mark", VM: "value mark", SVM: "subvalue mark", SB: "start-buffer mark"}
        what = names.get(bad, f"byte {bad}")
        raise UsageError(f"item-id contains a {what}", f"item-ids may not contain marks or bytes of {FIRST_RESERVED} or above")
    return raw


def attributes(body: bytes) -> list[bytes]:
    return body.split(AM_B) if body else []


def to_lines(body: bytes) -> list[bytes]:
    """Body -> one attribute a line, value marks as ``]``, subvalue marks as ``\\``."""
    return [a.replace(VM_B, b"]").replace(SVM_B, b"\\") for a in attributes(body)]


def from_lines(text: bytes) -> bytes:
    """The inverse of :func:`to_lines`: one attribute a line (a trailing newline ends the last)."""
    if text.endswith(b"\n"):
        text = text[:-1]
    lines = text.split(b"\n") if text else []
    return AM_B.join(line.rstrip(b"\r").replace(b"]", VM_B).replace(b"\\", SVM_B) for line in lines)


def to_caret(body: bytes) -> bytes:
    """Body on one line, as D3's editor shows it: ``^`` ``]`` ``\\``."""
    return body.replace(AM_B, b"^").replace(VM_B, b"]").replace(SVM_B, b"\\")
