"""The tape stream round-trips whatever the chunking, and no damage goes unnoticed."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d3hb.errors import LocalProtocolError, TapeError, UsageError
from d3hb.protocol.tape import (
    BLOCK_HEADER,
    BLOCK_SIZE,
    PROLOGUE_SIZE,
    TAPE_MAGIC,
    Account,
    File,
    Item,
    Label,
    Progress,
    TapeReader,
    TapeWriter,
    Trailer,
)
from d3hb.store.txn import Kind, Transaction

AM, VM, SVM = b"\xfe", b"\xfd", b"\xfc"
HEADER = BLOCK_HEADER
PROLOGUE = PROLOGUE_SIZE


def label(kind: str = "save", block_size: int = BLOCK_SIZE, **kw) -> Label:
    return Label(kind, "pick0", "hist-1", 1_767_225_600.25, kw.pop("text", "weekly full"), kw.pop("start_tno", 4711), 3, block_size, **kw)


def save_records() -> list:
    """A save's shape: accounts, then each file level and its items; every D-pointer code."""
    recs: list = [Account("dm", "D"), Account("sales", "DL")]
    fof = 10
    for code in ("D", "DL", "DX", "DY", "DT"):
        name = f"f{code.lower()}"
        recs.append(File(fof, "sales", name, None, code, 7))
        recs.append(Item(fof, b"@id", b"A" + AM + b"0" + AM + b"S"))
        recs.append(File(fof + 1, "sales", name, name, code, 13))
        for i in range(5):
            recs.append(Item(fof + 1, str(i).encode(), b"name" + AM + b"a" + VM + b"b" + SVM + b"c" + AM + bytes([i])))
        fof += 2
    recs.append(File(fof, "sales", "empty", None, "D", 3))  # an empty file: no items follow
    recs.append(File(fof + 1, "sales", "empty", "empty", "D", 3))
    recs.append(File(fof + 2, "sales", "inv", "2026", "DL", 5))  # a second data section
    recs.append(Item(fof + 2, b"x" * 100, b"longest id"))
    recs.append(Item(fof + 2, b"blank", b""))
    recs.append(Item(fof + 2, b"marks", AM * 3 + VM * 3 + SVM * 3 + bytes(range(256))))
    return recs


def txn_records() -> list:
    return [
        Transaction(tno=100 + n, kind=k, fof=12, account="sales", dict_name="inv", data_name=None if n % 2 else "inv",
                    item=b"k" * (n + 1), body=b"v" + AM + b"w" + VM + SVM, code="DL", modulo=7, ts=1.5 + n)
        for n, k in enumerate(Kind)
    ]  # fmt: skip


def write(lab: Label, recs: list, pieces: list[bytes] | None = None) -> bytes:
    w = TapeWriter(lab)
    out = [w.start()]
    out += [w.add(r) for r in recs]
    out.append(w.finish())
    if pieces is not None:
        pieces.extend(out)
    return b"".join(out)


def read(tape: bytes, chunks: list[int] | None = None) -> tuple[TapeReader, list, Trailer]:
    r = TapeReader()
    got: list = []
    if chunks is None:
        got += r.feed(tape)
    else:
        pos = 0
        for n in chunks:
            got += r.feed(tape[pos : pos + n])
            pos += n
        got += r.feed(tape[pos:])
    return r, got, r.close()


def small_tape() -> tuple[bytes, list]:
    recs = [Account("sales", "D"), File(10, "sales", "inv", "inv", "DL", 7), Item(10, b"1", b"a" + AM + b"b" + VM + b"c"),
            Item(10, b"2", b"z" * 150), Transaction(7, Kind.WRITE, 10, "sales", "inv", "inv", b"1", b"x")]  # fmt: skip
    return write(label(block_size=64), recs), recs


# -- round trips ----------------------------------------------------------


@pytest.mark.parametrize("block_size", [64, 500, BLOCK_SIZE])
def test_save_round_trip_byte_at_a_time(block_size: int) -> None:
    recs = save_records()
    tape = write(label(block_size=block_size), recs)
    r, got, trailer = read(tape, [1] * len(tape))
    assert got == recs
    assert r.label == label(block_size=block_size)
    assert (trailer.accounts, trailer.files, trailer.items, trailer.txns) == (2, 13, 33, 0)
    assert {f.code for f in got if isinstance(f, File)} == {"D", "DL", "DX", "DY", "DT"}
    assert r.at_end


def test_txn_dump_round_trip_every_kind() -> None:
    recs = txn_records()
    r, got, trailer = read(write(label("txn-dump", 128), recs), [3] * 2000)
    assert got == recs and trailer.txns == len(Kind) and r.label.kind == "txn-dump"


def test_every_label_field_survives() -> None:
    lab = Label("t-dump", "vmrest", "h" * 40, 123.456, "dict inv heading" + "x" * 32, 2**40, 9, 1000)
    r, got, _ = read(write(lab, []))
    assert r.label == lab and got == []


