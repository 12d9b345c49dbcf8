"""Line mode on a serial port: framing over pyserial's loop://, the whole menu over a pty pair."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
import serial
from menufake import FakeActions, factory_for

from d3hb.errors import D3hbError
from d3hb.menu.model import BACK
from d3hb.ui import serialio
from d3hb.ui.serialio import PortClosed, SerialTerminal, seven_bit

DEADLINE = 10.0


def test_seven_bit_output():
    assert seven_bit("A\xfeB\xfdC\xfcD") == "A^B]C\\D", "marks as D3 shows them"
    assert seven_bit("café naïve") == "cafe naive"
    assert seven_bit("\x1b[2J\x07bell\r\n") == "?[2J?bell\n", "no control sequence reaches the terminal"
    assert seven_bit("┌─┐│└┘ 中") == "+-+|++ ?"
    assert all(ord(c) < 128 for c in seven_bit("".join(map(chr, range(0, 0x3000, 7)))))


@pytest.fixture
def loop_port():
    port = serial.serial_for_url("loop://", baudrate=9600, timeout=0.1)
    yield port
    port.close()


def test_line_endings_backspace_and_cursor_keys_over_loop(loop_port):
    term = SerialTerminal(loop_port, echo=False)
    loop_port.write(b"ab\x08c\r\nde\x1b[Af\x1bOBg\rhi\nzz\x15q\x7fr\r\x03\x04")
    got = [term.read_line() for _ in range(6)]
    assert got == ["ac", "defg", "hi", "r", BACK, None]


def test_output_is_crlf_and_seven_bit_over_loop(loop_port):
    term = SerialTerminal(loop_port, echo=False)
    term.write("Server 'hbs'\nA\xfeB é\n")
    assert loop_port.read(100) == b"Server 'hbs'\r\nA^B e\r\n"


def test_eight_bit_input_is_dropped(loop_port):
    term = SerialTerminal(loop_port, echo=False)
    loop_port.write("1\xe92\r".encode("latin-1"))
    assert term.read_line() == "12"


def test_line_mode_over_loop(loop_port, tmp_path):
    """loop:// reads back what is written: typed keys first, then everything the menus sent."""
    from d3hb.ui.line import run_terminal

    fake = FakeActions()
    loop_port.write(b"2\r\nx\r")  # what the operator typed ahead
    status = run_terminal("hot-backup", factory_for(tmp_path), fake.registry, SerialTerminal(loop_port, echo=True))
    assert status == 0 and fake.names() == ["hot-backup.list", "hot-backup.query"]
    sent = loop_port.read(65536)
    assert sent.startswith(b"\r\nHot Backup Main Menu") and b" 1. Status\r\n" in sent
    assert b"Enter option: 2\r\nhot-backup.query done\r\nEnter option: x\r\n" in sent, "echo, output, prompt"
    assert all(b < 0x80 for b in sent) and b"\n" not in sent.replace(b"\r\n", b"")


def test_closed_port_is_a_one_line_error(loop_port):
    term = SerialTerminal(loop_port, echo=False, name="loop://")
    loop_port.close()
    with pytest.raises(PortClosed, match=r"^serial port loop:// closed.*; check the cable and the device"):
        term.write("x")
    with pytest.raises(PortClosed):
        term.read_line()


def test_cannot_open_a_missing_device(tmp_path):
    with pytest.raises(D3hbError, match=r"^cannot open serial port /nonexistent/ttyS9 at 9600 baud: .*; check the device"):
        serialio.run("/nonexistent/ttyS9", 9600, "hot-backup", factory_for(tmp_path), FakeActions().registry)


class PtyTerminal:
    """The far end of a pty pair: what a VT100 on the serial line would type and see."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode("ascii"))

    def wait_for(self, text: str) -> bytes:
        end = time.monotonic() + DEADLINE
        want = text.encode("ascii")
        while want not in self.seen:
            left = end - time.monotonic()
            assert left > 0, f"{text!r} never came; got {self.seen[-300:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    break
        return self.seen

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _serve(term: PtyTerminal, tmp_path, fake: FakeActions, menu: str = "hot-backup"):
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["status"] = serialio.run(term.name, 9600, menu, factory_for(tmp_path), fake.registry)
        except BaseException as exc:  # noqa: BLE001 — handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_whole_menu_over_a_pty(tmp_path):
    term = PtyTerminal()
    fake = FakeActions()
    thread, result = _serve(term, tmp_path, fake)
    try:
        term.wait_for("Enter option: ")
        term.type("4")
        term.wait_for("Enter option: 4")  # echoed by the host
        term.type("\r")
        term.wait_for("(Y/N) ")
        term.type("y\r\n")  # CR LF from the terminal: one line, not two
        term.wait_for("hot-backup.stop done\r\nEnter option: ")
        term.type("9\r1\r2\r")
        term.wait_for("Server Type [S]: ")
        term.type("\r\r\r\r\r\r")
        term.wait_for("Verification code: ")
        term.type("secretcode\r")
        term.wait_for("**********\r\n")
        term.type("x\rx\rx\rx\r")
        thread.join(DEADLINE)
        assert not thread.is_alive() and result == {"status": 0}
    finally:
        term.close()
    seen = term.seen
    assert all(b < 0x80 for b in seen), "7-bit clean"
    assert b"\r\n 1. Status\r\n" in seen and b"\n 1." not in seen.replace(b"\r\n", b""), "every line ends CR LF"
    assert b"secretcode" not in seen
    assert fake.names() == ["hot-backup.list", "hot-backup.stop", "hot-backup.show"]


def test_port_closing_under_the_menu_stops_it_with_an_error(tmp_path):
    term = PtyTerminal()
    thread, result = _serve(term, tmp_path, FakeActions())
    try:
        term.wait_for("Enter option: ")
        os.close(term.master)  # the line drops
        thread.join(DEADLINE)
        assert not thread.is_alive()
        assert isinstance(result.get("error"), PortClosed), result
        assert "closed" in str(result["error"]) and ";" in str(result["error"])
    finally:
        term.close()
