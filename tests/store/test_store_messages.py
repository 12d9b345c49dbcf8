"""msg: a message log per user or port."""

from __future__ import annotations

from pathlib import Path

import pytest

from d3hb.errors import UsageError
from d3hb.store import messages


def test_send_and_read(tmp_path: Path):
    messages.send(tmp_path, "dm", "hello\nworld", sender="bob")
    messages.send(tmp_path, "!0", "to the console")
    assert messages.read(tmp_path, "dm")[0].endswith("from bob: hello world")
    assert (tmp_path / "msg" / "port-0.log").exists()
    assert messages.read(tmp_path, "nobody") == []


@pytest.mark.parametrize("bad", ["", "a b", "!x", "1abc", "dm,bob"])
def test_bad_recipients_refused_before_writing(tmp_path: Path, bad):
    with pytest.raises(UsageError):
        messages.send(tmp_path, bad, "x")
    assert not (tmp_path / "msg").exists()


@pytest.mark.parametrize("bad", ["a b", "!x", "1abc", "dm,!y"])
def test_bad_notify_entries(bad):
    with pytest.raises(UsageError):
        messages.parse_targets(bad)


def test_notify_list():
    assert messages.parse_targets("dm,bob,!0") == ["dm", "bob", "!0"]