def test_huge_item_spans_blocks_and_streams() -> None:
    body = random.Random(1).randbytes(1 << 20)
    recs = [Account("sales", "D"), File(10, "sales", "big", "big", "D", 7), Item(10, b"small", b"s"), Item(10, b"huge", body), Item(10, b"after", b"a")]
    pieces: list[bytes] = []
    tape = write(label(), recs, pieces)
    # Every piece the writer hands out is whole blocks; the huge item took many.
    data_blocks = [p for p in pieces[1:-1] if p]
    assert all(len(p) % (HEADER + BLOCK_SIZE) == 0 for p in data_blocks)
    assert sum(len(p) for p in data_blocks) // (HEADER + BLOCK_SIZE) >= 16
    r = TapeReader()
    # The records before the huge item come out as soon as their block is read.
    first_block_end = len(pieces[0]) + HEADER + BLOCK_SIZE
    early = r.feed(tape[:first_block_end])
    assert early == recs[:3]
    rest: list = []
    rng = random.Random(2)
    pos = first_block_end
    while pos < len(tape):
        n = rng.randrange(1, 100_000)
        rest += r.feed(tape[pos : pos + n])
        pos += n
    assert early + rest == recs
    assert r.close().items == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=12),
    block_size=st.sampled_from([64, 100, 333, 4096]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=40),
)
def test_random_splits(bodies: list[bytes], block_size: int, cuts: list[int]) -> None:
    recs = [File(5, "a", "f", None, "DY", 1)] + [Item(5, b"%d" % i, b) for i, b in enumerate(bodies)]
    _, got, trailer = read(write(label(block_size=block_size), recs), cuts)
    assert got == recs and trailer.items == len(bodies)


def test_flush_closes_a_block_early() -> None:
    w = TapeWriter(label(block_size=1024))
    tape = w.start() + w.add(Transaction(1, Kind.TEST))
    flushed = w.flush()
    assert flushed and w.flush() == b""
    tape += flushed + w.add(Transaction(2, Kind.TEST)) + w.finish()
    _, got, trailer = read(tape)
    assert [t.tno for t in got] == [1, 2] and trailer.blocks == 2


def test_progress_is_reported_on_both_sides() -> None:
    recs = save_records()
    w = TapeWriter(label(block_size=256))
    tape = w.start()
    seen = []
    for rec in recs:
        tape += w.add(rec)
        seen.append(w.progress.items)
    tape += w.finish()
    assert seen == sorted(seen) and seen[-1] == 33
    assert w.progress.tape_bytes == len(tape)
    r = TapeReader()
    items_so_far = []
    for i in range(0, len(tape), 200):
        r.feed(tape[i : i + 200])
        items_so_far.append(r.progress.items)
    assert items_so_far == sorted(items_so_far) and items_so_far[-1] == 33
    trailer = r.close()
    p = r.progress
    assert p == Progress(trailer.blocks, len(tape), trailer.bytes, 2, 13, 33, 0)
    assert w.trailer == trailer


def test_block_boundaries_are_whole_returns() -> None:
    pieces: list[bytes] = []
    write(label(block_size=64), save_records(), pieces)
    for p in pieces[1:-1]:
        assert len(p) % (HEADER + 64) == 0  # only full blocks before finish()


# -- damage ----------------------------------------------------------------


def _decode_all(tape: bytes) -> tuple[list, BaseException | None]:
    r = TapeReader()
    got: list = []
    try:
        for i in range(0, len(tape), 37):
            got += r.feed(tape[i : i + 37])
        r.close()
    except TapeError as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_is_detected(mask: int) -> None:
    tape, recs = small_tape()
    assert len(tape) > 500
    for pos in range(len(tape)):
        bad = bytearray(tape)
        bad[pos] ^= mask
        got, exc = _decode_all(bytes(bad))
        assert exc is not None, f"flip at {pos} went unnoticed"
        assert got == recs[: len(got)], f"flip at {pos} produced a wrong record"


def test_checksum_error_names_the_block() -> None:
    pieces: list[bytes] = []
    tape = write(label(block_size=64), save_records(), pieces)
    block3 = len(pieces[0]) + 2 * (HEADER + 64) + HEADER + 10
    bad = bytearray(tape)
    bad[block3] ^= 0x20
    with pytest.raises(TapeError) as e:
        TapeReader().feed(bytes(bad))
    assert str(e.value) == "tape block 3 checksum mismatch; the tape is corrupt — use another copy"


def test_truncation_anywhere_fails_at_close() -> None:
    tape, recs = small_tape()
    for cut in range(len(tape)):
        r = TapeReader()
        got = r.feed(tape[:cut])
        assert got == recs[: len(got)]
        with pytest.raises(TapeError):
            r.close()
    assert read(tape)[1] == recs


