"""Apply updates OFF/ON on a real slave process: held, acknowledged, quiescent, then applied in order."""

from __future__ import annotations

import threading
import time


from d3hb.cli import main
from d3hb.ops import supervisor as sv
from d3hb.store import System, digests
from d3hb.store import apply as store_apply
from d3hb.store import hold as store_hold
from d3hb.testing import oracle, procs


def write_many(m: System, log: oracle.WriteLog, n: int, *, start: int = 0, per_txn: int = 100, pause: float = 0.0) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
        if pause:
            time.sleep(pause)  # pacing a writer, not waiting for a condition
        with m.transaction():
            for j in range(i, min(i + per_txn, start + n)):
                f = inv if j % 2 else cust
                key = f"k{j % 700}"
                if j % 7 == 3 and f.read(key) is not None:
                    log.delete(f, key)
                else:
                    log.write(f, key, f"value {j}")


def cli(capsys, *words: str) -> str:
    status = main(list(words))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_apply_off_holds_5000_then_on_while_5000_more_arrive(home, capsys):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")), slave_fields={"apply": "off"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    quiet = digests(s)
    log = oracle.WriteLog()
    write_many(m, log, 5000)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 60, "the slave to acknowledge what it holds")
    # acknowledged and durably held, but not applied: the slave's database is quiescent
    held = store_hold.held_count(s, "hb")
    assert held == store_apply.last_stored(s, "hb") >= log.last, "every transaction received (the creates, the writes) is held"
    assert store_apply.last_applied(s, "hb") == 0
    assert not s.has_account("acme") and digests(s) == quiet, "the slave's files did not change: it can be saved"
    assert m.queue.state().depth == 0, "held counts as stored: the master purged what was held"
    q = sv.format_query(sv.query(s, "hb"))
    assert q[1].endswith("Updates not applied"), q
    assert f"Held transactions: {held} (in the hold file, not yet applied)" in q, q
    out = cli(capsys, "--system", "backup", "hot-backup", "held", "hb")
    assert "Updates not applied" in out and f"Held transactions: {held}" in out

    # 5,000 more arrive, paced so that they keep arriving while the hold is applied
    m2 = System.open(m.path)  # the writer's own connection: sqlite connections are per thread here
    writer = threading.Thread(target=write_many, args=(m2, log, 5000),
                              kwargs={"start": 5000, "per_txn": 20, "pause": 0.01}, daemon=True)
    writer.start()
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) > held + 200, 30, "new transactions to be held while apply is off")
    out = cli(capsys, "--system", "backup", "hot-backup", "apply-updates", "hb", "on")
    assert "Updates applied. Applying" in out
    assert writer.is_alive(), "the writer must still be writing when the hold starts draining"
    procs.wait_until(lambda: store_hold.held_count(s, "hb") == 0, 90, "the hold to drain")
    drained_at = len(log.writes)
    writer.join(120)
    assert not writer.is_alive()
    assert len(log.writes) == 10_000
    procs.wait_applied(s, "hb", log.last, 90)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log)
    stats = sv.statistics(s, "hb")["slave"]
    with capsys.disabled():  # the figures for the report (capsys holds the CLI's output)
        print(f"apply on: {stats.get('batches_during_drain')} batches acknowledged while the hold drained, slowest "
              f"{stats.get('max_ack_ms_during_drain')} ms; hold empty after {drained_at - 5000} of the 5000 new writes; "
              f"{stats.get('transactions_applied')} applied live")
    assert stats["batches_during_drain"] >= 1, "new batches were acknowledged while the hold was applied"
    assert drained_at < 10_000, "the hold emptied while the writer was still writing"
    assert stats["transactions_applied"] > 0, "after the hold, the slave continued live (batches applied at once)"
    assert store_hold.held_count(s, "hb") == 0
    q = sv.format_query(sv.query(s, "hb"))
    assert q[1].endswith("Updates applied") and not any(line.startswith("Held") for line in q), q
    # the change is kept in the definition: a restart keeps applying
    out = cli(capsys, "--system", "backup", "hot-backup", "show", "hb")
    assert "Apply updates" in out and "on" in out.split("Apply updates", 1)[1].splitlines()[0].lower()
    m2.close()


def test_apply_off_survives_a_kill_of_the_slave_and_apply_held_drains_it_offline(home, capsys):
    m, s, _ = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")))
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write_many(m, log, 500)
    procs.wait_applied(s, "hb", log.last, 60)
    cli(capsys, "--system", "backup", "hot-backup", "apply-updates", "hb", "off")
    write_many(m, log, 2000, start=500)
    procs.wait_until(lambda: store_apply.last_stored(s, "hb") >= log.last, 60, "the slave to store everything")
    procs.kill(s, "hb")  # kill -9 with a hold: nothing lost, nothing doubled
    procs.wait_stopped(s, "hb")
    sv.stop(m, "hb")
    held = store_hold.held_count(s, "hb")
    assert held >= 2000
    assert store_apply.last_applied(s, "hb") < log.last
    # offline (a promotion does this): apply everything held, exactly once
    assert store_hold.apply_held(s, "hb", relog=False, auto_create=False) == held
    assert store_hold.apply_held(s, "hb", relog=False, auto_create=False) == 0
    assert store_apply.last_applied(s, "hb") >= log.last
    oracle.check(m, s, "hb", log)
