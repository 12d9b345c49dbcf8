"""Tape devices: D3's numbered list, set-device, named pipes of mode 0600."""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest

from d3hb.errors import NotFound, TapeError, UsageError
from d3hb.ops.tapes import Devices, is_pipe, open_for_read, open_for_write, size_of


def test_a_system_without_a_list_has_one_default_file_device(tmp_path: Path) -> None:
    devs = Devices(tmp_path)
    (dev,) = devs.list()
    assert (dev.number, dev.type, dev.path) == (0, "f", str(tmp_path / "tape"))
    assert devs.attached() == dev


def test_devices_are_numbered_from_zero_and_set_device_attaches(tmp_path: Path) -> None:
    devs = Devices(tmp_path)
    devs.define(0, str(tmp_path / "t0"), "f")
    pipe = devs.define(1, str(tmp_path / "pipe"), "c")
    devs.define(2, "ignored", "-")
    assert [d.number for d in devs.list()] == [0, 1, 2]
    assert devs.attached().number == 0  # the first is the default
    assert devs.attach(1) == pipe
    assert Devices(tmp_path).attached() == pipe  # kept for later commands
    assert devs.get(2).path == "-"
    with pytest.raises(NotFound):
        devs.attach(3)
    with pytest.raises(UsageError):
        devs.define(5, str(tmp_path / "gap"), "f")
    with pytest.raises(UsageError):
        devs.define(3, str(tmp_path / "x"), "q")
    devs.remove(1)
    assert devs.attached().number == 0 and len(devs.list()) == 2


def test_named_pipes_are_created_with_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Devices(tmp_path).define(0, str(tmp_path / "pipe"), "c")
    finally:
        os.umask(old)
    st = os.stat(tmp_path / "pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert is_pipe(tmp_path / "pipe") and not is_pipe(tmp_path / "nothing")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UsageError):
        Devices(tmp_path).define(1, str(tmp_path / "plain"), "c")


def test_a_broken_list_is_refused_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "tapes").write_text("# comment\ntape /x f\nnonsense here\n")
    with pytest.raises(UsageError, match="line 3"):
        Devices(tmp_path).list()


def test_a_regular_file_tape_appears_only_when_complete(tmp_path: Path) -> None:
    dev = Devices(tmp_path).define(0, str(tmp_path / "t"), "f")
    (tmp_path / "t").write_bytes(b"good old tape")
    with pytest.raises(RuntimeError), open_for_write(dev) as fh:
        fh.write(b"half a new")
        raise RuntimeError("save failed")
    assert (tmp_path / "t").read_bytes() == b"good old tape"
    assert not list(tmp_path.glob("*.writing"))
    with open_for_write(dev) as fh:
        fh.write(b"new tape")
    assert size_of(dev) == 8
    with open_for_read(dev) as fh:
        assert fh.read() == b"new tape"


def test_a_pipe_device_carries_bytes_between_a_writer_and_a_reader(tmp_path: Path) -> None:
    dev = Devices(tmp_path).define(0, str(tmp_path / "pipe"), "c")
    got = bytearray()

    def reader() -> None:
        with open_for_read(dev) as fh:
            while chunk := fh.read(65536):
                got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    with open_for_write(dev) as fh:
        fh.write(b"x" * 300_000)
    t.join(timeout=10)
    assert not t.is_alive() and bytes(got) == b"x" * 300_000
    assert size_of(dev) is None


def test_stdio_devices_use_the_streams_given(tmp_path: Path) -> None:
    dev = Devices(tmp_path).define(0, "-", "-")
    out = io.BytesIO()
    with open_for_write(dev, out) as fh:
        fh.write(b"abc")
    assert out.getvalue() == b"abc"
    with open_for_read(dev, io.BytesIO(b"xyz")) as fh:
        assert fh.read() == b"xyz"


def test_reading_a_missing_tape_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFound), open_for_read(Devices(tmp_path).get(0)):
        pass
    os.mkdir(tmp_path / "adir")
    with pytest.raises(TapeError), open_for_write(Devices(tmp_path).define(0, str(tmp_path / "adir" / "sub" / "t"), "f")):
        pass
