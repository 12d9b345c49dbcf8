"""The local control channel of a running server: ``NAME.ctl``, a Unix socket.

One JSON object a line each way: ``{"cmd": "query"}`` answers the live
status, ``{"cmd": "stats"}`` the statistics (a master asks its slave over the
link first), ``{"cmd": "stop"}`` stops the server cleanly.  Answers are
``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}``.

The socket lives in the system directory (mode 0700), so only the systems'
owner can reach it.  A Unix socket path is limited to about 100 bytes; a
longer one is reached through ``/proc/self/fd/N/NAME.ctl`` with N an open
descriptor of the directory, which binds and connects the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from d3hb.errors import D3hbError, Refused

MAX_LINE = 1 << 20
SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin

Handler = Callable[[dict], Awaitable[dict]]

# Commands a server adds for itself (a slave's "apply"), tried before the daemon's own handler.
_EXTRA: dict[str, Handler] = {}


def register(cmd: str, fn: Handler) -> None:
    """Answer ``cmd`` on this process's control channel with ``fn``."""
    _EXTRA[cmd] = fn


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A path to ``path`` short enough for a Unix socket address."""
    text = str(path)
    if len(text.encode()) <= SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on ``path`` (a stale socket from a crash is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a request is a JSON object")
                    answer = await _EXTRA.get(str(req.get("cmd")), handler)(req)
                except D3hbError as exc:
                    answer = {"ok": False, "error": str(exc)}
                except (ValueError, TypeError) as exc:
                    answer = {"ok": False, "error": f"bad control request ({exc})"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    with short_path(path) as where:
        server = await asyncio.start_unix_server(client, where, limit=MAX_LINE)
    os.chmod(path, 0o600)
    return server


def request(path: Path, cmd: str, timeout: float = 10.0, **args: object) -> dict:
    """Ask a running server; Refused when nobody answers on its socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with short_path(path) as where:
            try:
                sock.connect(where)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise Refused(f"server {path.stem!r} is not running (no answer on {path.name}: {exc.strerror})",
                              f"start it with 'd3hb hot-backup start {path.stem}'") from None
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise Refused(f"server {path.stem!r} closed its control channel without answering", "see its status log")
            buf += chunk
            if len(buf) > MAX_LINE:
                raise Refused(f"server {path.stem!r} sent an oversized control answer", "see its status log")
    except TimeoutError:
        raise Refused(f"server {path.stem!r} did not answer {cmd!r} within {timeout:g} s", "it may be busy or stopped (SIGSTOP); see its status") from None
    finally:
        sock.close()
    answer = json.loads(buf)
    if not answer.get("ok"):
        raise Refused(str(answer.get("error") or "the server refused the request"), "see its status log")
    return answer