def test_truncation_message_names_the_last_block() -> None:
    pieces: list[bytes] = []
    tape = write(label(block_size=64), save_records(), pieces)
    label_end = len(pieces[0])
    for blocks, cut in ((0, label_end), (2, label_end + 2 * (HEADER + 64) + 5)):
        r = TapeReader()
        r.feed(tape[:cut])
        with pytest.raises(TapeError, match=rf"^tape truncated after block {blocks};"):
            r.close()
    with pytest.raises(TapeError, match="tape truncated before its label"):
        r = TapeReader()
        r.feed(tape[:12])
        r.close()
    with pytest.raises(TapeError, match="the tape is empty"):
        TapeReader().close()


def test_unknown_version_is_named() -> None:
    tape, _ = small_tape()
    bad = TAPE_MAGIC + struct.pack(">H", 7) + tape[PROLOGUE:]
    with pytest.raises(TapeError, match="tape format version 7 is not supported"):
        TapeReader().feed(bad)
    with pytest.raises(UsageError):
        TapeWriter(label(version=2))


def test_not_a_tape() -> None:
    with pytest.raises(TapeError, match="not a d3hb tape"):
        TapeReader().feed(b"L 01F4 12:00:00  Jan 01 2026 weekly")


def test_data_after_end_of_tape() -> None:
    tape, _ = small_tape()
    r = TapeReader()
    r.feed(tape)
    with pytest.raises(TapeError, match="after the end of tape"):
        r.feed(b"\x00")
    with pytest.raises(TapeError, match="after the end of tape"):
        TapeReader().feed(tape + tape)


def test_dropped_or_repeated_block_is_detected() -> None:
    pieces: list[bytes] = []
    tape = write(label(block_size=64), save_records(), pieces)
    start = len(pieces[0])
    blk = HEADER + 64
    dropped = tape[:start] + tape[start + blk :]
    repeated = tape[: start + blk] + tape[start : start + blk] + tape[start + blk :]
    for bad in (dropped, repeated):
        with pytest.raises(TapeError, match="found where block 1 was expected|found where block 2 was expected"):
            TapeReader().feed(bad)


def test_reader_stays_dead_after_an_error() -> None:
    r = TapeReader()
    with pytest.raises(TapeError) as first:
        r.feed(b"garbage!!!!")
    with pytest.raises(TapeError) as again:
        r.feed(TAPE_MAGIC)
    assert again.value is first.value
    with pytest.raises(TapeError):
        r.close()


# -- the writer's rules ----------------------------------------------------


def test_label_rules() -> None:
    assert label(text="x" * 48).text == "x" * 48
    with pytest.raises(UsageError, match="at most 48 characters"):
        label(text="x" * 49)
    with pytest.raises(UsageError, match="unknown tape kind"):
        label("backup")
    with pytest.raises(UsageError, match="block size"):
        label(block_size=10)


def test_writer_sequence_is_enforced() -> None:
    w = TapeWriter(label())
    with pytest.raises(LocalProtocolError):
        w.add(Account("a", "D"))
    w.start()
    with pytest.raises(LocalProtocolError):
        w.start()
    with pytest.raises(LocalProtocolError, match="not a tape record"):
        w.add("item")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="cannot be written"):
        w.add(Item(-1, b"x", b""))
    w.finish()
    with pytest.raises(LocalProtocolError):
        w.add(Account("a", "D"))
    with pytest.raises(LocalProtocolError):
        w.finish()


# -- fuzz -----------------------------------------------------------------


def _only_tape_errors(data: bytes, cuts: list[int]) -> None:
    r = TapeReader()
    try:
        pos = 0
        for n in cuts:
            r.feed(data[pos : pos + n])
            pos += n
        r.feed(data[pos:])
        r.close()
    except TapeError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 50), max_size=10))
def test_fuzz_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    _only_tape_errors(data, cuts)
    _only_tape_errors(TAPE_MAGIC + b"\x00\x01" + data, cuts)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_tapes(data: st.DataObject) -> None:
    tape, recs = small_tape()
    bad = bytearray(tape)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(bad) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            bad[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            bad[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            del bad[pos : pos + data.draw(st.integers(1, 20))]
    got, exc = _decode_all(bytes(bad))
    if exc is None:
        assert bytes(bad) == tape and got == recs  # the only undetected "mutation" is none at all
    else:
        assert got == recs[: len(got)]


def test_the_crc_in_use_is_zlibs_crc32_whatever_computes_it() -> None:
    """d3hb.protocol.crc may be ISA-L's (faster) or zlib's: tapes and frames must not differ."""
    import zlib

    from d3hb.protocol.crc import crc32

    data = random.Random(5).randbytes(200_003)
    for piece in (data, bytearray(data), memoryview(data)[7:150_001], b""):
        assert crc32(piece) == zlib.crc32(piece) and crc32(piece, 0xDEADBEEF) == zlib.crc32(piece, 0xDEADBEEF)
