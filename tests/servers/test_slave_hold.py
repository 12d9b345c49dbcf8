"""Apply updates OFF/ON on a real slave process: held, acknowledged, quiescent, then applied in order."""

from __future__ import annotations

import threading
import time

import pytest

from d3hb.cli import main
from d3hb.ops import supervisor as sv
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.store import hold as store_hold
from d3hb.testing import oracle, procs


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    monkeypatch.delenv("D3HB_SYSTEM", raising=False)
    yield tmp_path
    procs.kill_all(tmp_path)


def write_many(m: System, log: oracle.WriteLog, n: int, *, start: int = 0, per_txn: int = 100) -> None:
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
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
    log = oracle.WriteLog()
    write_many(m, log, 5000)
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 60, "the slave to acknowledge what it holds")
    # acknowledged and durably held, but not applied: the slave's database is quiescent
    assert store_hold.held_count(s, "hb") >= log.last
    assert store_apply.last_stored(s, "hb") >= log.last and store_apply.last_applied(s, "hb") == 0
    assert not s.has_account("acme")
    assert m.queue.state().depth <= 2, "held counts as stored: the master purged what was held"
    q = sv.format_query(sv.query(s, "hb"))
    assert "Updates not applied" in q[1]
    assert any(line.startswith("Held transactions: ") and int(line.split()[2]) >= log.last for line in q), q
    out = cli(capsys, "--system", "backup", "hot-backup", "held", "hb")
    assert "Updates not applied" in out and "Held transactions: " in out

    # 5,000 more arrive while the hold is applied
    # the writer has its own connection: sqlite connections are per thread here
    m2 = System.open(m.path)
    writer = threading.Thread(target=write_many, args=(m2, log, 5000), kwargs={"start": 5000, "per_txn": 20}, daemon=True)
    writer.start()
    time.sleep(0.2)
    out = cli(capsys, "--system", "backup", "hot-backup", "apply-updates", "hb", "on")
    assert "Updates applied. Applying" in out
    writer.join(120)
    assert not writer.is_alive()
    assert len(log.writes) == 10_000
    procs.wait_applied(s, "hb", log.last, 90)
    procs.wait_until(lambda: m.queue.cursor("hb") == log.last or (m.queue.cursor("hb") or 0) > log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log)
    assert store_hold.held_count(s, "hb") == 0
    q = sv.format_query(sv.query(s, "hb"))
    assert "Updates applied" in q[1] and not any(line.startswith("Held") for line in q)
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
