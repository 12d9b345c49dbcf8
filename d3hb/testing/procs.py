"""Real processes in tests: free ports, waiting on conditions with deadlines,
a master/slave pair on loopback, and servers that never outlive a test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from d3hb.ops import supervisor
from d3hb.ops.serverdefs import Definitions
from d3hb.servers import status as st
from d3hb.store import Home, System
from d3hb.store import apply as store_apply

CODE = "pair-verification-code"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, within the 1024-32767 D3 allows."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if 1024 <= port <= 32767:
            return port
        # The kernel's ephemeral range is usually above 32767: pick from the allowed range instead.
        port = 20000 + (int.from_bytes(os.urandom(2), "big") % 12000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free TCP port in 1024-32767")


def wait_until(condition: Callable[[], object], timeout: float, message: str = "condition", interval: float = 0.02) -> object:
    """Poll ``condition`` until it is truthy; AssertionError naming ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


def make_pair(home: Path, name: str = "hb", port: int | None = None, *, master: str = "pick0", slave: str = "backup",
              master_fields: dict | None = None, slave_fields: dict | None = None,
              files: Iterable[tuple[str, str]] = (("acme", "inv"),)) -> tuple[System, System, int]:
    """Two fresh systems and a defined pair; the files are created DL on the master
    (the slave gets them through replication, as every later update)."""
    port = port or free_port()
    h = Home(home)
    m, s = h.create(master, small=True), h.create(slave, small=True)
    Definitions(m).setup(name, {"type": "M", "host": "127.0.0.1", "port": str(port), "target": slave, "code": CODE,
                                "check": "60", "timeout": "2", "txlog": "0.05", **(master_fields or {})})
    Definitions(s).setup(name, {"type": "S", "port": str(port), "code": CODE, "timeout": "2", "check": "60", **(slave_fields or {})})
    for account, fname in files:
        if not m.has_account(account):
            m.create_account(account, "DL")
        m.create_file(account, fname, None, 7, "DL")
        m.create_file(account, fname, fname, 7, "DL")
    return m, s, port


def kill(system: System, name: str, sig: int = signal.SIGKILL) -> int:
    pid = st.pid_file_pid(supervisor.files(system, name))
    assert pid is not None, f"server {name} of {system.name} has no pid file"
    os.kill(pid, sig)
    return pid


def wait_stopped(system: System, name: str, timeout: float = 10.0) -> None:
    wait_until(lambda: not supervisor.is_running(system, name), timeout, f"server {name} of {system.name} to stop")


def wait_applied(slave: System, name: str, tno: int, timeout: float = 30.0) -> None:
    wait_until(lambda: store_apply.last_applied(slave, name) >= tno, timeout,
               f"slave {slave.name} to apply up to {tno} (at {store_apply.last_applied(slave, name)})")


def wait_drained(master: System, slave: System, name: str, tno: int, timeout: float = 60.0) -> int:
    """Wait until the slave applied ``tno`` and the master saw it acknowledged; the master's cursor."""
    wait_applied(slave, name, tno, timeout)
    wait_until(lambda: (master.queue.cursor(name) or 0) >= tno, 30, "the master to see the last acknowledgement")
    return master.queue.cursor(name) or 0


def kill_all(home: Path) -> list[int]:
    """Teardown: kill -9 every server of every system under ``home`` (also SIGSTOPped ones)."""
    killed = []
    for lock in Path(home).glob("*/*.lock"):
        files = st.ServerFiles(lock.parent, lock.stem)
        if not st.is_locked(files):
            continue
        pid = st.pid_file_pid(files)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    for pid in killed:
        with contextlib.suppress(Exception):
            wait_until(lambda p=pid: not _alive(p), 5, f"pid {pid} to die")
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
