"""The hot-backup command line: setup, start, query, failures, coldstart, demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from d3hb.cli import main
from d3hb.ops import supervisor as sv
from d3hb.store import Home
from d3hb.testing import procs


def run(capsys, *words: str) -> tuple[int, str, str]:
    status = main(list(words))
    out, err = capsys.readouterr()
    return status, out, err


def define_pair(capsys, port: int) -> None:
    assert run(capsys, "system", "create", "backup")[0] == 0
    code = "cli-pair-code-123"
    status, out, err = run(capsys, "hot-backup", "setup", "hbm", "type=M", "host=127.0.0.1", f"port={port}",
                           "target=backup", f"code={code}", "timeout=2", "txlog=0.05", "notify=dm,!0")
    assert status == 0, err
    assert "Server 'hbm' defined (Master" in out
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "setup", "hbm", "type=S", f"port={port}", f"code={code}")
    assert status == 0, err
    assert "hot-backup slave" in out


def test_setup_validation_names_the_field(home, capsys):
    status, _, err = run(capsys, "hot-backup", "setup", "hbm", "type=M", "host=h", "port=99", "target=b", "code=12345678")
    assert status == 2 and "field 'port'" in err and "1024 to 32767" in err
    status, _, err = run(capsys, "hot-backup", "setup", "toolongname", "type=S", "code=12345678")
    assert status == 2 and "field 'name'" in err
    status, _, err = run(capsys, "hot-backup", "setup", "hbm", "type=M", "port=2000", "code=12345678")
    assert status == 2 and "field 'host'" in err
    status, _, err = run(capsys, "hot-backup", "setup", "hbs", "type=S", "code=short")
    assert status == 2 and "field 'code'" in err
    status, _, err = run(capsys, "hot-backup", "setup", "hbs", "type=S", "code=12345678", "protocol=udp")
    assert status == 2 and "field 'protocol'" in err


def test_start_query_show_queue_stop(home, capsys):
    port = procs.free_port()
    define_pair(capsys, port)
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "start", "hbm")
    assert status == 0, err
    assert out.splitlines()[:2] == ["Waiting for server 'hbm' to start", "Waiting for server 'hbm' to initialize"]
    assert run(capsys, "hot-backup", "start", "hbm")[0] == 0
    m = Home(home).open("pick0")
    m.create_account("acme", "DL")
    m.create_file("acme", "inv", None, 7, "DL")
    m.create_file("acme", "inv", "inv", 7, "DL")
    last = m.file("acme", "inv").write("1", "one")
    s = Home(home).open("backup")
    procs.wait_applied(s, "hbm", last)
    status, out, _ = run(capsys, "--system", "backup", "hot-backup", "query", "hbm")
    lines = out.splitlines()
    assert lines[0].startswith("Server 'hbm'. PID ") and lines[0].endswith(". Server type Slave. Traces OFF")
    assert lines[1].startswith("Total Recvd ") and f"Cur trans {last}. ACK'ed trans {last}. Updates applied" in lines[1]
    assert lines[2] == "Status: Reading network"
    status, out, _ = run(capsys, "hot-backup", "queue", "hbm")
    assert f"Last acknowledged transaction number: {last}" in out and "Log DL files only" in out
    status, out, _ = run(capsys, "hot-backup", "show", "hbm")
    assert "Remote Host name  127.0.0.1" in out and f"TCP port          {port}" in out and "Verification code (set)" in out
    status, out, _ = run(capsys, "hot-backup", "statistics", "hbm")
    assert status == 0 and "Slave statistics:" in out and f"last applied             {last}" in out
    status, out, _ = run(capsys, "hot-backup", "status", "hbm")
    assert out.splitlines()[0].startswith("Server 'hbm' (Master, port")
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "stop", "hbm")
    assert status == 0 and "Server 'hbm' stopped" in out
    status, _, err = run(capsys, "--system", "backup", "hot-backup", "query", "hbm")
    assert status == 1 and "not running" in err
    assert run(capsys, "hot-backup", "stop", "hbm")[0] == 0


def test_port_in_use_says_so(home, capsys):
    port = procs.free_port()
    define_pair(capsys, port)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        status, out, err = run(capsys, "--system", "backup", "hot-backup", "start", "hbm")
    assert status == 1
    assert "FAILED: Server 'hbm' encountered an error and stopped" in err
    assert f"TCP port {port} is already in use" in err and "port=N" in err


def test_kill9_is_terminated_abnormally_and_coldstart_restarts(home, capsys):
    port = procs.free_port()
    define_pair(capsys, port)
    assert run(capsys, "--system", "backup", "hot-backup", "start", "hbm")[0] == 0
    assert run(capsys, "hot-backup", "start", "hbm")[0] == 0
    s, m = Home(home).open("backup"), Home(home).open("pick0")
    procs.kill(s, "hbm", signal.SIGKILL)
    procs.wait_stopped(s, "hbm")
    status, _, err = run(capsys, "--system", "backup", "hot-backup", "query", "hbm")
    assert status == 1 and "Terminated abnormally" in err
    status, out, _ = run(capsys, "--system", "backup", "hot-backup", "status", "hbm")
    assert "Terminated abnormally" in out.splitlines()[1]  # newest first
    # A "reboot": kill the master too, then coldstart brings both back; a cleanly stopped server stays down.
    procs.kill(m, "hbm", signal.SIGKILL)
    procs.wait_stopped(m, "hbm")
    status, out, err = run(capsys, "--system", "backup", "hot-backup", "coldstart")
    assert status == 0 and "Server 'hbm' started" in out, err
    status, out, err = run(capsys, "hot-backup", "coldstart")
    assert status == 0 and "Server 'hbm' started" in out, err
    assert sv.is_running(s, "hbm") and sv.is_running(m, "hbm")
    assert run(capsys, "hot-backup", "stop", "hbm")[0] == 0
    status, out, _ = run(capsys, "hot-backup", "coldstart")
    assert "No server to restart" in out and not sv.is_running(m, "hbm")


def test_slave_refuses_local_writes(home, capsys):
    define_pair(capsys, procs.free_port())
    s = Home(home).open("backup")
    s.create_account("acme", "DL", guard=False, log=False)
    s.create_file("acme", "inv", None, 7, "DL", guard=False, log=False)
    s.create_file("acme", "inv", "inv", 7, "DL", guard=False, log=False)
    with pytest.raises(Exception, match="hot-backup slave"):
        s.file("acme", "inv").write("x", "y")


def test_delete_removes_the_cursor(home, capsys):
    define_pair(capsys, procs.free_port())
    m = Home(home).open("pick0")
    assert m.queue.cursor("hbm") is not None
    status, out, _ = run(capsys, "hot-backup", "delete", "hbm")
    assert status == 0 and m.queue.cursor("hbm") is None


def test_demo_runs_and_agrees(tmp_path):
    env = {**os.environ, "D3HB_HOME": str(tmp_path / "untouched")}
    res = subprocess.run([sys.executable, "-m", "d3hb", "demo"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Digests equal" in res.stdout and "Server type Slave" in res.stdout and "Display queue:" in res.stdout
    assert not (tmp_path / "untouched").exists(), "the demo never touches D3HB_HOME"


def test_menu_helpers_list_state_sample_and_prefill(home, capsys):
    port = procs.free_port()
    define_pair(capsys, port)
    status, out, _ = run(capsys, "hot-backup", "list")
    assert out.splitlines() == ["hbm"]
    status, out, _ = run(capsys, "hot-backup", "state", "hbm")
    assert out.strip() == "hbm: not running"
    status, out, _ = run(capsys, "hot-backup", "sample", "hbm")
    assert out.strip().startswith("depth=0 lag=0 lag_s=")
    status, out, _ = run(capsys, "hot-backup", "show", "hbm", "format=fields")
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert values["name"] == "hbm" and values["port"] == str(port) and values["code"] == "********"
    # The form sends the masked code back: the code is kept.
    status, out, err = run(capsys, "hot-backup", "setup", "hbm", "code=********", "timeout=5")
    assert status == 0, err
    from d3hb.ops.serverdefs import Definitions

    assert Definitions(Home(home).open("pick0")).get("hbm").code == "cli-pair-code-123"
