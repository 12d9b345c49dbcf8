"""The tape stream: one versioned byte format for every tape operation.

A full save, an account-save, a t-dump and a transaction dump all write the
same stream, whether it goes to a regular file, a named pipe or a socket.
Sans-IO: :class:`TapeWriter` turns records into bytes and :class:`TapeReader`
turns bytes, cut anywhere, back into records.  No files, no clock.

Layout (big-endian; docs/tape-format.md is the full description)::

    prologue   b"D3HBTAPE" + version (u16)             read before anything else
    block 0    the label
    block 1..N the record stream, cut into blocks of label.block_size bytes
    block N+1  end of tape: the trailer (counts and a sha256)

    block      magic b"\\xd3\\x54" | type (L, D, E) | number u32 | length u32 |
               crc32 u32 over type, number, length, payload | payload

Records may span blocks: a block is a fixed slice of the record stream, so a
1 MiB item costs no special case and no block is ever larger than the label
says.  A record is yielded only once every block holding it has passed its
checksum, so a corrupt block never produces a record; the trailer's digest
catches what a CRC could miss.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass

from d3hb.errors import LocalProtocolError, RemoteProtocolError, TapeError, UsageError
from d3hb.protocol.crc import crc32
from d3hb.store import txn as txn_codec
from d3hb.store.records import Account, File, Item
from d3hb.store.txn import Transaction

logger = logging.getLogger(__name__)

TAPE_MAGIC = b"D3HBTAPE"
TAPE_VERSION = 1
BLOCK_SIZE = 64 * 1024
MIN_BLOCK = 64  # small blocks only make sense in tests; D3 tapes use 500 and up
MAX_BLOCK = 1024 * 1024
MAX_LABEL = 4096
MAX_RECORD = 1 << 30  # SQLite's own limit on a value: no genuine item is larger
LABEL_TEXT_MAX = 48  # D3's "optional 48-character string"
KINDS = ("save", "account-save", "t-dump", "txn-dump")

_PROLOGUE = struct.Struct(">8sH")  # PROLOGUE_SIZE bytes
_BLOCK_MAGIC = b"\xd3\x54"
_BLOCK = struct.Struct(">2scIII")  # magic, type, number, length, crc
BLOCK_HEADER = _BLOCK.size  # bytes of framing per block, for volume arithmetic
PROLOGUE_SIZE = 10
_LABEL, _DATA, _END = b"L", b"D", b"E"
_REC = struct.Struct(">cI")  # record tag, payload length
_ACCOUNT, _FILE, _ITEM, _TXN = b"A", b"F", b"I", b"T"
_LABEL_HEAD = struct.Struct(">HIQId")  # version, block size, start tno, epoch, created
_FILE_HEAD = struct.Struct(">II")  # fof, modulo
_ITEM_HEAD = struct.Struct(">IH")  # fof, id length
_ITEM_REC_HEAD = struct.Struct(">cIIH")  # _REC then _ITEM_HEAD, packed at once for items
_TRAILER = struct.Struct(">QQQQQI32s")  # accounts, files, items, txns, bytes, blocks, sha256
_U16 = struct.Struct(">H")
_NONE = 0xFFFF  # string length marking data_name None (the dictionary level)

CORRUPT = "the tape is corrupt — use another copy"


@dataclass(frozen=True)
class Label:
    """What block 0 says about the tape; ``created`` is passed in, never read from a clock."""

    kind: str
    system: str
    history_id: str
    created: float
    text: str = ""
    start_tno: int = 0  # the queue's last transaction number when the save began
    epoch: int = 0  # the source's epoch: a restore continues its history
    block_size: int = BLOCK_SIZE
    version: int = TAPE_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown tape kind {self.kind!r}", f"use one of {', '.join(KINDS)}")
        if len(self.text) > LABEL_TEXT_MAX:
            raise UsageError(f"tape label of {len(self.text)} characters is too long", f"a tape label is at most {LABEL_TEXT_MAX} characters")
        if not MIN_BLOCK <= self.block_size <= MAX_BLOCK:
            raise UsageError(f"tape block size {self.block_size} is out of range", f"use {MIN_BLOCK} to {MAX_BLOCK} bytes")


Record = Account | File | Item | Transaction  # the save records are defined once, in the store


@dataclass(frozen=True)
class Trailer:
    """The end-of-tape record: what the writer counted, checked by the reader."""

    accounts: int
    files: int
    items: int
    txns: int
    bytes: int  # length of the record stream (the records, without block framing)
    blocks: int  # data blocks, not counting the label and the end block
    digest: bytes  # sha256 over the label payload then the record stream


@dataclass(frozen=True)
class Progress:
    """How far a writer or reader has got: for status lines and Query figures."""

    blocks: int = 0
    tape_bytes: int = 0
    record_bytes: int = 0
    accounts: int = 0
    files: int = 0
    items: int = 0
    txns: int = 0


class _Counter:
    """Counts records and hashes the stream identically on both sides."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.accounts = self.files = self.items = self.txns = 0
        self.record_bytes = self.tape_bytes = self.blocks = 0

    def count(self, rec: Record) -> None:
        if isinstance(rec, Item):
            self.items += 1
        elif isinstance(rec, File):
            self.files += 1
        elif isinstance(rec, Account):
            self.accounts += 1
        else:
            self.txns += 1

    def progress(self) -> Progress:
        return Progress(self.blocks, self.tape_bytes, self.record_bytes, self.accounts, self.files, self.items, self.txns)

    def trailer(self) -> Trailer:
        return Trailer(self.accounts, self.files, self.items, self.txns, self.record_bytes, self.blocks, self.sha.digest())


