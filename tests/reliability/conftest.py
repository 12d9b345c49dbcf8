"""Options and fixtures of the reliability suite.

``--fault-rounds N`` (default 6) and ``--fault-seed S`` (default: drawn, and
printed) drive the randomized rounds; D3HB_FAULT_ROUNDS and D3HB_FAULT_SEED
do the same where the options cannot be given.  A failing run prints its
seed: ``pytest tests/reliability -m faults --fault-seed S`` replays it.
"""

from __future__ import annotations

import os
import random

import pytest


DEFAULT_ROUNDS = 6  # keep in step with the help text in tests/conftest.py


def _opt(config: pytest.Config, name: str, env: str) -> int | None:
    value = config.getoption(name, default=None)
    if value is None and os.environ.get(env):
        value = int(os.environ[env])
    return value


@pytest.fixture
def fault_rounds(request: pytest.FixtureRequest) -> int:
    return _opt(request.config, "--fault-rounds", "D3HB_FAULT_ROUNDS") or DEFAULT_ROUNDS


@pytest.fixture
def fault_seed(request: pytest.FixtureRequest) -> int:
    seed = _opt(request.config, "--fault-seed", "D3HB_FAULT_SEED")
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    print(f"\nfault seed {seed} (replay: pytest tests/reliability -m faults --fault-seed {seed})")
    return seed

