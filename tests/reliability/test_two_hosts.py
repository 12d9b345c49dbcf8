"""Master and writer on host a, slave on host b (network namespaces joined by veth):
the link is cut past the time-outs while the writer goes on, then restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from pathlib import Path

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs, writer

ROOT = Path(__file__).resolve().parents[2]


def _start(hosts, host, home: Path, system: str) -> None:
    env = {**os.environ, "D3HB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = hosts.run(host, [sys.executable, "-m", "d3hb", "--home", str(home), "--system", system, "hot-backup", "start", "hb"],
                     capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def _in_namespace(pid: int, ns: str) -> bool:
    # The server's network namespace is the one 'ip netns' named: same inode.
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino


def test_link_cut_and_restored_between_two_hosts(home, two_hosts):
    a, b = two_hosts.a, two_hosts.b
    m, s, port = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")),
                                 master_fields={"host": b.addr, "timeout": "1"}, slave_fields={"bind": b.addr, "timeout": "1"})
    _start(two_hosts, b, home, "backup")
    _start(two_hosts, a, home, "pick0")
    assert _in_namespace(st.pid_file_pid(sv.files(s, "hb")), b.ns) and _in_namespace(st.pid_file_pid(sv.files(m, "hb")), a.ns)
    journal = home / "writer.journal"
    proc = writer.spawn(m.path, "hb", journal, seed=3, refs=("acme,inv", "acme,cust"), pause=0.005,
                        prefix=["ip", "netns", "exec", a.ns])
    try:
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > 200, 30, "replication across the veth link")
        two_hosts.link_down()
        try:
            cut = store_apply.last_applied(s, "hb")
            procs.wait_until(lambda: any("connection lost" in ln for ln in st.recent_messages(sv.files(m, "hb"), 50)), 30,
                             "the master to notice the cut link")
            time.sleep(0.5)  # the writer goes on, the slave gets nothing
            assert store_apply.last_applied(s, "hb") <= cut + 400, "at most what was in flight arrives after the cut"
            assert m.queue.last_tno() > store_apply.last_applied(s, "hb")
        finally:
            two_hosts.link_up()
        procs.wait_until(lambda: any("connection restored" in ln for ln in st.recent_messages(sv.files(m, "hb"), 50)), 60,
                         "the master to call again across the restored link")
        procs.wait_until(lambda: store_apply.last_applied(s, "hb") > cut + 100, 30, "replication to resume")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    log = oracle.load_journal(journal, m)
    log.observe_ack(procs.wait_drained(m, s, "hb", log.last, 60))
    rep = oracle.verify(m, s, "hb", log, contiguous=False)
    assert rep.ok, rep.problems
    assert rep.writes > 300 and rep.lost == rep.duplicated == 0
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(a.ns) == 1


def _netem(hosts, host, *args: str) -> subprocess.CompletedProcess:
    return hosts.run(host, ["tc", "qdisc", "replace", "dev", host.ifname, "root", "netem", *args], capture_output=True, text=True)


def test_delay_loss_and_reordering_with_netem(home, two_hosts):
    a, b = two_hosts.a, two_hosts.b
    probe = _netem(two_hosts, a, "delay", "20ms", "10ms", "loss", "5%", "reorder", "25%", "50%")
    if probe.returncode != 0:
        pytest.skip(f"tc netem is not available on this kernel: {probe.stderr.strip() or probe.stdout.strip()}")
    _netem(two_hosts, b, "delay", "20ms", "10ms", "loss", "5%")
    m, s, port = procs.make_pair(home, files=(("acme", "inv"), ("acme", "cust")),
                                 master_fields={"host": b.addr, "timeout": "5"}, slave_fields={"bind": b.addr, "timeout": "5"})
    _start(two_hosts, b, home, "backup")
    _start(two_hosts, a, home, "pick0")
    journal = home / "writer.journal"
    proc = writer.spawn(m.path, "hb", journal, seed=4, refs=("acme,inv", "acme,cust"), count=200, pause=0.005,
                        prefix=["ip", "netns", "exec", a.ns])
    assert proc.wait(120) == 0
    log = oracle.load_journal(journal, m)
    log.observe_ack(procs.wait_drained(m, s, "hb", log.last, 120))
    rep = oracle.verify(m, s, "hb", log, contiguous=False)
    assert rep.ok, rep.problems
