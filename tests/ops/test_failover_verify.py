"""Verification through the queue, and the failover commands on the command line.

Real server processes on 127.0.0.1; the replication oracle closes the
scenarios where both systems must agree.
"""

from __future__ import annotations

from failover_kit import Writer, drained, pair, start_pair

from d3hb.cli import main
from d3hb.ops import failover, verify
from d3hb.store import digests, messages
from d3hb.testing import oracle, procs


def run(capsys, *words: str) -> tuple[int, str, str]:
    status = main(list(words))
    out, err = capsys.readouterr()
    return status, out, err


def test_verify_under_load_agrees_then_finds_a_changed_item(home):
    m, s, _ = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    try:
        w.wait_writes(500)
        result = verify.verify_digests(m, s, "hb")  # while users write: both digest at the marker's number
        assert result.ok and result.files == 4, result
        w.wait_writes(100)
    finally:
        w.finish()
    drained(m, s, log, contiguous=False)  # the verify marker took a number between two writes
    # Someone changes an item on the slave behind hot backup's back (and adds one).
    f = s.file("acme", "inv").info
    victim = next(iter(s.file("acme", "inv").ids()))
    s._put(f, victim, b"changed on the slave", log=False, guard=False)
    s._put(f, b"stray", b"only here", log=False, guard=False)
    lines: list[str] = []
    result = verify.verify_digests(m, s, "hb", out=lines.append)
    assert {(d.file, d.item, d.what) for d in result.differences} == {
        ("acme,inv", victim, "differs"), ("acme,inv", b"stray", "only on the slave")}
    assert any(victim.decode() in ln for ln in lines) and "2 differences" in lines[-1]


def test_verify_command_digest_and_report_modes(home, capsys):
    m, s, _ = pair(home)
    start_pair(m, s)
    inv = m.file("acme", "inv")
    for i in range(30):
        inv.write(f"i{i}", f"body {i}")
    procs.wait_applied(s, "hb", m.queue.last_tno())
    status, out, err = run(capsys, "hot-backup", "verify", "hb")
    assert status == 0, err
    assert "both systems agree" in out
    status, out, err = run(capsys, "hot-backup", "verify", "hb", "mode=report", "report=count inv", "account=acme")
    assert status == 0, err
    assert "identical on both systems" in out
    s._put(s.file("acme", "inv").info, b"extra", b"x", log=False, guard=False)
    status, out, err = run(capsys, "hot-backup", "verify", "hb", "mode=report", "report=count inv", "account=acme")
    assert status == 1 and "[407] 30 items counted" in out and "[407] 31 items counted" in out
    status, out, err = run(capsys, "hot-backup", "verify", "hb")
    assert status == 1 and "acme,inv item 'extra': only on the slave" in out


def test_failover_commands(home, capsys):
    m, s, _ = pair(home)
    start_pair(m, s)
    m.file("acme", "inv").write("a", "1")
    procs.wait_applied(s, "hb", m.queue.last_tno())
    procs.wait_until(lambda: failover.live_master(s, "hb"), 30, "the slave to show its master connected")
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "promote", "hb")
    assert status == 1 and "two masters" in err and len(err.strip().splitlines()) == 1
    assert s.replica
    status, out, err = run(capsys, "hot-backup", "switchover", "hb")
    assert status == 0, err
    assert "Switchover done" in out and not s.replica and m.replica
    s.file("acme", "inv").write("b", "2")
    procs.wait_applied(m, "hb", s.queue.last_tno())
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "verify", "hb")
    assert status == 0 and "both systems agree" in out, err
    status, out, err = run(capsys, "hot-backup", "rejoin", "hb")
    assert status == 2 and "peer=" in err
    assert digests(m) == digests(s)


def test_periodic_verify_raises_an_incident_on_the_slave_then_clears_it(home):
    """verify=SECONDS on the master: markers through the queue, judged by the slave alone (no shared home needed)."""
    m, s, _ = pair(home, master_fields={"verify": "1"}, slave_fields={"notify": "dm"})
    start_pair(m, s)
    inv = m.file("acme", "inv")
    log = oracle.WriteLog()
    for i in range(40):
        log.write(inv, f"p{i}", f"body {i}")
    procs.wait_applied(s, "hb", log.last)
    dm = messages.log_path(s.path, "dm")
    f = s.file("acme", "inv").info
    original = s.file("acme", "inv").read("p7")
    s._put(f, b"p7", b"changed behind hot backup's back", log=False, guard=False)
    procs.wait_until(lambda: dm.exists() and "differ from the master: acme,inv" in dm.read_text(), 60,
                     "the slave to report the changed file to its notify list")
    assert "INCIDENT" in dm.read_text()
    # Put it right: the next marker agrees, and the incident is closed once.
    s._put(f, b"p7", original, log=False, guard=False)
    procs.wait_until(lambda: "files agree with the master" in dm.read_text(), 60, "the slave to say the files agree again")
    drained(m, s, log, contiguous=False)  # the markers took numbers between the writes
