"""Hot backup master and slave as real processes on 127.0.0.1, with faults.

Every scenario ends with the replication oracle (d3hb.testing.oracle):
every acknowledged write applied once, in order, nothing extra, and equal
per-file digests once the queue has drained.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs

N = 10_000


def write_many(m: System, log: oracle.WriteLog, n: int, *, start: int = 0, per_txn: int = 100) -> None:
    """n updates over two files, one SQLite transaction per ``per_txn``; every 7th a delete."""
    inv, cust = m.file("acme", "inv"), m.file("acme", "cust")
    for i in range(start, start + n, per_txn):
        with m.transaction():
            for j in range(i, min(i + per_txn, start + n)):
                f = inv if j % 2 else cust
                key = f"k{j % 1500}"
                if j % 7 == 3 and f.read(key) is not None:
                    log.delete(f, key)
                else:
                    log.write(f, key, f"value {j}\xfeattr2\xfdv2")


class Writer(threading.Thread):
    """Writes continuously on its own connection until told to stop."""

    def __init__(self, path, log: oracle.WriteLog, per_txn: int = 20) -> None:
        super().__init__(daemon=True)
        self.path, self.log, self.per_txn = path, log, per_txn
        self.halt = threading.Event()
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with System.open(self.path) as m:
                while not self.halt.is_set():
                    write_many(m, self.log, self.per_txn, start=self.count, per_txn=self.per_txn)
                    self.count += self.per_txn
                    time.sleep(0.002)  # leave the database to the others now and then
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> None:
        self.halt.set()
        self.join(10)
        assert self.error is None, f"writer failed: {self.error!r}"


def pair(home, **kw):
    return procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")), **kw)


def drained(m, s, log, name="hb", timeout=30.0):
    procs.wait_applied(s, name, log.last, timeout)
    procs.wait_until(lambda: m.queue.cursor(name) == log.last, 10, "the master to see the last acknowledgement")
    return oracle.check(m, s, name, log)


def test_ten_thousand_updates_exactly_once_in_order(home):
    m, s, _ = pair(home)
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    t0 = time.monotonic()
    write_many(m, log, N)
    assert len(log.writes) == N
    drained(m, s, log)
    elapsed = time.monotonic() - t0
    assert m.queue.state().depth == 0, "the master purges what the slave acknowledged"
    q = sv.format_query(sv.query(s, "hb"))
    assert q[0].startswith("Server 'hb'. PID ") and q[0].endswith("Server type Slave. Traces OFF")
    assert f"Cur trans {log.last}. ACK'ed trans {log.last}. Updates applied" in q[1]
    assert q[2] in ("Status: Reading network", "Status: Connected")
    qm = sv.format_query(sv.query(m, "hb"))
    assert "Server type Master" in qm[0] and f"ACK'ed trans {log.last}" in qm[1]
    lines = sv.queue_lines(m, "hb")
    assert "Transactions in queue: 0 (0 bytes, 0 frames)" in lines
    assert f"Last acknowledged transaction number: {log.last}" in lines
    assert "Lag: 0 transactions, 0.0 seconds" in lines
    stats = sv.statistics(m, "hb")
    assert stats["slave"]["last_applied"] == log.last and stats["slave"]["duplicates_skipped"] == 0
    sv.stop(m, "hb")
    sv.stop(s, "hb")
    assert not (home / "pick0" / "hb.pid").exists() and not (home / "pick0" / "hb.running").exists()
    assert elapsed < 30


def test_stop_and_restart_either_side_in_the_middle(home):
    m, s, _ = pair(home)
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write_many(m, log, 1500)
    sv.stop(s, "hb")  # a clean stop: whatever batch was in hand is finished or not begun
    write_many(m, log, 1500, start=1500)
    assert m.queue.state().depth >= 1, "the queue keeps what the stopped slave has not acknowledged"
    sv.start(s, "hb")
    write_many(m, log, 1000, start=3000)
    sv.stop(m, "hb")
    write_many(m, log, 1000, start=4000)
    sv.start(m, "hb")
    drained(m, s, log)
    assert st.recent_messages(sv.files(s, "hb"), 0, permanent=True)


def test_kill9_slave_in_the_middle_then_restart(home):
    m, s, _ = pair(home, master_fields={"batch": "50"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    procs.wait_until(lambda: store_apply.last_applied(s, "hb") > 500, 20, "the slave to apply a first part")
    procs.kill(s, "hb", signal.SIGKILL)
    procs.wait_stopped(s, "hb")
    with pytest.raises(Exception, match="Terminated abnormally"):
        sv.query(s, "hb")
    assert "Terminated abnormally" in "\n".join(sv.status_lines(s, "hb"))
    time.sleep(0.3)  # the writer goes on while the slave is down (not a wait for a condition)
    sv.start(s, "hb")
    procs.wait_until(lambda: store_apply.last_applied(s, "hb") > log.last - 50 if log.writes else False, 20, "the slave to catch up")
    w.finish()
    applied = drained(m, s, log)
    assert applied == log.last


def test_kill9_master_in_the_middle_then_restart(home):
    m, s, _ = pair(home)
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    procs.wait_until(lambda: store_apply.last_applied(s, "hb") > 500, 20, "the slave to apply a first part")
    procs.kill(m, "hb", signal.SIGKILL)
    procs.wait_stopped(m, "hb")
    oracle.check(m, s, "hb", log, drained=False, contiguous=True)  # mid-way: all acknowledged there, nothing extra
    sv.start(m, "hb")
    w.finish()
    drained(m, s, log)
    plog = "\n".join(st.recent_messages(sv.files(m, "hb"), 0, permanent=True))
    assert "Terminated abnormally" in plog


def test_sigstop_slave_past_the_write_timeout_then_sigcont(home):
    m, s, _ = pair(home, master_fields={"timeout": "1"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write_many(m, log, 500)
    procs.wait_applied(s, "hb", log.last)
    procs.kill(s, "hb", signal.SIGSTOP)
    try:
        write_many(m, log, 3000, start=500)  # fills the socket buffers and the window: the master waits, then gives up
        procs.wait_until(lambda: any("connection lost" in ln for ln in st.recent_messages(sv.files(m, "hb"), 50)), 15,
                         "the master to drop the stalled connection")
        write_many(m, log, 500, start=3500)
    finally:
        procs.kill(s, "hb", signal.SIGCONT)
    drained(m, s, log)
    plog = st.recent_messages(sv.files(m, "hb"), 0, permanent=True)
    assert sum("connection lost" in ln for ln in plog) == 1, "one incident, not one per retry"
    assert sum("connection restored" in ln for ln in plog) == 1
    errors = [bytes(b).decode() for _, b in m.file("dm", "errors").items()]
    assert any("connection lost" in e for e in errors), "incidents go to the errors file"


def test_wrong_verification_code_is_refused_and_nothing_applied(home):
    m, s, port = pair(home, master_fields={"code": "not-the-same-code", "notify": "dm,!0"}, slave_fields={"notify": "dm"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    m.file("acme", "inv").write("k", "v")
    procs.wait_until(lambda: any("refused" in ln or "verification code" in ln for ln in st.recent_messages(sv.files(m, "hb"), 20)),
                     10, "the master to report the refusal")
    from d3hb.store import messages

    procs.wait_until(lambda: any("verification code" in ln for ln in messages.read(s.path, "dm")), 10, "the slave's incident")
    procs.wait_until(lambda: any("verification code" in ln for ln in messages.read(m.path, "!0")), 10, "the master's incident")
    assert any("verification code" in ln for ln in messages.read(m.path, "dm"))
    assert store_apply.last_applied(s, "hb") == 0 and not s.has_account("acme")
    time.sleep(0.5)  # several calls are refused meanwhile; still one incident
    assert sum("INCIDENT" in ln for ln in st.recent_messages(sv.files(m, "hb"), 0, permanent=True)) == 1


def test_unknown_server_name_is_refused(home):
    m, s, port = pair(home)
    from d3hb.ops.serverdefs import Definitions

    Definitions(m).setup("other", {"type": "M", "host": "127.0.0.1", "port": str(port), "target": "backup",
                                   "code": procs.CODE, "timeout": "2", "txlog": "0.05"})
    sv.start(s, "hb")
    sv.start(m, "other")
    m.file("acme", "inv").write("k", "v")
    procs.wait_until(lambda: any("unknown-server" in ln or "another server's name" in ln
                                 for ln in st.recent_messages(sv.files(m, "other"), 20)), 10, "the refusal")
    procs.wait_until(lambda: any("another server's name" in ln for ln in st.recent_messages(sv.files(s, "hb"), 20)), 10,
                     "the slave's incident")
    assert store_apply.last_applied(s, "hb") == 0 and not s.has_account("acme")


def test_port_in_use_fails_with_the_reason(home):
    import socket

    m, s, port = pair(home)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(Exception, match=r"FAILED: Server 'hb' encountered an error and stopped: .*already in use"):
            sv.start(s, "hb")
    assert not sv.is_running(s, "hb")


def test_queue_over_its_cap_marks_resync_required(home):
    m, s, _ = pair(home, master_fields={"cap": "100"})
    sv.start(m, "hb")  # no slave: the queue grows
    log = oracle.WriteLog()
    write_many(m, log, 300)
    procs.wait_stopped(m, "hb")
    doc = st.read_status(sv.files(m, "hb"))
    assert doc["state"] == st.FAILED and "resync required" in doc["error"]
    assert m.queue.cursor("hb") is None, "the cursor is dropped so the queue can purge"
    assert any("over its cap" in ln for ln in st.recent_messages(sv.files(m, "hb"), 0, permanent=True))
    with pytest.raises(Exception, match="requires a resync"):
        sv.start(m, "hb")


def test_cleared_queue_is_a_gap_that_stops_the_pair(home):
    m, s, _ = pair(home)
    log = oracle.WriteLog()
    write_many(m, log, 100)
    m.queue.clear("test")
    sv.start(s, "hb")
    try:  # the master may fail before or after it has reported its first state
        sv.start(m, "hb")
    except Exception as exc:  # noqa: BLE001
        assert re.search(r"FAILED: Server 'hb' .*gap: the slave needs transaction 1.*resync", str(exc)), exc
    procs.wait_stopped(m, "hb")
    doc = st.read_status(sv.files(m, "hb"))
    assert doc["state"] == st.FAILED and "gap: the slave needs transaction 1" in doc["error"]
    assert any("INCIDENT" in ln and "gap" in ln for ln in st.recent_messages(sv.files(m, "hb"), 0, permanent=True))
    assert store_apply.last_applied(s, "hb") == 0


def test_test_records_flow_and_heartbeats(home):
    m, s, _ = pair(home, master_fields={"check": "0.3"}, slave_fields={"check": "0.3"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    procs.wait_until(lambda: store_apply.last_applied(s, "hb") >= 5 and m.queue.last_tno() > 5, 10, "test records to be applied")
    procs.wait_until(lambda: m.queue.cursor("hb") >= 5, 5, "test records to be acknowledged")
    assert sv.query(m, "hb")["incidents"] == []


def _certs(d):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make test certificates")
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=d3hb test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "slave.key", "-out", "slave.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "slave.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "slave.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "slave.pem", d / "slave.key"


def test_tls_link_replicates(home, tmp_path_factory):
    ca, cert, key = _certs(tmp_path_factory.mktemp("tls"))
    m, s, _ = pair(home, master_fields={"tls-ca": str(ca)}, slave_fields={"tls-cert": str(cert), "tls-key": str(key)})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write_many(m, log, 1000)
    drained(m, s, log)
    assert "with TLS" in "\n".join(st.recent_messages(sv.files(s, "hb"), 0, permanent=True))


def test_tls_master_refuses_an_unverified_slave(home, tmp_path_factory):
    ca, cert, key = _certs(tmp_path_factory.mktemp("tls"))
    other_ca, _, _ = _certs(tmp_path_factory.mktemp("tls2"))
    m, s, _ = pair(home, master_fields={"tls-ca": str(other_ca)}, slave_fields={"tls-cert": str(cert), "tls-key": str(key)})
    sv.start(s, "hb")
    sv.start(m, "hb")
    m.file("acme", "inv").write("k", "v")
    procs.wait_until(lambda: any("certificate" in ln.lower() for ln in st.recent_messages(sv.files(m, "hb"), 20)), 10,
                     "the master to refuse the slave's certificate")
    assert store_apply.last_applied(s, "hb") == 0


def test_late_test_record_is_an_incident_once_then_cleared(home):
    m, s, _ = pair(home, master_fields={"check": "0.3", "timeout": "3"}, slave_fields={"check": "0.3", "timeout": "3"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    procs.wait_until(lambda: m.queue.cursor("hb") >= 4, 10, "a first test record to be acknowledged")
    procs.kill(s, "hb", signal.SIGSTOP)
    try:
        # Late after two check periods (0.6 s), well before the connection is given up (3 s).
        procs.wait_until(lambda: any("not acknowledged" in ln for ln in st.recent_messages(sv.files(m, "hb"), 30)), 2.5,
                         "the late test record incident")
    finally:
        procs.kill(s, "hb", signal.SIGCONT)
    procs.wait_until(lambda: any("acknowledged: the logging path works" in ln for ln in st.recent_messages(sv.files(m, "hb"), 30)),
                     15, "the test record to be acknowledged again")
    plog = st.recent_messages(sv.files(m, "hb"), 0, permanent=True)
    assert sum("not acknowledged" in ln for ln in plog) == 1
    assert not any("connection lost" in ln for ln in plog)


def test_stop_is_prompt_while_calling_a_slave_that_never_answers(home):
    import socket

    m, s, port = pair(home, master_fields={"timeout": "60"})
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", port))
        mute.listen()  # accepts into the backlog, never says a word
        sv.start(m, "hb")
        procs.wait_until(lambda: (st.read_status(sv.files(m, "hb")) or {}).get("state") == st.WAIT_CALL_RESPONSE, 5, "the call")
        t0 = time.monotonic()
        sv.stop(m, "hb")
        assert time.monotonic() - t0 < 5
    assert (st.read_status(sv.files(m, "hb")) or {}).get("state") == st.STOPPED


def test_a_locked_slave_database_delays_but_loses_nothing(home):
    m, s, _ = pair(home, master_fields={"timeout": "3"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    write_many(m, log, 200)
    procs.wait_applied(s, "hb", log.last)
    import sqlite3

    blocker = sqlite3.connect(s.path / "system.db", timeout=1, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # a local writer holding the slave's database
    try:
        write_many(m, log, 300, start=200)
        procs.wait_until(lambda: any("cannot store a batch" in ln for ln in st.recent_messages(sv.files(s, "hb"), 30)), 30,
                         "the slave to report that it cannot store")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    drained(m, s, log)
    plog = st.recent_messages(sv.files(s, "hb"), 0, permanent=True)
    assert sum("cannot store a batch" in ln for ln in plog) == 1
    assert any("batches are stored again" in ln for ln in plog)
