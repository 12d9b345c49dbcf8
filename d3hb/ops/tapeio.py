"""Streams of tape records: the codec on one side, a file object on the other.

:class:`TapeOut` feeds records to the sans-IO :class:`~d3hb.protocol.tape.TapeWriter`
and writes the blocks it returns; :class:`TapeIn` reads a stream in chunks
into a :class:`~d3hb.protocol.tape.TapeReader` and yields verified records,
ending with the trailer check.  :class:`Meter` turns the codec's counts into
the progress figures every tape operation shows (items, bytes, rate, time
left) without flooding the caller: it reports at most a few times a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from dataclasses import dataclass
from typing import BinaryIO

from d3hb.errors import TapeError
from d3hb.protocol import tape

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Figures:
    """How far a tape operation has got."""

    items: int
    bytes: int  # tape bytes written or read
    elapsed: float
    total: int | None = None  # tape bytes expected, when known in advance

    @property
    def rate(self) -> float:
        """Bytes a second."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def left(self) -> float | None:
        """Seconds left, when the size is known and a rate has been measured."""
        if not self.total or not self.rate:
            return None
        return max(0.0, (self.total - self.bytes) / self.rate)

    def line(self) -> str:
        parts = [f"{self.items:,} items", human_bytes(self.bytes)]
        if self.total:
            parts[-1] += f" of {human_bytes(self.total)} ({min(100, 100 * self.bytes // max(1, self.total))}%)"
        parts.append(f"{human_bytes(int(self.rate))}/s")
        parts.append(f"{clock_text(self.elapsed)} elapsed")
        if self.left is not None:
            parts.append(f"{clock_text(self.left)} left")
        return ", ".join(parts)


ProgressFn = Callable[[Figures], None]


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop returns


