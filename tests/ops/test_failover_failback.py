"""The day the master dies: kill -9 under load, promote, write on, fail back twice.

Real server processes on 127.0.0.1.  The old master's database is left as
the crash left it (the writer stops with the master server's death), so it
holds transactions the slave never received: its rejoin must be refused as
divergent, those transactions dumped to a tape, and the failback goes
through procedure (a) (re-seed from the new master, hot backup from it
until the queue is empty, switch back) and later procedure (b) (save,
restore and transaction tapes in rounds).  Every step ends with the oracle.
"""

from __future__ import annotations

import time

import pytest
from failover_kit import Writer, drained, keep_upto, lose_system, pair, start_pair

from d3hb.errors import D3hbError, Refused
from d3hb.ops import failover, rejoin, saves
from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import Definitions
from d3hb.servers import status as st
from d3hb.store import System, Transaction, digests
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs


def _crash_master(m: System, s: System, w: Writer, log: oracle.WriteLog) -> int:
    """kill -9 the master server while users write; returns what the slave holds."""
    procs.kill(m, "hb")
    log.observe_ack(m.queue.cursor("hb"))  # what the slave had acknowledged when the master died
    w.wait_writes(200)  # users go on writing on the master for a moment: those never reach the slave
    w.finish()
    procs.wait_until(lambda: not failover.live_master(s, "hb"), 30, "the slave to see its master gone")
    return store_apply.last_applied(s, "hb")


def test_kill_master_promote_failback_a_then_b(home, tmp_path):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    w.wait_writes(1500)

    # --- the master dies under load; the slave is promoted, users move to it ---
    held = _crash_master(m, s, w, log)
    t_dead = time.monotonic()
    p = failover.promote(s, "hb")
    assert p.tno == held
    w = Writer(s.path, log)
    lost = [x for x in log.writes if x.tno > held]
    keep_upto(log, held)  # lost with the dead master (they go to a tape, below)
    oracle.check(m, s, "hb", log, drained=False)  # nothing the slave acknowledged is lost
    w.start()
    w.wait_writes(300)
    assert w.first_refusal is None and time.monotonic() - t_dead < 60

    # --- the old master comes back: it diverged, so it is refused, its extra transactions on a tape ---
    assert lost, "the crash left nothing unsent: the test did not load the master hard enough"
    tape = tmp_path / "divergent.tape"
    lines: list[str] = []
    with pytest.raises(Refused, match="resync required"):
        rejoin.rejoin(m, s, "hb", tape=tape, out=lines.append)
    with open(tape, "rb") as fh:
        dumped = [r.tno for r in saves.iter_records(fh) if isinstance(r, Transaction)]
    assert dumped == [x.tno for x in lost]
    assert any(str(lost[0].tno) in ln for ln in lines)
    with pytest.raises(Exception, match="resync"):
        sv.start(m, "hb")  # its master server will not start while the resync is owed

    # --- procedure (a): re-seed the old master from the new one, which masters it until the queue is empty ---
    result, m = rejoin.rejoin(m, s, "hb", tape=tmp_path / "again.tape", resync=True)
    assert result.reseeded and m.replica
    w.wait_writes(300)
    with w.paused():
        drained(s, m, log)
    # ... then switch back under load: the main system is the master again.
    sw = failover.switchover(s, m, "hb")
    w.target = m.path
    w.wait_writes(300)
    assert sw.master == m.name
    with w.paused():
        drained(m, s, log)

    # --- the main system dies again; this time it fails back through tapes (b) ---
    held = _crash_master(m, s, w, log)
    failover.promote(s, "hb")
    keep_upto(log, held)
    oracle.check(m, s, "hb", log, drained=False)
    w = Writer(s.path, log, pause=0.004)
    w.start()
    w.wait_writes(200)
    fb, m = rejoin.tape_failback(s, m, "hb", tmp_path / "tapes", near=30, rounds=5, between=lambda n: w.wait_writes(100))
    w.target = m.path  # users reconnect to the main system
    w.wait_writes(300)
    w.finish()
    assert fb.rounds >= 1 and fb.at == max(x.tno for x in log.writes if x.tno <= fb.at)
    assert not m.replica and s.replica
    drained(m, s, log)
    # Once more, the numbering never went back: one history, increasing numbers across both failovers.
    assert m.history_id == s.history_id and m.epoch == fb.epoch


