"""The ``site`` fixture: a source system and a vault system whose server runs on 127.0.0.1."""

from __future__ import annotations

import pytest
import vaultkit as kit


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    s = kit.make_site(tmp_path)
    yield s
    kit.stop_site(s)
