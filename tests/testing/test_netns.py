"""The two-hosts fixture itself: namespaces exist, talk to each other, and go away."""

from __future__ import annotations

import subprocess
import sys

from d3hb.testing import netns


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_hosts_reach_each_other_and_the_link_can_be_cut(two_hosts: netns.TwoHosts) -> None:
    a, b = two_hosts.a, two_hosts.b
    assert a.addr != b.addr
    assert a.ns in _namespaces() and b.ns in _namespaces()
    # A real TCP connection across the veth link, not loopback.
    server = two_hosts.popen(b, [sys.executable, "-c", (
        "import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); s.listen(); print(s.getsockname()[1], flush=True);"
        "c,_=s.accept(); c.sendall(c.recv(5).upper())"), b.addr], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    reply = two_hosts.run(a, [sys.executable, "-c", (
        "import socket,sys; c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); c.sendall(b'hello'); print(c.recv(5).decode())"),
        b.addr, str(port)], capture_output=True, text=True)
    assert reply.stdout.strip() == "HELLO"
    assert server.wait(timeout=10) == 0
    two_hosts.link_down()
    assert not two_hosts.reachable(a, b)
    two_hosts.link_up()
    assert two_hosts.reachable(a, b)


def test_namespaces_are_removed_at_the_end() -> None:
    if netns.available():
        import pytest

        pytest.skip(netns.available())
    with netns.two_hosts("gone") as hosts:
        names = (hosts.a.ns, hosts.b.ns)
        assert all(n in _namespaces() for n in names)
    assert not any(n in _namespaces() for n in names)
