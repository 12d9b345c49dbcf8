"""Failover commands run on the wrong system are refused before anything changes.

After a promotion both systems look like masters to a tired administrator;
a rejoin with (r, a reseed or a tape failback pointed the wrong way would
replace the live system's data with the stale copy.  The epochs decide.
No servers are needed: every refusal comes before one would start.
"""

from __future__ import annotations

import pytest
from failover_kit import drained, pair, start_pair

from d3hb.errors import Refused
from d3hb.ops import failover, rejoin, saves
from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import Definitions
from d3hb.store import apply as store_apply
from d3hb.store import Home, System, digests
from d3hb.testing import oracle, procs


@pytest.fixture
def promoted(tmp_path, monkeypatch):
    """pick0 was the master; backup holds what it had and is promoted, then takes a write of its own."""
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    m, s, _ = pair(tmp_path)
    inv = m.file("acme", "inv")
    for i in range(5):
        inv.write(f"a{i}", f"body {i}")
    with s.transaction():  # the slave had received all of it (as replication would leave it)
        for t in m.queue.read(0, 100):
            store_apply.apply_transaction(s, t)
        store_apply.record_applied(s, "hb", m.queue.last_tno(), m.history_id, m.epoch)
    failover.promote(s, "hb")
    s.file("acme", "inv").write("new", "written on the promoted system")
    yield m, s
    procs.kill_all(tmp_path)


def _unchanged(m, s):
    return digests(m), digests(s), m.replica, s.replica, m.epoch, s.epoch


def test_rejoin_resync_named_backwards_is_refused(promoted, tmp_path):
    m, s = promoted
    before = _unchanged(m, s)
    with pytest.raises(Refused, match=r"'backup' \(epoch 2\) is newer than 'pick0' \(epoch 1\)"):
        rejoin.rejoin(s, m, "hb", resync=True, tape=tmp_path / "t.tape")
    assert _unchanged(m, s) == before and not (tmp_path / "t.tape").exists()


def test_reseed_of_a_promoted_system_is_refused(promoted):
    m, s = promoted
    before = _unchanged(m, s)
    with pytest.raises(Refused, match="not a hot-backup slave"):
        rejoin.reseed(m, s, "hb")  # pick0 still has the master definition; backup was promoted
    assert _unchanged(m, s) == before


def test_tape_failback_named_backwards_is_refused(promoted, tmp_path):
    m, s = promoted
    before = _unchanged(m, s)
    with pytest.raises(Refused, match="is newer than.*'d3hb --system backup hot-backup failback hb main=pick0'"):
        rejoin.tape_failback(m, s, "hb", tmp_path / "tapes")
    assert _unchanged(m, s) == before


def test_rejoin_to_a_system_still_a_slave_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    m, s, _ = pair(tmp_path)
    m.file("acme", "inv").write("a", "only on the master")
    before = _unchanged(m, s)
    with pytest.raises(Refused, match="still a hot-backup slave"):
        rejoin.rejoin(m, s, "hb", resync=True)
    assert _unchanged(m, s) == before and Definitions(m).get("hb").is_master


def test_changing_the_promoted_systems_definition_keeps_it_writable(promoted):
    _, s = promoted
    Definitions(s).setup("hb", {"notify": "dm,!0"})
    assert not s.replica
    s.file("acme", "inv").write("later", "still writable")


def test_roles_swapped_by_hand_once_everything_is_acknowledged(tmp_path, monkeypatch):
    """Across hosts there is no one-home rejoin: setup type=S on the old master is allowed only when its
    slave acknowledged everything it numbered, and starts the slave side at that number."""
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    m, s, _ = pair(tmp_path)
    start_pair(m, s)
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    for i in range(30):
        log.write(inv, f"a{i}", f"before {i}")
    drained(m, s, log)
    sv.stop(m, "hb")
    sv.stop(s, "hb")
    failover.promote(s, "hb")
    Definitions(m).setup("hb", {"type": "S", "port": str(Definitions(s).get("hb").port)})
    assert m.replica and store_apply.last_applied(m, "hb") == log.last
    Definitions(s).setup("hb", {"type": "M", "host": "127.0.0.1", "target": m.name})
    assert not s.replica
    start_pair(s, m)
    inv = s.file("acme", "inv")
    for i in range(30):
        log.write(inv, f"b{i}", f"after {i}")
    drained(s, m, log)


def test_a_restored_system_given_a_slave_definition_is_read_only(tmp_path, monkeypatch):
    """The promoted system's save carries its slave definition; restored elsewhere, setup makes it a replica."""
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    m, s, _ = pair(tmp_path)
    failover.promote(s, "hb")
    tape = tmp_path / "backup.save"
    with open(tape, "wb") as fh:
        saves.save(s, fh)
    target = Home(tmp_path).create("spare", small=True)
    path = target.path
    target.close()
    with open(tape, "rb") as fh:
        saves.restore(path, "spare", fh, servers=["hb"])
    r = System.open(path)
    try:
        assert not r.replica and Definitions(r).get("hb").type == "S"  # the definition came with the save
        Definitions(r).setup("hb", {"notify": "dm"})
        assert r.replica
    finally:
        r.close()
