"""Two hosts on one machine: network namespaces joined by a veth pair.

A test that needs a real network between master and slave (a link that can
be cut, addresses that are not loopback) gets two namespaces, ``a`` and
``b``, each with one end of a veth pair and an address in a private /30
chosen from 10.213.0.0/16, and loopback up.  Processes are started inside a
namespace with ``ip netns exec``; they share the file system, so D3HB_HOME
works as usual.

Everything created is named with a per-call tag and removed on exit, also
when the test fails; a namespace left by a killed run is removed the next
time the same tag is used.  Only root can do this: :func:`available` says
why not, so the caller can skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Host:
    ns: str  # the namespace's name
    addr: str  # its address on the veth link
    ifname: str  # its end of the veth pair


def available() -> str | None:
    """None when two hosts can be made here, otherwise the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"d3hbprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip() or 'ip netns add failed'}"
    _ip("netns", "del", probe, check=False)
    return None


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


class TwoHosts:
    """Namespaces ``a`` and ``b`` joined by veth; see :func:`two_hosts`."""

    def __init__(self, tag: str) -> None:
        # Interface names are limited to 15 characters; the /30 is picked by the same hash,
        # so two runs at once (different pids) rarely share a subnet, and never an interface.
        h = zlib.crc32(tag.encode())
        short = f"{h & 0xFFFFFF:06x}"
        net = f"10.213.{h >> 24 & 0xFF}.{(h >> 16 & 0x3F) * 4}"
        first = net.rsplit(".", 1)
        self.a = Host(f"d3hb-{tag}-a", f"{first[0]}.{int(first[1]) + 1}", f"d3a{short}")
        self.b = Host(f"d3hb-{tag}-b", f"{first[0]}.{int(first[1]) + 2}", f"d3b{short}")
        self._made: list[str] = []

    def _create(self) -> None:
        for host in (self.a, self.b):
            _ip("netns", "del", host.ns, check=False)  # a leftover from a killed run
            _ip("netns", "add", host.ns)
            self._made.append(host.ns)
            _ip("link", "set", "lo", "up", ns=host.ns)
        _ip("link", "add", self.a.ifname, "netns", self.a.ns, "type", "veth", "peer", "name", self.b.ifname, "netns", self.b.ns)
        for host in (self.a, self.b):
            _ip("addr", "add", f"{host.addr}/30", "dev", host.ifname, ns=host.ns)
            _ip("link", "set", host.ifname, "up", ns=host.ns)

    def close(self) -> None:
        # Deleting a namespace deletes its veth end, and with it the peer.
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)
        self._made.clear()

    def _argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", host.ns, *argv]

    def popen(self, host: Host, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` inside ``host``'s namespace."""
        return subprocess.Popen(self._argv(host, argv), **kw)

    def run(self, host: Host, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``host``'s namespace to the end (timeout 120 s unless given)."""
        kw.setdefault("timeout", 120)
        return subprocess.run(self._argv(host, argv), **kw)

    def link_down(self) -> None:
        """Cut the link: both ends down, as a pulled cable looks to each side."""
        for host in (self.a, self.b):
            _ip("link", "set", host.ifname, "down", ns=host.ns)

    def link_up(self) -> None:
        for host in (self.a, self.b):
            _ip("link", "set", host.ifname, "up", ns=host.ns)

    def reachable(self, src: Host, dst: Host) -> bool:
        """Whether ``src`` reaches ``dst`` over TCP (a refused connection counts: the peer answered).

        Python rather than ping: the iputils package is not on every machine.
        """
        probe = ("import socket,sys\n"
                 "try: socket.create_connection((sys.argv[1], 9), timeout=3)\n"
                 "except ConnectionRefusedError: pass\n"
                 "except OSError: sys.exit(1)\n")  # fmt: skip
        return self.run(src, [sys.executable, "-c", probe, dst.addr], capture_output=True).returncode == 0


@contextlib.contextmanager
def two_hosts(tag: str = "t") -> Iterator[TwoHosts]:
    """Make namespaces ``d3hb-TAG-a`` and ``d3hb-TAG-b``; remove them at the end."""
    hosts = TwoHosts(f"{tag}{os.getpid()}")
    try:
        hosts._create()
        yield hosts
    finally:
        hosts.close()
