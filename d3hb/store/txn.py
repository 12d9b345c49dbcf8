"""Transactions: what the queue holds, the wire carries and transaction tapes keep.

Pure data and a compact binary codec, no I/O.  The codec is shared by the
replication protocol and the tape stream so a transaction has exactly one
byte form.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from d3hb.errors import RemoteProtocolError


class Kind(str, Enum):
    """Transaction kinds; the value is the one-letter code tlqdisplay shows in column T."""

    WRITE = "W"
    DELETE = "D"
    CLEAR = "C"
    CREATE_FILE = "F"
    DELETE_FILE = "X"
    CREATE_ACCOUNT = "A"
    DELETE_ACCOUNT = "Z"
    RESIZE = "R"
    DPTR = "P"  # a D-pointer's code changed (set-dptr)
    TEST = "T"  # D3's tltest record: proves the logging path end to end
    VERIFY = "V"  # verify marker: both sides digest at this number


FILE_KINDS = frozenset({Kind.WRITE, Kind.DELETE, Kind.CLEAR, Kind.CREATE_FILE, Kind.DELETE_FILE, Kind.RESIZE, Kind.DPTR})


@dataclass(frozen=True)
class Transaction:
    """One logged update.

    ``fof`` is the master's file-of-files number; ``account``, ``dict_name``
    and ``data_name`` name the same file so a slave whose FOF numbers differ
    still finds it.  ``data_name`` None means the dictionary level.
    """

    tno: int
    kind: Kind
    fof: int = 0
    account: str = ""
    dict_name: str = ""
    data_name: str | None = None
    item: bytes = b""
    body: bytes = b""
    code: str = ""
    modulo: int = 0
    ts: float = 0.0

    @property
    def file_ref(self) -> str:
        """The file as D3 writes it: ``dict invoices`` or ``invoices,2026``."""
        if self.data_name is None:
            return f"dict {self.dict_name}"
        if self.data_name == self.dict_name:
            return self.dict_name
        return f"{self.dict_name},{self.data_name}"


# tno, kind, fof, modulo, ts, then five length-prefixed strings.
_HEAD = struct.Struct(">QcIId")
_LEN = struct.Struct(">I")
_NO_DATA = 0xFFFFFFFF  # length marking data_name None (the dictionary level)


def encode(t: Transaction) -> bytes:
    parts = [_HEAD.pack(t.tno, t.kind.value.encode(), t.fof, t.modulo, t.ts)]
    for s in (t.account.encode(), t.dict_name.encode(), t.code.encode()):
        parts += [_LEN.pack(len(s)), s]
    if t.data_name is None:
        parts.append(_LEN.pack(_NO_DATA))
    else:
        d = t.data_name.encode()
        parts += [_LEN.pack(len(d)), d]
    for b in (t.item, t.body):
        parts += [_LEN.pack(len(b)), b]
    return b"".join(parts)


def decode(buf: bytes | memoryview, offset: int = 0) -> tuple[Transaction, int]:
    """Decode one transaction at ``offset``; return it and the offset after it.

    Raises :class:`RemoteProtocolError` naming what was wrong: the bytes come
    from a peer or a tape and are not trusted.
    """
    mv = memoryview(buf)
    try:
        tno, kind, fof, modulo, ts = _HEAD.unpack_from(mv, offset)
        offset += _HEAD.size
        fields: list[bytes | None] = []
        for _ in range(6):
            (n,) = _LEN.unpack_from(mv, offset)
            offset += _LEN.size
            if n == _NO_DATA and len(fields) == 3:
                fields.append(None)
                continue
            if offset + n > len(mv):
                raise RemoteProtocolError("transaction record truncated", "the sender must resend it")
            fields.append(bytes(mv[offset : offset + n]))
            offset += n
        account, dict_name, code, data_name, item, body = fields
        txn = Transaction(
            tno=tno,
            kind=Kind(kind.decode("ascii")),
            fof=fof,
            account=account.decode(),  # type: ignore[union-attr]
            dict_name=dict_name.decode(),  # type: ignore[union-attr]
            data_name=None if data_name is None else data_name.decode(),
            item=item or b"",
            body=body or b"",
            code=code.decode(),  # type: ignore[union-attr]
            modulo=modulo,
            ts=ts,
        )
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise RemoteProtocolError(f"malformed transaction record ({exc})", "the sender must resend it") from None
    return txn, offset
