"""Tape devices: each system's numbered list, as in D3's configuration file.

A system keeps its tape devices in ``$SYSTEM/tapes``, one ``tape PATH TYPE``
line each, numbered from 0 down the list as D3 numbers them; the first is
the default.  Types are D3's codes where they apply: ``f`` a regular file
(D3's uncompressed pseudo tape), ``c`` a named pipe (D3's no-rewind device,
created with ``os.mkfifo`` mode 0600), and ``-`` standard output for a save,
standard input for a restore.  ``set-device N`` attaches device N; the
choice is kept in ``$SYSTEM/tape.attached`` so later commands use it.
Type ``v`` is a vault (:mod:`d3hb.ops.vaultdev`): the path is the name of a
vault defined on this system, and a tape written to it becomes virtual
volumes on another server.

Opening a device gives a plain binary stream; the tape codec never sees
paths.  A save to a regular file writes a temporary file and renames it
only when the tape is complete, so a failed save never replaces a good one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from d3hb.errors import NotFound, TapeError, UsageError

TAPES_FILE = "tapes"
ATTACHED_FILE = "tape.attached"
TYPES = {"f": "file", "c": "pipe", "-": "stdio", "v": "vault"}
DEFAULT_TAPE = "tape"  # device 0 when a system has no list: $SYSTEM/tape, a regular file


@dataclass(frozen=True)
class Device:
    number: int
    path: str  # "-" for standard input/output; a vault's name (or NAME:VOLUMESET) for "v"
    type: str  # "f", "c", "-" or "v"
    system_dir: str = field(default="", compare=False)  # whose list it is in: a vault device needs its definitions

    @property
    def kind(self) -> str:
        return TYPES[self.type]

    def describe(self) -> str:
        return f"{self.number}  {self.path}  {self.type} ({self.kind})"


def _check_type(kind: str) -> str:
    low = kind.strip().lower()
    if low not in TYPES:
        raise UsageError(f"unknown tape device type {kind!r}", "types are f (regular file), c (named pipe), - (stdin/stdout) and v (vault)")
    return low


class Devices:
    """The tape device list of one system directory."""

    def __init__(self, system_dir: Path | str) -> None:
        self.dir = Path(system_dir)
        self.file = self.dir / TAPES_FILE

    # -- the list ---------------------------------------------------------
    def list(self) -> list[Device]:
        if not self.file.exists():
            return [Device(0, str(self.dir / DEFAULT_TAPE), "f")]
        out: list[Device] = []
        for lineno, line in enumerate(self.file.read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            words = text.split()
            if words[0] != "tape" or len(words) != 3:
                raise UsageError(f"{self.file} line {lineno} is not 'tape PATH TYPE'", f"correct the line in {self.file}")
            out.append(Device(len(out), words[1], _check_type(words[2]), str(self.dir)))
        return out

    def _write(self, devices: list[Device]) -> None:
        lines = ["# d3hb tape devices: 'tape PATH TYPE', numbered from 0; the first is the default.",
                 "# TYPE: f regular file, c named pipe, - stdin/stdout, v vault (PATH: its name, or NAME:VOLUMESET)"]
        lines += [f"tape {d.path} {d.type}" for d in devices]
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.file)

    def get(self, number: int) -> Device:
        devices = self.list()
        if not 0 <= number < len(devices):
            raise NotFound(f"no tape device {number} (devices 0 to {len(devices) - 1} are defined)", "list them with 'set-device', or define it: set-device N PATH TYPE")
        return devices[number]

    def define(self, number: int, path: str, kind: str = "f") -> Device:
        """Define or replace device ``number`` (one past the last appends)."""
        kind = _check_type(kind)
        if kind == "-":
            path = "-"
        elif kind == "v":
            from d3hb.ops import vaultdev  # the vault stack only when a vault device is used

            vaultdev.parse(path)
        elif " " in path or not path:
            raise UsageError(f"tape path {path!r} is empty or has spaces", "give a path without spaces")
        else:
            path = str(Path(path).expanduser().absolute())
        devices = self.list()
        if not 0 <= number <= len(devices):
            raise UsageError(f"device number {number} leaves a gap (devices 0 to {len(devices) - 1} exist)", f"define device {len(devices)} next")
        dev = Device(number, path, kind, str(self.dir))
        if number == len(devices):
            devices.append(dev)
        else:
            devices[number] = dev
        self._write(devices)
        if kind == "c":
            make_pipe(Path(path))
        return dev

    def remove(self, number: int) -> None:
        devices = self.list()
        self.get(number)
        attached = self.attached_number()
        del devices[number]
        self._write([Device(i, d.path, d.type) for i, d in enumerate(devices)])
        # The attached device keeps its place in the list; removing it attaches the default.
        self.attach(0 if attached == number else attached - (attached > number))

    # -- set-device -------------------------------------------------------
    def attached_number(self) -> int:
        try:
            return int((self.dir / ATTACHED_FILE).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def attached(self) -> Device:
        """The device set-device chose, or the first (D3's default device)."""
        devices = self.list()
        n = self.attached_number()
        return devices[n] if n < len(devices) else devices[0]

    def attach(self, number: int) -> Device:
        dev = self.get(number)
        (self.dir / ATTACHED_FILE).write_text(f"{number}\n")
        return dev


def make_pipe(path: Path) -> None:
    """Create a named pipe (mode 0600), or check that what is there is one."""
    try:
        os.mkfifo(path, 0o600)
        os.chmod(path, 0o600)  # mkfifo honours the umask; the mode must not depend on it
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise UsageError(f"{path} exists and is not a named pipe", "remove it or choose another path") from None


def is_pipe(path: Path | str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def open_for_write(dev: Device, stdout: BinaryIO | None = None) -> Iterator[BinaryIO]:
    """A stream to write a tape to.  Leaving the block with an exception discards it.

    A regular file is written beside its final name and renamed only when
    the tape is complete; a pipe blocks here until its reader opens it.
    """
    if dev.type == "-":
        yield stdout or sys.stdout.buffer
        return
    if dev.type == "v":
        from d3hb.ops import vaultdev

        with vaultdev.writer(dev.system_dir, dev.path) as w:
            yield w  # type: ignore[misc]
        return
    path = Path(dev.path)
    if dev.type == "c":
        make_pipe(path)
        try:
            fh = open(path, "wb", buffering=0)  # noqa: SIM115 — closed below, also on error
        except OSError as exc:
            raise TapeError(f"cannot open pipe {path} ({exc.strerror})", "check its mode and owner") from None
        try:
            yield fh  # type: ignore[misc]
        finally:
            with contextlib.suppress(OSError):
                fh.close()  # the reader sees end of file: with no trailer, a truncated tape
        return
    tmp = path.with_name(path.name + ".writing")
    try:
        fh = open(tmp, "wb")  # noqa: SIM115
    except OSError as exc:
        raise TapeError(f"cannot write tape file {path} ({exc.strerror})", "check the directory and free space") from None
    try:
        yield fh  # type: ignore[misc]
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    except BaseException:
        fh.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def open_for_read(dev: Device, stdin: BinaryIO | None = None, kinds: tuple[str, ...] = ()) -> Iterator[BinaryIO]:
    """A stream to read a tape from; a pipe blocks here until its writer opens it.

    On a vault device with no set named, ``kinds`` picks the newest set of those kinds (a restore
    mounts the last full save, not the last t-dump)."""
    if dev.type == "-":
        yield stdin or sys.stdin.buffer
        return
    if dev.type == "v":
        from d3hb.ops import vaultdev

        with vaultdev.reader(dev.system_dir, dev.path, kinds) as r:
            yield r  # type: ignore[misc]
        return
    path = Path(dev.path)
    if dev.type == "c":
        make_pipe(path)
    try:
        fh = open(path, "rb", buffering=0)  # noqa: SIM115
    except FileNotFoundError:
        raise NotFound(f"tape {path} does not exist", "check the device with 'set-device', or save to it first") from None
    except OSError as exc:
        raise TapeError(f"cannot open tape {path} ({exc.strerror})", "check its mode and owner") from None
    try:
        yield fh  # type: ignore[misc]
    finally:
        fh.close()


def size_of(dev: Device, kinds: tuple[str, ...] = ()) -> int | None:
    """Bytes on the tape when that is known in advance (a regular file, a vault's set), else None."""
    if dev.type == "v":
        from d3hb.ops import vaultdev

        return vaultdev.size(dev.system_dir, dev.path, kinds)
    if dev.type != "f":
        return None
    try:
        return os.stat(dev.path).st_size
    except FileNotFoundError:
        return None
