"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from d3hb.testing import netns


@pytest.fixture
def two_hosts(request: pytest.FixtureRequest) -> Iterator[netns.TwoHosts]:
    """Two network namespaces joined by veth (root only; skipped with the reason otherwise)."""
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    tag = f"{request.node.name[:6]}{os.getpid() % 1000}"
    with netns.two_hosts(tag) as hosts:
        yield hosts
