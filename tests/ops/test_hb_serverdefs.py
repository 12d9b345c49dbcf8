"""Server definitions in dm,hb.log: fields, defaults, validation, side effects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from d3hb.errors import NotFound, UsageError
from d3hb.ops import serverdefs as sd
from d3hb.store import Home


@pytest.fixture
def system(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    s = Home(tmp_path).create("pick0", small=True)
    yield s
    s.close()


def test_defaults_and_one_attribute_per_field(system):
    defs = sd.Definitions(system)
    d, created = defs.setup("hbm", {"type": "M", "host": "10.0.0.2", "target": "backup", "code": "12345678"})
    assert created and d.port == 2000 and d.protocol == "inet" and not d.log_slave
    assert (d.check, d.txlog, d.timeout, d.cap, d.window, d.batch) == (10.0, 1.0, 30.0, 1_000_000, 8, 500)
    body = system.file("dm", "hb.log").read("hbm")
    attrs = body.split(b"\xfe")
    assert len(attrs) == len(sd.FIELDS) and attrs[0] == b"M" and attrs[1] == b"10.0.0.2" and attrs[2] == b"2000"
    assert defs.get("hbm") == d


def test_change_keeps_other_fields(system):
    defs = sd.Definitions(system)
    defs.setup("hbs", {"type": "S", "code": "12345678", "notify": "dm,bob,!0"})
    d, created = defs.setup("hbs", {"port": "3000", "log-slave": "on", "bind": "0.0.0.0"})
    assert not created and d.port == 3000 and d.log_slave and d.notify == ("dm", "bob", "!0") and d.bind == "0.0.0.0"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "X"}, "type"),
        ({"type": "S", "port": "80"}, "port"),
        ({"type": "S", "port": "40000"}, "port"),
        ({"type": "S", "log-slave": "maybe"}, "log-slave"),
        ({"type": "S", "notify": "dm,b@d"}, "notify"),
        ({"type": "S", "bind": "not-an-ip"}, "bind"),
        ({"type": "S", "timeout": "-1"}, "timeout"),
        ({"type": "M", "host": "h", "code": "12345678"}, "target"),
        ({"type": "S"}, "code"),
        ({"type": "S", "host": "h", "code": "12345678"}, "host"),
        ({"type": "M", "host": "h", "target": "b", "code": "12345678", "apply": "off"}, "apply"),
        ({"type": "S", "code": "12345678", "tls-cert": "/c"}, "tls-key"),
    ],
)
def test_validation_names_the_field(system, fields, field):
    with pytest.raises(UsageError) as e:
        sd.Definitions(system).setup("hbs", {"code": "12345678", **fields} if "code" not in fields and fields != {"type": "S"} else fields)
    assert f"'{field}'" in str(e.value) or (field == "notify" and "notify" in str(e.value))


@pytest.mark.parametrize("name", ["", "abc1", "toolongxx", "a-b", "a b"])
def test_server_names_are_letters_only(system, name):
    with pytest.raises(UsageError, match="field 'name'"):
        sd.Definitions(system).setup(name, {"type": "S", "code": "12345678"})


def test_side_effects_replica_and_cursor(system):
    defs = sd.Definitions(system)
    assert not system.replica
    defs.setup("hbm", {"type": "M", "host": "h", "target": "b", "code": "12345678"})
    assert system.queue.cursor("hbm") == system.queue.last_tno()
    defs.setup("hbs", {"type": "S", "code": "12345678", "port": "2001"})
    assert system.replica, "defining a slave makes the system a read-only replica"
    assert defs.names() == ["hbm", "hbs"]
    defs.delete("hbm")
    assert system.queue.cursor("hbm") is None
    with pytest.raises(NotFound, match="hbm"):
        defs.get("hbm")


@settings(max_examples=15, deadline=None)
@given(port=hs.integers(1024, 32767), check=hs.floats(0.1, 1000), notify=hs.lists(hs.sampled_from(["dm", "bob", "!0", "!12"]), max_size=4))
def test_round_trip_through_hb_log(tmp_path_factory, port, check, notify):
    s = Home(tmp_path_factory.mktemp("h")).create("pick0", small=True)
    try:
        d, _ = sd.Definitions(s).setup("hbs", {"type": "S", "code": "12345678", "port": str(port), "check": repr(check),
                                               "notify": ",".join(notify)})
        got = sd.Definitions(s).get("hbs")
        assert got.port == port and got.notify == tuple(notify) and abs(got.check - check) <= 1e-6 * check
    finally:
        s.close()
