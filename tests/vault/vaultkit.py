"""Helpers for vault tests with real processes: a vault and a source on loopback, and a
TCP proxy that cuts connections after a number of bytes (``tc netem`` is not available)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from d3hb.ops import vault as ov
from d3hb.store import File, Home, System
from d3hb.store.vaultstore import Archive
from d3hb.testing.procs import free_port, wait_until

PASSWORD = "vault-node-password"


@dataclass
class Site:
    home: Path
    src: System
    target: System
    port: int

    def archive(self) -> Archive:
        return Archive(self.target.path)

    def define(self, system: System | None = None, name: str = "offsite", port: int | None = None, readonly: bool = False, **fields: str):
        return ov.define(system or self.src, name, {"host": "127.0.0.1", "port": str(port or self.port), "password": PASSWORD, **fields},
                         readonly=readonly)


def fill(system: System, n: int = 2000, size: int = 300, account: str = "acme", fname: str = "inv") -> File:
    if not system.has_account(account):
        system.create_account(account, "D")
    if system.find_file(account, fname, None) is None:
        system.create_file(account, fname, None, 7, "D")
        system.create_file(account, fname, fname, 11, "D")
    f = system.file(account, fname)
    with system.transaction():
        for i in range(n):
            f.write(f"k{i}", os.urandom(size // 2).hex() + "\xfeattr2\xfdv2")
    return f


def make_site(home: Path, *, archretain: str = "7d") -> Site:
    h = Home(home)
    src, target = h.create("pick0", small=True), h.create("vaulthost", small=True)
    ov.register(target, "pick0", {"password": PASSWORD, "archretain": archretain})
    port = free_port()
    ov.serve(target, "127.0.0.1", port)
    return Site(home, src, target, port)


def stop_site(site: Site) -> None:
    with contextlib.suppress(Exception):
        ov.stop(site.target)
    for s in (site.src, site.target):
        with contextlib.suppress(Exception):
            s.close()


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "D3HB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "d3hb", *args], capture_output=True, text=True, env=env, timeout=timeout, input="")


def cli_start(home: Path, *args: str) -> subprocess.Popen:
    """A d3hb command running in the background (a save the test interrupts)."""
    env = {**os.environ, "D3HB_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "d3hb", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


class CuttingProxy:
    """Forwards 127.0.0.1:port to the vault; connection number k (from 0) in ``cut`` is closed
    after ``after`` bytes have passed in the watched direction ('up' client->vault, 'down')."""

    def __init__(self, upstream: int, *, cut: set[int] | None = None, after: int = 100_000, direction: str = "up", cut_all: bool = False,
                 limits: dict[int, int] | None = None, stall: dict[int, int] | None = None) -> None:
        self.limits = limits or {}  # connection number -> bytes after which it is cut (overrides cut/after)
        # connection number -> bytes after which it stops forwarding until ``release`` is set
        # (the vault can be killed meanwhile with a volume half received)
        self.stall = stall or {}
        self.stalled, self.release = threading.Event(), threading.Event()
        self.upstream, self.cut, self.after, self.direction, self.cut_all = upstream, cut or set(), after, direction, cut_all
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            k = self.connections
            self.connections += 1
            up = socket.create_connection(("127.0.0.1", self.upstream))
            limit = self.limits.get(k) if self.limits else (self.after if (self.cut_all or k in self.cut) else None)
            pair = [client, up]
            threading.Thread(target=self._pump, args=(client, up, limit if self.direction == "up" else None, pair, self.stall.get(k)),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, limit if self.direction == "down" else None, pair), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, limit: int | None, pair: list[socket.socket], stall: int | None = None) -> None:
        passed = 0
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if stall is not None and passed + len(data) >= stall:
                    b.sendall(data[: max(0, stall - passed)])
                    data, passed, stall = data[max(0, stall - passed) :], stall, None
                    self.stalled.set()
                    self.release.wait(120)
                if limit is not None and passed + len(data) >= limit:
                    b.sendall(data[: max(0, limit - passed)])
                    self.cuts += 1
                    break
                b.sendall(data)
                passed += len(data)
        except OSError:
            pass
        for s in pair:  # one side cut: the whole connection goes, as a broken link does
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def no_partials(site: Site) -> bool:
    return not list((site.target.path / "vault" / "objects").glob("*/.*.partial"))


def wait_no_partials(site: Site) -> None:
    wait_until(lambda: no_partials(site), 30, "the vault to discard partial objects")