# -- encoding -------------------------------------------------------------


def _s(text: str) -> bytes:
    raw = text.encode()
    if len(raw) >= _NONE:
        raise LocalProtocolError(f"name {text[:20]!r}... is too long for a tape", "names are at most 65534 bytes")
    return _U16.pack(len(raw)) + raw


def _encode_label(label: Label) -> bytes:
    head = _LABEL_HEAD.pack(label.version, label.block_size, label.start_tno, label.epoch, label.created)
    return head + b"".join(_s(x) for x in (label.kind, label.system, label.history_id, label.text))


def encode_record(rec: Record) -> bytes:
    """One record as it sits in the record stream: tag, length, payload."""
    try:
        if isinstance(rec, Item):
            tag, payload = _ITEM, _ITEM_HEAD.pack(rec.fof, len(rec.item_id)) + rec.item_id + rec.body
        elif isinstance(rec, File):
            data = _U16.pack(_NONE) if rec.data_name is None else _s(rec.data_name)
            tag, payload = _FILE, _FILE_HEAD.pack(rec.fof, rec.modulo) + _s(rec.account) + _s(rec.dict_name) + _s(rec.code) + data
        elif isinstance(rec, Account):
            tag, payload = _ACCOUNT, _s(rec.name) + _s(rec.code)
        elif isinstance(rec, Transaction):
            tag, payload = _TXN, txn_codec.encode(rec)
        else:
            raise LocalProtocolError(f"{type(rec).__name__} is not a tape record", "write Account, File, Item or Transaction records")
    except struct.error as exc:
        raise LocalProtocolError(f"{type(rec).__name__} record cannot be written to tape ({exc})", "check the record's numbers and id") from None
    return _REC.pack(tag, len(payload)) + payload


def _block(btype: bytes, number: int, payload: bytes) -> bytes:
    head = struct.pack(">cII", btype, number, len(payload))
    crc = crc32(payload, crc32(head))
    return _BLOCK.pack(_BLOCK_MAGIC, btype, number, len(payload), crc) + payload


# -- decoding -------------------------------------------------------------


class _Cursor:
    """Reads fields from one payload; any overrun is a struct.error or ValueError."""

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, st: struct.Struct) -> tuple:
        vals = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return vals

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("field runs past the end of its record")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def text(self, nullable: bool = False) -> str | None:
        (n,) = self.take(_U16)
        if n == _NONE and nullable:
            return None
        return self.raw(n).decode()

    def rest(self) -> bytes:
        out = bytes(self.buf[self.pos :])
        self.pos = len(self.buf)
        return out

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise ValueError(f"{len(self.buf) - self.pos} stray bytes after the fields")


