"""The master judges the slave's history in the handshake (issue 7: an old master comes back only as a slave).

The old master is made the slave of the promoted system by editing the
definitions in both stores by hand, around the rejoin command and the
setup guard, as an administrator on two hosts might.  Real server processes
on 127.0.0.1: the handshake alone must refuse the diverged one ("resync
required", nothing changed on either side) and let the other catch up.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path


from d3hb.errors import D3hbError
from d3hb.ops import failover
from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import SLAVE, Definitions
from d3hb.protocol import events as ev
from d3hb.servers import admission, slave
from d3hb.servers import status as st
from d3hb.store import System, digests, history
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from failover_kit import drained, pair, start_pair  # noqa: E402


def _swap_by_hand(old: System, new: System, name: str = "hb") -> None:
    """What 'setup type=S' does on the old master, minus its guard; the promoted system calls it."""
    md, sd = Definitions(old).get(name), Definitions(new).get(name)
    with old.transaction():
        Definitions(old).put(replace(sd, type=SLAVE))
        store_apply.record_applied(old, name, history.own_position(old).last, old.history_id, old.epoch)
    Definitions(new).put(replace(md, host="127.0.0.1", target=old.name))


def _write(f, log: oracle.WriteLog, prefix: str, n: int) -> list[int]:
    return [log.write(f, f"{prefix}{i}", f"{prefix} value {i}") for i in range(n)]


def test_diverged_old_master_is_refused_by_the_handshake(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    _write(m.file("acme", "inv"), log, "a", 20)
    procs.wait_applied(s, "hb", log.last)
    sv.stop(s, "hb")  # the link is down while the master takes four more, then the master dies
    extra = _write(m.file("acme", "inv"), log, "x", 4)
    procs.kill(m, "hb")
    p = failover.promote(s, "hb")
    assert p.tno == extra[0] - 1
    _write(s.file("acme", "cust"), log, "n", 6)  # the new master's own numbers from extra[0] on
    _swap_by_hand(m, s)
    before_m, before_s = digests(m), digests(s)
    row_m = store_apply.applied_history(m, "hb")
    sv.start(m, "hb")
    try:  # the refusal may come while the master server starts (start fails) or just after
        sv.start(s, "hb")
    except D3hbError as exc:
        assert "resync required" in str(exc)
    procs.wait_until(lambda: not sv.is_running(s, "hb"), 30, "the new master server to stop on the refusal")
    error = (st.read_status(sv.files(s, "hb")) or {}).get("error", "")
    assert "resync required" in error and f"transactions {extra[0]} to {extra[-1]}" in error, error
    assert f"{len(extra)} transactions diverge" in error and "hot-backup resync hb" in error, error
    assert f"txn-dump {extra[0]} {extra[-1]}" in error, error
    plog = sv.files(m, "hb").plog  # the old master's slave server reports the refusal as an incident
    procs.wait_until(lambda: plog.exists() and "refused the call (resync-required)" in plog.read_text(), 30,
                     "the refusal in the slave's permanent log")
    assert digests(m) == before_m and digests(s) == before_s  # nothing changed on either side
    assert store_apply.applied_history(m, "hb") == row_m and not s.replica
    assert s.queue.cursor("hb") == p.tno  # the master kept what the old master would need after a resync
    sv.stop(m, "hb")


def test_old_master_that_did_not_diverge_catches_up_as_a_slave(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    _write(m.file("acme", "inv"), log, "a", 30)
    drained(m, s, log)
    sv.stop(m, "hb")
    sv.stop(s, "hb")
    failover.promote(s, "hb")
    _write(s.file("acme", "cust"), log, "n", 10)  # written before the old master is back
    _swap_by_hand(m, s)
    start_pair(s, m)
    _write(s.file("acme", "inv"), log, "b", 30)
    drained(s, m, log)


def test_the_master_judges_the_followed_history_and_epoch(home):
    """admission.divergence on real stores: the Welcome's history id and epoch are the ones the slave follows."""
    m, s, _ = pair(home)
    for i in range(5):
        m.file("acme", "inv").write(f"a{i}", "v")
    last = m.queue.last_tno()
    cfg = sv.config(m, Definitions(m).get("hb"))

    def welcome(hid: str, epoch: int, tno: int) -> ev.Welcome:
        return ev.Welcome(ev.PROTOCOL_VERSION, hid, epoch, tno, b"n" * ev.NONCE_SIZE)

    assert admission.divergence(m, cfg, welcome(m.history_id, m.epoch, last)) is None
    assert admission.divergence(m, cfg, welcome("", 0, 0)) is None  # a fresh slave holds nothing to judge
    assert admission.divergence(m, cfg, welcome("f" * 32, m.epoch, 0)) is None
    reason, text = admission.divergence(m, cfg, welcome("f" * 32, m.epoch, 3))
    assert reason == ev.HISTORY_MISMATCH and "follows another history (ffffffffffff" in text
    reason, text = admission.divergence(m, cfg, welcome(m.history_id, m.epoch + 1, 3))
    assert reason == ev.RESYNC_REQUIRED and "newer than this master's" in text
    reason, text = admission.divergence(m, cfg, welcome(m.history_id, m.epoch, last + 2))
    assert reason == ev.RESYNC_REQUIRED and "2 transactions diverge" in text and f"txn-dump {last + 1} {last + 2}" in text
    assert len(text.encode()) <= ev.MAX_TEXT
    # The slave's side: what it follows comes from its applied row, not from its own system.
    assert slave.followed(s, "hb") == ("", 0)
    store_apply.record_applied(s, "hb", 3, m.history_id, m.epoch)
    assert slave.followed(s, "hb") == (m.history_id, m.epoch) != (s.history_id, s.epoch)
