"""Line mode on a serial port: ``d3hb menu --serial URL [--baud N]``.

The port is opened with pyserial's ``serial_for_url`` (a device such as
``/dev/ttyS0``, or ``rfc2217://``, ``socket://``, ``loop://``) and wrapped
in a :class:`SerialTerminal`, which does what the terminal at the other end
does not: it echoes what is typed (with ``*`` for secrets), handles
backspace, DEL, Ctrl-U (erase the line) and Ctrl-C (back), accepts CR, LF
or CR LF as the end of a line, skips VT100 cursor-key sequences, and sends
only 7-bit ASCII with CR LF line ends.  D3's marks are shown as D3 shows
them (``^`` attribute, ``]`` value, ``\\`` subvalue); any other character
outside ASCII becomes its closest ASCII letter or ``?``.  Line mode never
redraws, so a 9600-baud line is not flooded.
"""

from __future__ import annotations

import termios
import unicodedata
from typing import Any

import serial

from d3hb.errors import D3hbError
from d3hb.menu.model import BACK
from d3hb.menu.registry import Registry
from d3hb.ui.line import CtxFactory, run_terminal

MARKS = {"\xff": "_", "\xfe": "^", "\xfd": "]", "\xfc": "\\", "\xfb": "["}
BS, DEL, CTRL_C, CTRL_D, CTRL_U, ESC = "\x08", "\x7f", "\x03", "\x04", "\x15", "\x1b"
READ_TIMEOUT = 0.2  # s: how long one read waits, so a closed port is noticed
# What a port that went away raises: pyserial's own error, the OS's, termios' (tcdrain on a
# hung-up tty), and ValueError/TypeError for a port pyserial already closed.
PORT_ERRORS = (serial.SerialException, OSError, termios.error, ValueError, TypeError)


class PortClosed(D3hbError):
    """The serial port went away (hang-up, unplugged, closed)."""


def seven_bit(text: str) -> str:
    """Text safe for any terminal: ASCII printable, newlines and tabs only."""
    out = []
    for ch in text:
        if " " <= ch <= "~" or ch in "\n\t":
            out.append(ch)
        elif ch in MARKS:
            out.append(MARKS[ch])
        elif ch == "\r":
            continue
        elif ord(ch) < 32 or 127 <= ord(ch) < 160:
            out.append("?")  # never pass a control sequence through to the terminal
        elif "\u2500" <= ch <= "\u257f":  # box drawing: as a VT100 without graphics would draw it
            name = unicodedata.name(ch, "")
            out.append("-" if "HORIZONTAL" in name and "VERTICAL" not in name else "|" if "VERTICAL" in name and "HORIZONTAL" not in name else "+")
        else:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
            out.append(plain if plain and plain.isprintable() else "?")
    return "".join(out)


class SerialTerminal:
    """A pyserial port as a line-mode :class:`~d3hb.ui.line.Terminal`."""

    def __init__(self, port: Any, *, echo: bool = True, name: str = "") -> None:
        self.port = port
        self.echo = echo
        self.name = name or getattr(port, "port", None) or "serial port"
        self._skip_lf = False

    def _closed(self, exc: Exception | None = None) -> PortClosed:
        why = f" ({exc})" if exc else ""
        return PortClosed(f"serial port {self.name} closed{why}", "check the cable and the device, then open the menu again")

    def write(self, text: str) -> None:
        data = seven_bit(text).replace("\n", "\r\n").encode("ascii")
        try:
            self.port.write(data)
            self.port.flush()
        except PORT_ERRORS as exc:
            raise self._closed(exc) from None

    def _read(self) -> str:
        try:
            data = self.port.read(1)
        except PORT_ERRORS as exc:
            raise self._closed(exc) from None
        return data.decode("latin-1") if data else ""

    def read_line(self, secret: bool = False) -> str | None:
        """One line as typed; None for Ctrl-D on an empty line; :data:`BACK` for Ctrl-C."""
        buf: list[str] = []
        escape = ""
        while True:
            ch = self._read()
            if ch == "":
                if not getattr(self.port, "is_open", True):
                    raise self._closed()
                continue
            if self._skip_lf:
                self._skip_lf = False
                if ch == "\n":
                    continue
            # VT100 cursor keys (ESC [ A, ESC O A ...) mean nothing on a line: skip the whole sequence.
            if escape == ESC:
                escape = ESC + ch if ch in "[O" else ""
                if escape:
                    continue
            elif escape == ESC + "O":
                escape = ""
                continue
            elif escape:
                if "@" <= ch <= "~":
                    escape = ""
                continue
            if ch == ESC:
                escape = ch
                continue
            if ch in "\r\n":
                self._skip_lf = ch == "\r"
                self._echo("\r\n")
                return "".join(buf)
            if ch in (BS, DEL):
                if buf:
                    buf.pop()
                    self._echo("\b \b")
            elif ch == CTRL_U:
                self._echo("\b \b" * len(buf))
                buf.clear()
            elif ch == CTRL_C:
                self._echo("^C\r\n")
                return BACK
            elif ch == CTRL_D and not buf:
                return None
            elif " " <= ch <= "~":
                buf.append(ch)
                self._echo("*" if secret else ch)
            # anything else (8-bit bytes, other controls) is dropped: the line stays 7-bit clean

    def _echo(self, text: str) -> None:
        if self.echo:
            try:
                self.port.write(text.encode("ascii"))
            except PORT_ERRORS as exc:
                raise self._closed(exc) from None


def open_port(url: str, baud: int) -> Any:
    """``serial_for_url`` with a one-line error when it cannot be opened."""
    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=READ_TIMEOUT)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise D3hbError(f"cannot open serial port {url} at {baud} baud: {exc}",
                        "check the device (e.g. /dev/ttyS0) or the URL (rfc2217://HOST:PORT, socket://HOST:PORT, loop://)") from None  # fmt: skip


def run(url: str, baud: int, menu: str, ctx_factory: CtxFactory, registry: Registry, server: str | None = None, *, echo: bool = True) -> int:
    """``d3hb menu --serial URL``: the menu in line mode on a serial port; 0 when the user leaves."""
    port = open_port(url, baud)
    try:
        return run_terminal(menu, ctx_factory, registry, SerialTerminal(port, echo=echo, name=url), server)
    finally:
        try:
            port.close()
        except PORT_ERRORS:
            pass