def test_rejoin_without_divergence_catches_up(home):
    """A master stopped cleanly after its slave had everything rejoins straight away (no resync)."""
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    w.wait_writes(300)
    w.finish()
    procs.wait_applied(s, "hb", log.last)
    procs.wait_until(lambda: m.queue.cursor("hb") == m.queue.last_tno(), 30, "every transaction acknowledged")
    sv.stop(m, "hb")
    failover.promote(s, "hb")
    w = Writer(s.path, log)
    w.start()
    w.wait_writes(200)
    result, m2 = rejoin.rejoin(m, s, "hb")
    assert not result.reseeded and m2 is m
    w.wait_writes(200)
    w.finish()
    drained(s, m, log)


def test_reseed_slave_while_master_takes_writes(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    w.wait_writes(300)
    # The backup system is lost: its database is gone.
    s = System.open(lose_system(home, s))
    s2 = System.open(s.path)  # a fresh, empty system: defined as the slave again
    Definitions(s2).setup("hb", {"type": "S", "port": str(Definitions(m).get("hb").port), "code": procs.CODE, "timeout": "2", "check": "60"})
    s2.close()
    w.wait_writes(200)
    at, s = rejoin.reseed(m, s, "hb")
    assert w.first_refusal is None  # users never stopped
    assert at > 0 and s.replica
    w.wait_writes(300)
    w.finish()
    drained(m, s, log)


def test_divergent_rejoin_is_refused_and_nothing_changes(home, tmp_path):
    m, s, _ = pair(home)
    start_pair(m, s)
    inv = m.file("acme", "inv")
    log = oracle.WriteLog()
    for i in range(20):
        log.write(inv, f"a{i}", f"before {i}")
    procs.wait_applied(s, "hb", log.last)
    sv.stop(s, "hb")  # the link is down ...
    extra = [log.write(inv, f"a{i}", f"unsent {i}") for i in range(5)]  # ... while the master takes five more
    procs.kill(m, "hb")
    p = failover.promote(s, "hb")
    assert p.tno == extra[0] - 1
    s.file("acme", "inv").write("a1", "written on the new master")  # same number as the first unsent one
    # The old master restarted by mistake, calling the promoted system's (restarted) slave server:
    # the handshake refuses it on the epoch, and nothing of it is applied.
    new_side = digests(s)
    sv.start(s, "hb")
    try:  # the refusal may come while the server starts (start fails) or just after
        sv.start(m, "hb")
    except D3hbError as exc:
        assert "epoch" in str(exc)
    procs.wait_until(lambda: not sv.is_running(m, "hb"), 30, "the old master server to stop on the refusal")
    assert "epoch" in (st.read_status(sv.files(m, "hb")) or {}).get("error", "")
    assert digests(s) == new_side and not s.replica
    sv.stop(s, "hb")
    before = digests(m)
    tape = tmp_path / "divergent.tape"
    lines: list[str] = []
    with pytest.raises(Refused, match=f"resync required.*{extra[0]} to {extra[-1]}"):
        rejoin.rejoin(m, s, "hb", tape=tape, out=lines.append)
    with open(tape, "rb") as fh:
        dumped = [r for r in saves.iter_records(fh) if isinstance(r, Transaction)]
    assert [t.tno for t in dumped] == extra and dumped[0].body == b"unsent 0"
    assert sum(1 for ln in lines if "acme,inv" in ln) == 5
    assert digests(m) == before and not m.replica  # the refused system is left exactly as it was
    assert Definitions(m).get("hb").is_master
    with pytest.raises(Exception, match="resync"):
        sv.start(m, "hb")
    # Nor can it be made a slave by hand, around the judgement.
    with pytest.raises(Refused, match=f"holds 5 updates \\({extra[0]} to {extra[-1]}\\) that the slave of 'hb' never acknowledged"):
        Definitions(m).setup("hb", {"type": "S"})
    assert Definitions(m).get("hb").is_master and digests(m) == before