def _decode_label(payload: bytes) -> Label:
    cur = _Cursor(payload)
    version, block_size, start_tno, epoch, created = cur.take(_LABEL_HEAD)
    kind, system, history_id, text = (cur.text() for _ in range(4))
    cur.done()
    return Label(kind, system, history_id, created, text, start_tno, epoch, block_size, version)  # type: ignore[arg-type]


def decode_record(tag: bytes, payload: bytes) -> Record:
    cur = _Cursor(payload)
    if tag == _ITEM:
        fof, n = cur.take(_ITEM_HEAD)
        return Item(fof, cur.raw(n), cur.rest())
    if tag == _FILE:
        fof, modulo = cur.take(_FILE_HEAD)
        account, dict_name, code = cur.text(), cur.text(), cur.text()
        data_name = cur.text(nullable=True)
        cur.done()
        return File(fof, account, dict_name, data_name, code, modulo)  # type: ignore[arg-type]
    if tag == _ACCOUNT:
        name, code = cur.text(), cur.text()
        cur.done()
        return Account(name, code)  # type: ignore[arg-type]
    if tag == _TXN:
        t, end = txn_codec.decode(payload)
        if end != len(payload):
            raise ValueError("stray bytes after a transaction")
        return t
    raise ValueError(f"unknown record type {tag!r}")


# -- writer ---------------------------------------------------------------


class TapeWriter:
    """Records in, whole blocks out.

    ``start()`` gives the prologue and label, every ``add()`` the blocks it
    completed (often ``b""``), ``finish()`` the last data block, the end mark
    and trailer.  Every non-empty return is a whole number of blocks, so a
    caller may split volumes between any two returns.
    """

    def __init__(self, label: Label) -> None:
        if label.version != TAPE_VERSION:
            raise UsageError(f"cannot write tape format version {label.version}", f"this d3hb writes version {TAPE_VERSION}")
        self.label = label
        self._pending = bytearray()
        self._count = _Counter()
        self._state = "new"

    @property
    def progress(self) -> Progress:
        return self._count.progress()

    def start(self) -> bytes:
        self._need("new", "start")
        self._state = "writing"
        payload = _encode_label(self.label)
        self._count.sha.update(payload)
        out = _PROLOGUE.pack(TAPE_MAGIC, TAPE_VERSION) + _block(_LABEL, 0, payload)
        self._count.tape_bytes += len(out)
        return out

    def add(self, rec: Record) -> bytes:
        self._need("writing", "add a record")
        if isinstance(rec, Item):
            # The bulk of every save: its pieces go straight into the block
            # being filled (one copy of the body), the digest is taken per block.
            try:
                head = _ITEM_REC_HEAD.pack(_ITEM, _ITEM_HEAD.size + len(rec.item_id) + len(rec.body), rec.fof, len(rec.item_id))
            except struct.error as exc:
                raise LocalProtocolError(f"Item record cannot be written to tape ({exc})", "check the record's numbers and id") from None
            before = len(self._pending)
            self._pending += head
            self._pending += rec.item_id
            self._pending += rec.body
            self._count.items += 1
            self._count.record_bytes += len(self._pending) - before
        else:
            raw = encode_record(rec)
            self._count.count(rec)
            self._count.record_bytes += len(raw)
            self._pending += raw
        size = self.label.block_size
        if len(self._pending) < size:
            return b""
        whole = len(self._pending) - len(self._pending) % size
        with memoryview(self._pending) as mv:
            out = b"".join([self._emit(mv[i : i + size].tobytes()) for i in range(0, whole, size)])
        del self._pending[:whole]
        return out

    def flush(self) -> bytes:
        """Close the current block early, e.g. so a slow transaction dump reaches a pipe now."""
        self._need("writing", "flush")
        if not self._pending:
            return b""
        out = self._emit(bytes(self._pending))
        self._pending.clear()
        return out

    def finish(self) -> bytes:
        out = self.flush()
        self._state = "finished"
        end = _block(_END, self._count.blocks + 1, _TRAILER.pack(*_trailer_fields(self._count.trailer())))
        self._count.tape_bytes += len(end)
        logger.debug("tape finished: %s", self._count.progress())
        return out + end

    @property
    def trailer(self) -> Trailer:
        """What the end block says; valid once finished."""
        return self._count.trailer()

    def _emit(self, payload: bytes) -> bytes:
        # Blocks are consecutive slices of the record stream: hashing them in
        # order is hashing the records, as the reader does.
        self._count.sha.update(payload)
        self._count.blocks += 1
        out = _block(_DATA, self._count.blocks, payload)
        self._count.tape_bytes += len(out)
        return out

    def _need(self, state: str, doing: str) -> None:
        if self._state != state:
            raise LocalProtocolError(f"cannot {doing} on a tape writer that is {self._state}", "start a tape, add its records, then finish it once")


