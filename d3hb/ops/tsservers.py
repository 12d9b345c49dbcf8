"""Start, stop, shut down, query and check tape-socket servers.

A server runs as its own detached process (``python -m
d3hb.servers.tape_output|tape_input CONFIG``) with ``ts-NAME.pid`` and
``ts-NAME.status`` in its system directory; this module is the only place
that starts one.  ``start`` returns once the server reports its first state,
or fails with the server's own message (a BIND error, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import D3hbError, NotFound, Refused
from d3hb.ops import running
from d3hb.ops.tapesocket import Definitions, TsServer
from d3hb.servers import tsbase
from d3hb.servers.tape_output import check_remote
from d3hb.store.system import System

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
MODULES = {"output": "d3hb.servers.tape_output", "input": "d3hb.servers.tape_input"}


def pid_of(system_dir: Path, name: str) -> int | None:
    """The pid of a running server, or None (a stale pid file is removed)."""
    path = tsbase.pid_path(system_dir, name)
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if running.alive(pid):
        return pid
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return None


def _wait(cond, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def start(system: System, name: str, *, role: str | None = None, clear_pipe: bool = True, clock_sync: bool = True,
          verbose: bool = False, timeout: float = START_TIMEOUT) -> int:
    """Start a defined server (``role`` overrides its definition: startsend / startreceive)."""
    srv = Definitions(system).get(name)
    role = role or srv.role
    pid = pid_of(system.path, name)
    if pid is not None:
        raise Refused(f"tape-socket server {name!r} is already running (pid {pid})", "query it, or stop it first")
    cfg = tsbase.Config(
        home=str(system.path.parent), system=system.path.name, name=name, role=role, pipe=srv.pipe,
        host=srv.host if role == "output" or srv.role == "input" else "0.0.0.0", port=srv.port,
        callrep=srv.callrep, callwait=srv.callwait, trace=srv.trace,
        clear_pipe=clear_pipe, clock_sync=clock_sync, verbose=verbose,
    )  # fmt: skip
    errors = system.path / f"ts-{name}.err"
    with open(errors, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULES[role], cfg.to_json()],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=system.path,
            start_new_session=True, close_fds=True,
        )  # fmt: skip

    def reported() -> bool:
        st = tsbase.read_status(system.path, name)
        return proc.poll() is not None or (st is not None and st.get("pid") == proc.pid and st.get("state") != "Starting")

    if not _wait(reported, timeout):
        raise Refused(f"Waiting for server {name!r} to initialize: no answer after {timeout:g} s", f"see {errors} and 'tape-socket status name={name}'")
    st = tsbase.read_status(system.path, name) or {}
    if st.get("pid") == proc.pid and st.get("state") == "Stopped":
        _wait(lambda: proc.poll() is not None, timeout)  # it failed and is on its way out
    if proc.poll() is not None:
        st = tsbase.read_status(system.path, name) or {}
        why = st.get("last_error") or _tail(errors) or f"exit status {proc.returncode}"
        raise Refused(f"FAILED: server {name!r} encountered an error and stopped: {why}", "correct the server's setup (a BIND error: another port), then start it again")
    return proc.pid


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return ""
    return lines[-1] if lines else ""


def stop(system_dir: Path, name: str, *, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; False when it was not running."""
    pid = pid_of(system_dir, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not running.alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not running.alive(pid), 5)
    with contextlib.suppress(FileNotFoundError):
        tsbase.pid_path(system_dir, name).unlink()
    return True


def shutdown(system: System, name: str, *, timeout: float = 60.0) -> str:
    """Stop both servers from the sending side.

    A running output server is asked (SIGUSR1) to finish the tape in
    progress, tell the input server to stop, and stop.  With no output
    server running, the input server is called directly and told to stop.
    """
    pid = pid_of(system.path, name)
    srv = Definitions(system).get(name)
    if pid is not None:
        st = tsbase.read_status(system.path, name) or {}
        if st.get("role") != "output":
            raise Refused(f"server {name!r} is an input server", "shutdown is given on the sending side; use stop here")
        os.kill(pid, signal.SIGUSR1)
        if _wait(lambda: not running.alive(pid), timeout):
            return f"Server {name!r}: shutdown done, both servers stopped"
        return f"Server {name!r}: shutdown requested; it stops once the tape in progress ends"
    if srv.role != "output":
        raise Refused(f"server {name!r} is defined as an input server", "shutdown is given on the sending side; use stop here")
    asyncio.run(_direct_shutdown(srv))
    return f"Server {name!r}: the input server at {srv.host}:{srv.port} was told to stop"


async def _direct_shutdown(srv: TsServer, timeout: float = 10.0) -> None:
    from d3hb.protocol import tapesock as ts

    link = ts.TapeLink(ts.OUTPUT, srv.name)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(srv.host, srv.port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise NotFound(f"no input server answers at {srv.host}:{srv.port} ({exc})", "it is not running, or check host= and port=") from None
    try:
        writer.write(link.send(ts.Hello(srv.name)))
        while True:
            ev = link.next_event()
            if ev is ts.NEED_DATA:
                link.receive_data(await asyncio.wait_for(reader.read(65536), timeout))
            elif isinstance(ev, ts.HelloReply):
                writer.write(link.send(ts.Shutdown()))
            elif isinstance(ev, ts.ShutdownAck | ts.ConnectionClosed):
                return
    finally:
        writer.close()


@dataclass(frozen=True)
class ServerStatus:
    server: TsServer
    pid: int | None
    status: dict | None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def state(self) -> str:
        if self.pid is None:
            return "Stopped"
        return (self.status or {}).get("state", "Starting")


def status(system: System, *, only_running: bool = False) -> list[ServerStatus]:
    out = []
    for srv in Definitions(system).all():
        pid = pid_of(system.path, srv.name)
        if only_running and pid is None:
            continue
        out.append(ServerStatus(srv, pid, tsbase.read_status(system.path, srv.name)))
    return out


def query(system: System, name: str) -> ServerStatus:
    srv = Definitions(system).get(name)
    pid = pid_of(system.path, name)
    if pid is None:
        raise Refused(f"tape-socket server {name!r} is not running", f"start it: tape-socket start name={name}")
    return ServerStatus(srv, pid, tsbase.read_status(system.path, name))


def check(system: System, name: str, *, timeout: float = 10.0):
    """Call the remote input server of ``name`` and ask its state."""
    srv = Definitions(system).get(name)
    if srv.role != "output":
        raise Refused(f"server {name!r} is an input server: it has no remote server to check", "check from the sending side")
    try:
        return asyncio.run(check_remote(srv.name, srv.host, srv.port, timeout=timeout))
    except (OSError, asyncio.TimeoutError) as exc:
        raise NotFound(f"no input server answers at {srv.host}:{srv.port} ({exc or 'timed out'})", "start it on the receiving side, or check host= and port=") from None
    except D3hbError:
        raise


def set_trace(system: System, name: str, on: bool) -> None:
    """traceon / traceoff: a running server picks the flag up at its next block."""
    Definitions(system).get(name)
    flag = tsbase.trace_path(system.path, name)
    if on:
        flag.write_text("on\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            flag.unlink()


def drain_pipe(system: System, name: str) -> int:
    srv = Definitions(system).get(name)
    if pid_of(system.path, name) is not None:
        raise Refused(f"server {name!r} is running and uses pipe {srv.pipe}", "stop it before draining its pipe")
    return tsbase.drain(srv.pipe)