def clock_text(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Meter:
    """Calls ``fn`` with :class:`Figures` at most every ``every`` seconds, and at the end."""

    def __init__(self, fn: ProgressFn | None, total: int | None = None, *, every: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fn = fn
        self.total = total
        self.every = every
        self.clock = clock
        self.start = clock()
        # The first tick reports at once: a save into a pipe whose reader holds
        # back may block for long in its first write, and Query must see it.
        self._last = self.start - every
        self.figures = Figures(0, 0, 0.0, total)

    def tick(self, items: int, nbytes: int, *, force: bool = False) -> None:
        now = self.clock()
        self.figures = Figures(items, nbytes, now - self.start, self.total)
        if self.fn is not None and (force or now - self._last >= self.every):
            self._last = now
            self.fn(self.figures)

    def done(self, items: int, nbytes: int) -> Figures:
        if self.total is not None:
            self.total = nbytes  # a save's size was an estimate; at the end it is known
        self.tick(items, nbytes, force=True)
        return self.figures


# -- progress another process can read (tape-socket Query) ------------------------

PROGRESS_FILE = "tape.progress"


def publish(system_dir: Path, operation: str, f: Figures, *, done: bool = False, clock: Callable[[], float] = time.time) -> None:
    """Leave the figures of a running tape operation where the tape-socket Query finds them.

    A save into a pipe is one end of a network save/restore: the servers see
    only bytes, the save knows items and the expected size.  Replaced
    atomically; a failure to write it never disturbs the operation.
    """
    doc = {"operation": operation, "items": f.items, "bytes": f.bytes, "elapsed": f.elapsed, "total": f.total,
           "rate": f.rate, "left": f.left, "done": done, "pid": os.getpid(), "updated": clock()}
    path = Path(system_dir) / PROGRESS_FILE
    tmp = path.with_name(PROGRESS_FILE + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)


def published(system_dir: Path, *, clock: Callable[[], float] = time.time) -> tuple[str, Figures, str] | None:
    """(operation, figures, state) of the last tape operation of a system: state "running", "done" or "stopped"."""
    try:
        doc = json.loads((Path(system_dir) / PROGRESS_FILE).read_text())
        f = Figures(int(doc["items"]), int(doc["bytes"]), float(doc["elapsed"]), doc.get("total"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if doc.get("done"):
        state = "done"
    else:
        # Running only while its process lives: a killed save must not look alive
        # (a save held back by a slow restore may go quiet for long, so no age limit).
        try:
            os.kill(int(doc["pid"]), 0)
            alive = True
        except (OSError, TypeError, ValueError):
            alive = False
        state = "running" if alive else "stopped"
    return str(doc.get("operation", "?")), f, state


def write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte; an unbuffered file object may take only part of a write."""
    view = memoryview(data)
    try:
        while view:
            n = stream.write(view)
            if n is None:  # a non-blocking stream that is full: not something a tape should be
                raise TapeError("the tape stream would block", "open the tape in blocking mode")
            view = view[n:]
        return
    except BrokenPipeError:
        raise TapeError("the reader of the tape went away (broken pipe)", "check the process or server reading the pipe, then save again") from None
    except OSError as exc:
        raise TapeError(f"cannot write the tape ({exc.strerror or exc})", "check the device and free space, then save again") from None


class TapeOut:
    """Write one tape: a label, records, then the end block with the trailer."""

    def __init__(self, stream: BinaryIO, label: tape.Label, meter: Meter | None = None) -> None:
        self.stream = stream
        self.writer = tape.TapeWriter(label)
        self.meter = meter or Meter(None)
        write_all(stream, self.writer.start())

    def add(self, rec: tape.Record) -> None:
        data = self.writer.add(rec)
        if data:
            write_all(self.stream, data)
            p = self.writer.progress
            self.meter.tick(p.items + p.txns, p.tape_bytes)

    def flush(self) -> None:
        data = self.writer.flush()
        if data:
            write_all(self.stream, data)

    def finish(self) -> Figures:
        write_all(self.stream, self.writer.finish())
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise TapeError("the reader of the tape went away (broken pipe)", "check the process reading the pipe, then save again") from None
        p = self.writer.progress
        return self.meter.done(p.items + p.txns, p.tape_bytes)

    @property
    def trailer(self) -> tape.Trailer:
        return self.writer.trailer


class TapeIn:
    """Read one tape: :meth:`label` first, then iterate the records.

    Iteration ends only after the trailer has been checked; a tape cut short
    or damaged raises :class:`TapeError` naming the block, so a caller that
    commits only after the loop never keeps a partial tape.
    """

    def __init__(self, stream: BinaryIO, meter: Meter | None = None, *, chunk: int = CHUNK) -> None:
        self.stream = stream
        self.reader = tape.TapeReader()
        self.meter = meter or Meter(None)
        self.chunk = chunk
        self._ahead: list[tape.Record] = []
        self._eof = False
        self.trailer: tape.Trailer | None = None

    def _read(self) -> bytes:
        try:
            return self.stream.read(self.chunk) or b""
        except OSError as exc:
            raise TapeError(f"cannot read the tape ({exc.strerror or exc})", "check the device, then retry") from None

    def label(self) -> tape.Label:
        while self.reader.label is None:
            data = self._read()
            if not data:
                self._eof = True
                self.reader.close()  # raises: empty or truncated before the label
            self._ahead += self.reader.feed(data)
        return self.reader.label

    def __iter__(self) -> Iterator[tape.Record]:
        self.label()
        ahead, self._ahead = self._ahead, []
        yield from ahead
        while not self._eof:
            data = self._read()
            if not data:
                break
            recs = self.reader.feed(data)
            p = self.reader.progress
            self.meter.tick(p.items + p.txns, p.tape_bytes)
            yield from recs
        self.trailer = self.reader.close()
        p = self.reader.progress
        self.meter.done(p.items + p.txns, p.tape_bytes)

    @property
    def figures(self) -> Figures:
        return self.meter.figures
