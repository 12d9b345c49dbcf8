"""Planned switchover under steady load, and promote's refusal while a master is live.

Real server processes on 127.0.0.1; every scenario ends with the oracle.
"""

from __future__ import annotations

import pytest
from failover_kit import Writer, drained, pair, start_pair

from d3hb.errors import Refused
from d3hb.ops import failover
from d3hb.ops import supervisor as sv
from d3hb.store import System, messages
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs


def test_planned_switchover_under_steady_load(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    try:
        w.wait_writes(300)
        epoch_before = m.epoch
        result = failover.switchover(m, s, "hb")
        w.target = s.path  # users move to the new master
        w.wait_writes(300)
    finally:
        w.finish()
    assert w.refused > 0, "no write was ever refused: the switchover did not stop writes on the old master"
    assert result.master == s.name and result.slave == m.name
    assert result.epoch == epoch_before + 1 and s.epoch == result.epoch
    assert 0 < result.unavailable < 5, result
    # Roles reversed: the old master is a read-only slave, the new master numbers on from the switch point.
    assert m.replica and not s.replica
    assert min(x.tno for x in log.writes if x.tno > result.tno) == result.tno + 1
    with pytest.raises(Refused, match="hot-backup slave"):
        m.file("acme", "inv").write("x", "refused on the old master")
    drained(s, m, log)


def test_promote_refused_while_connected_then_forced(home):
    m, s, _ = pair(home, slave_fields={"notify": "dm,!3"})
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    w.wait_writes(100)
    w.finish()
    procs.wait_applied(s, "hb", log.last)
    procs.wait_until(lambda: failover.live_master(s, "hb"), 30, "the slave to show its master connected")
    with pytest.raises(Refused, match="two masters"):
        failover.promote(s, "hb")
    assert s.replica and sv.is_running(s, "hb")  # nothing changed
    sv.stop(m, "hb")
    procs.wait_until(lambda: not failover.live_master(s, "hb"), 30, "the slave to see its master gone")
    p = failover.promote(s, "hb")
    assert p.tno == log.last == store_apply.last_applied(s, "hb")
    assert not s.replica and not sv.is_running(s, "hb")
    for target in ("dm", "!3"):  # the notify list is told
        assert f"promoted to master: last transaction applied {p.tno}" in messages.log_path(s.path, target).read_text()
    tno = s.file("acme", "inv").write("after", "promotion")
    assert tno == p.tno + 1  # numbering continues the old master's history
    assert s.history_id == m.history_id and s.epoch == m.epoch + 1
    # The new epoch's journal is kept for the old master's return.
    assert s.queue.cursor("hb") == p.tno and s.queue.get(tno) is not None


def test_promote_force_while_connected(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    m.file("acme", "inv").write("a", "1")
    procs.wait_applied(s, "hb", m.queue.last_tno())
    procs.wait_until(lambda: failover.live_master(s, "hb"), 30, "the slave to show its master connected")
    p = failover.promote(s, "hb", force=True)
    assert not s.replica and p.epoch == 2
    assert System.open(s.path).file("acme", "inv").read("a") == b"1"


def test_promote_applies_what_the_slave_holds(home):
    """Apply updates OFF: the slave stored and acknowledged updates without applying them; promote applies them first."""
    m, s, _ = pair(home, slave_fields={"apply": "off"})
    start_pair(m, s)
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    for i in range(40):
        log.write(inv, f"h{i}", f"held {i}")
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 60, "the slave to acknowledge (hold) everything")
    assert store_apply.last_applied(s, "hb") < log.last  # stored and acknowledged, not applied
    sv.stop(m, "hb")
    procs.wait_until(lambda: not failover.live_master(s, "hb"), 30, "the slave to see its master gone")
    p = failover.promote(s, "hb")
    assert p.held > 0 and p.tno == log.last == store_apply.last_applied(s, "hb")
    oracle.check(m, s, "hb", log)  # nothing the slave acknowledged is missing once promoted