def _trailer_fields(t: Trailer) -> tuple:
    return (t.accounts, t.files, t.items, t.txns, t.bytes, t.blocks, t.digest)


# -- reader ---------------------------------------------------------------


class TapeReader:
    """Bytes in, in any chunks; verified records out.

    Holds at most one block of input beyond what it was fed, plus the record
    being assembled (a record spanning blocks is yielded when its last block
    checks out).  Any fault raises :class:`TapeError` and the reader stays dead.
    """

    def __init__(self) -> None:
        self.label: Label | None = None
        self.trailer: Trailer | None = None
        self._buf = bytearray()
        self._records = bytearray()
        self._count = _Counter()
        self._stage = "prologue"
        self._next = 0  # number of the block expected next
        self._dead: TapeError | None = None

    @property
    def progress(self) -> Progress:
        return self._count.progress()

    @property
    def at_end(self) -> bool:
        """True once the end of tape and a matching trailer have been read."""
        return self.trailer is not None

    def feed(self, data: bytes) -> list[Record]:
        if self._dead is not None:
            raise self._dead
        if not data:
            return []
        if self._stage == "end":
            return self._fail(TapeError(f"{len(data)} bytes after the end of tape", CORRUPT))
        self._buf += data
        self._count.tape_bytes += len(data)
        out: list[Record] = []
        try:
            if self._stage == "prologue" and not self._prologue():
                return out
            while self._stage != "end" and self._one_block(out):
                pass
            if self._stage == "end" and self._buf:
                raise TapeError(f"{len(self._buf)} bytes after the end of tape", CORRUPT)
        except TapeError as exc:
            self._fail(exc)
        return out

    def close(self) -> Trailer:
        """The input ended: return the verified trailer, or say what is missing."""
        if self._dead is not None:
            raise self._dead
        if self.trailer is None:
            if self._stage == "prologue" and not self._buf:
                self._fail(TapeError("the tape is empty", "check that the save wrote to this device or pipe"))
            last = self._next - 1
            where = f"after block {last}" if last >= 0 else "before its label"
            self._fail(TapeError(f"tape truncated {where}", "the save did not finish or the copy is incomplete — use another copy"))
        return self.trailer  # type: ignore[return-value]

    def _fail(self, exc: TapeError) -> list[Record]:
        self._dead = exc
        self._buf.clear()
        self._records.clear()
        raise exc

    def _prologue(self) -> bool:
        head = bytes(self._buf[: _PROLOGUE.size])
        if not TAPE_MAGIC.startswith(head[:8]):
            raise TapeError("this is not a d3hb tape (its first bytes are not a d3hb tape header)", "check the device or pipe, and that the save finished")
        if len(head) < _PROLOGUE.size:
            return False
        _, version = _PROLOGUE.unpack(head)
        if version != TAPE_VERSION:
            raise TapeError(f"tape format version {version} is not supported (this d3hb reads version {TAPE_VERSION})", "read it with the d3hb release that wrote it")
        del self._buf[: _PROLOGUE.size]
        self._stage = "label"
        return True

    def _one_block(self, out: list[Record]) -> bool:
        """Consume one whole block if buffered; False when more input is needed."""
        n = self._next
        if len(self._buf) < _BLOCK.size:
            return False
        magic, btype, number, length, crc = _BLOCK.unpack_from(self._buf)
        limit = MAX_LABEL if self.label is None else max(self.label.block_size, _TRAILER.size)
        if magic != _BLOCK_MAGIC or length > limit:
            raise TapeError(f"tape block {n} has a bad header", CORRUPT)
        end = _BLOCK.size + length
        if len(self._buf) < end:
            return False
        # The payload is read in place (a view of the buffer): records are
        # copied once, into their own fields, and the view is gone before the
        # buffer moves on.
        with memoryview(self._buf) as whole, whole[_BLOCK.size : end] as payload:
            if crc32(payload, crc32(struct.pack(">cII", btype, number, length))) != crc:
                raise TapeError(f"tape block {n} checksum mismatch", CORRUPT)
            if number != n:
                raise TapeError(f"tape block {number} found where block {n} was expected", "blocks are missing or out of order — use another copy")
            expected = (_LABEL,) if self._stage == "label" else (_DATA, _END)
            if btype not in expected:
                raise TapeError(f"tape block {n} is of type {btype!r} where {' or '.join(map(repr, expected))} belongs", CORRUPT)
            if btype == _LABEL:
                self._read_label(payload.tobytes())
            elif btype == _DATA:
                self._read_data(n, payload, out)
            else:
                self._read_trailer(n, payload.tobytes())
        del self._buf[:end]
        self._next += 1
        return True

    def _read_label(self, payload: bytes) -> None:
        try:
            label = _decode_label(payload)
        except (struct.error, ValueError, UnicodeDecodeError, UsageError) as exc:
            raise TapeError(f"tape label is malformed ({exc})", CORRUPT) from None
        if label.version != TAPE_VERSION:
            raise TapeError(f"tape label says format version {label.version}, the tape header {TAPE_VERSION}", CORRUPT)
        self._count.sha.update(payload)
        self.label = label
        self._stage = "data"

    def _read_data(self, n: int, payload: memoryview, out: list[Record]) -> None:
        if not payload:
            raise TapeError(f"tape block {n} is empty", CORRUPT)
        self._count.sha.update(payload)
        self._count.blocks += 1
        self._count.record_bytes += len(payload)
        # Records are cut from the block itself unless one began in an earlier
        # block (then the rest is appended to it and cut from there).
        held = self._records
        if held:
            held += payload
            src = memoryview(held)
        else:
            src = payload
        size = len(src)
        pos = 0
        items = 0
        try:
            while size - pos >= _REC.size:
                tag, length = _REC.unpack_from(src, pos)
                if length > MAX_RECORD:
                    raise ValueError(f"record of {length} bytes")
                stop = pos + _REC.size + length
                if stop > size:
                    break
                start = pos + _REC.size
                if tag == _ITEM:
                    # The bulk of every save: decoded in place, one copy per field.
                    fof, idlen = _ITEM_HEAD.unpack_from(src, start)
                    body = start + _ITEM_HEAD.size + idlen
                    if body > stop:
                        raise ValueError("field runs past the end of its record")
                    out.append(Item(fof, src[start + _ITEM_HEAD.size : body].tobytes(), src[body:stop].tobytes()))
                    items += 1
                else:
                    rec = decode_record(tag, src[start:stop].tobytes())
                    self._count.count(rec)
                    out.append(rec)
                pos = stop
        except (struct.error, ValueError, UnicodeDecodeError, RemoteProtocolError) as exc:
            raise TapeError(f"tape block {n} holds a malformed record ({exc})", CORRUPT) from None
        finally:
            self._count.items += items
            if src is not payload:
                src.release()
        if held:
            del held[:pos]
        elif pos < size:
            held += payload[pos:]

    def _read_trailer(self, n: int, payload: bytes) -> None:
        if len(payload) != _TRAILER.size:
            raise TapeError(f"tape trailer in block {n} is malformed", CORRUPT)
        said = Trailer(*_TRAILER.unpack(payload))
        if self._records:
            raise TapeError(f"tape ends in the middle of a record ({len(self._records)} bytes of it)", CORRUPT)
        seen = self._count.trailer()
        for field in ("accounts", "files", "items", "txns", "bytes", "blocks"):
            if getattr(said, field) != getattr(seen, field):
                raise TapeError(f"tape trailer says {getattr(said, field)} {field}, the tape holds {getattr(seen, field)}", CORRUPT)
        if said.digest != seen.digest:
            raise TapeError("tape digest mismatch: the records are not those that were written", CORRUPT)
        self.trailer = said
        self._stage = "end"
