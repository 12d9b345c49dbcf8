"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from d3hb.testing import netns, procs


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/reliability/conftest.py: options of a sub-directory's
    # conftest are unknown when pytest is run from the root.
    group = parser.getgroup("faults", "randomized fault rounds (tests/reliability)")
    group.addoption("--fault-rounds", type=int, default=None, help="rounds of random faults (default 6)")
    group.addoption("--fault-seed", type=int, default=None, help="seed of the random faults (default: a new one, printed)")


@pytest.fixture
def two_hosts(request: pytest.FixtureRequest) -> Iterator[netns.TwoHosts]:
    """Two network namespaces joined by veth (root only; skipped with the reason otherwise)."""
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    tag = f"{request.node.name[:6]}{os.getpid() % 1000}"
    with netns.two_hosts(tag) as hosts:
        yield hosts


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A d3hb home of its own (D3HB_HOME), no system preset; every server left in it is killed at the end."""
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    monkeypatch.delenv("D3HB_SYSTEM", raising=False)
    yield tmp_path
    procs.kill_all(tmp_path)
