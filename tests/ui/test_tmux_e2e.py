"""End to end in tmux: the real console in an 80x24 terminal, driven by keystrokes only.

``d3hb hot-backup`` runs in one tmux window per system: the slave's (backup)
and the master's (pick0).  Each defines its half of the pair through
Special Operations -> Setup Server, selects it, starts it; the master's Query
Server screen is read with ``capture-pane``; updates written on the master
reach the slave (checked by the replication oracle); both are stopped from
the menu.  The same for tape-socket: Other Server creates ``ssave`` on both
sides, the input and output servers start, Query shows the link, Shutdown
stops both.  Servers are killed at teardown whatever happens.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tmuxpane
from tmuxpane import Tmux

from d3hb.ops import supervisor, tsservers
from d3hb.ops.tapesocket import Definitions
from d3hb.store import Home
from d3hb.testing import oracle, procs

ROOT = Path(__file__).resolve().parents[2]
CODE = "tmux-pair-code"


@pytest.fixture
def tmux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tmux]:
    reason = tmuxpane.available()
    if reason:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    t = Tmux(ROOT, {"D3HB_HOME": str(tmp_path), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)})
    try:
        yield t
    finally:
        t.kill()
        procs.kill_all(tmp_path)


def d3hb(home: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "D3HB_HOME": str(home), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "d3hb", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"d3hb {' '.join(args)}: {done.stderr}"
    return done.stdout


def title(screen: str) -> str:
    """The menu title in the header (the first line, before 'Server:')."""
    first = screen.splitlines()[0] if screen else ""
    return first.split("Server:", 1)[0].strip()


def panel(screen: str) -> str:
    """The text of the right-hand box, its wrapped lines joined again."""
    parts = []
    for line in screen.splitlines()[3:]:
        if "││" in line:
            parts.append(line.split("││", 1)[1].rstrip().rstrip("│").strip())
    return re.sub(r"\s+", " ", " ".join(parts)).strip()


def panel_title(screen: str) -> str:
    """The title of the right-hand box: the menu, form or output shown there."""
    lines = screen.splitlines()
    top = lines[2] if len(lines) > 2 else ""
    return top.split("┐┌", 1)[1].split(" ─", 1)[0].strip() if "┐┌" in top else ""


def menu(t: Tmux, win: str, option: str, expect_title: str) -> str:
    t.wait_prompt(win, "Enter option:")
    t.type(win, option)
    return t.wait(win, lambda s: title(s) == expect_title, f"the menu {expect_title!r}")


def back_to(t: Tmux, win: str, expect_title: str) -> None:
    t.wait_prompt(win, "Enter option:")
    t.key(win, "x")
    t.wait(win, lambda s: title(s) == expect_title and t.prompt(win).startswith("Enter option:"), f"back to {expect_title!r}")


def run_option(t: Tmux, win: str, option: str, label: str, expect: str, confirm: bool = False) -> str:
    """Choose ``option`` (its output panel is titled ``label``), answer Y to its question, wait for ``expect``."""
    t.wait_prompt(win, "Enter option:")
    t.type(win, option)
    if confirm:
        t.wait(win, lambda _s: t.prompt(win).endswith("(Y/N)"), "the confirmation")
        t.key(win, "y")
    screen = t.wait(win, lambda s: panel_title(s) == label and expect in panel(s) and t.prompt(win).startswith("Enter option:"),
                    f"{expect!r} in the panel {label!r}")  # fmt: skip
    return panel(screen)


def define_hot_backup_server(t: Tmux, win: str, answers: dict[str, str]) -> None:
    t.wait(win, lambda s: title(s) == "Hot Backup Main Menu", "the main menu")
    menu(t, win, "9", "Special Operations")
    menu(t, win, "1", "Setup Server")
    t.type(win, "1")  # New Server
    t.wait_prompt(win, "Server Name")
    asked = t.fill_form(win, answers)
    assert asked[:4] == ["Server Name", "Server Type", "Remote Host name" if answers["Server Type"] == "M" else "TCP port number",
                         "TCP port number" if answers["Server Type"] == "M" else "Log slave update"], asked  # fmt: skip
    t.type(win, "y")
    t.wait(win, lambda s: f"Server '{answers['Server Name']}' defined" in panel(s), "the definition to be saved")
    t.wait_prompt(win, "Enter option:")
    t.type(win, "4")  # Select Server
    t.wait_prompt(win, "Enter number or name:")
    t.type(win, answers["Server Name"])
    t.wait(win, lambda s: s.splitlines()[0].rstrip().endswith(f"Server: {answers['Server Name']}"), "the server in the header")
    back_to(t, win, "Special Operations")
    back_to(t, win, "Hot Backup Main Menu")


def test_hot_backup_pair_through_the_menus(tmux: Tmux, tmp_path: Path) -> None:
    d3hb(tmp_path, "system", "create", "pick0", "--small")
    d3hb(tmp_path, "system", "create", "backup", "--small")
    port = procs.free_port()
    tmux.open("slave", [sys.executable, "-m", "d3hb", "--system", "backup", "hot-backup"])
    tmux.open("master", [sys.executable, "-m", "d3hb", "--system", "pick0", "hot-backup"])

    define_hot_backup_server(tmux, "slave", {"Server Name": "hb", "Server Type": "S", "TCP port number": str(port),
                                             "Verification code": CODE, "Write time-out": "5"})  # fmt: skip
    define_hot_backup_server(tmux, "master", {"Server Name": "hb", "Server Type": "M", "Remote Host name": "127.0.0.1",
                                              "TCP port number": str(port), "Target VME name": "backup", "TxLog timer": "0.1",
                                              "Verification code": CODE, "Write time-out": "5"})  # fmt: skip
    home = Home(tmp_path)
    m, s = home.open("pick0"), home.open("backup")
    try:
        m.create_account("acme", "DL")
        m.create_file("acme", "inv", None, 7, "DL")
        m.create_file("acme", "inv", "inv", 7, "DL")

        run_option(tmux, "slave", "3", "Start Server", "Server 'hb' started")
        run_option(tmux, "master", "3", "Start Server", "Server 'hb' started")
        assert supervisor.is_running(m, "hb") and supervisor.is_running(s, "hb")

        log = oracle.WriteLog()
        inv = m.file("acme", "inv")
        for i in range(40):
            log.write(inv, f"INV{i}", f"customer {i}\xfe{i * 7}\xfdpaid")
        log.delete(inv, "INV3")
        procs.wait_applied(s, "hb", log.last, timeout=60)

        # Query Server on the master: its live figures, read off the screen; the header's state refreshes by itself.
        last = log.last
        procs.wait_until(lambda: m.queue.cursor("hb") == last, 30, "the master to see the last acknowledgement")
        text = run_option(tmux, "master", "2", "Query Server", "Server type Master")
        assert "Server 'hb'. PID" in text and f"ACK'ed trans {last}" in text, text
        # Connected: anything but waiting for the slave, stopped or failed.
        assert re.search(r"Status: (Idle|Reading queue|Reading network|Writing to network|Waiting for ACK|Connected)$", text), text
        tmux.wait("master", lambda sc: f"ACK'ed trans {last}" in sc.splitlines()[1], "the live header")
        slave_query = run_option(tmux, "slave", "2", "Query Server", "Server type Slave")
        assert "Updates applied" in slave_query

        oracle.check(m, s, "hb", log)

        run_option(tmux, "master", "4", "Stop Server", "stopped", confirm=True)
        run_option(tmux, "slave", "4", "Stop Server", "stopped", confirm=True)
        procs.wait_stopped(m, "hb", 30)
        procs.wait_stopped(s, "hb", 30)
        tmux.wait("master", lambda sc: "hb: not running" in sc.splitlines()[1], "the header to show the master stopped")
        # X leaves the menus; the program ends with status 0 (the window shows it, remain-on-exit).
        tmux.key("master", "x")
        assert procs.wait_until(lambda: tmux.exit_status("master") is not None, 60, "the program to end") is not None
        assert tmux.exit_status("master") == 0
    finally:
        m.close()
        s.close()


def create_ts_server(t: Tmux, win: str, answers: dict[str, str]) -> None:
    t.wait(win, lambda s: title(s) == "Tape-socket Menu", "the tape-socket menu")
    assert t.screen(win).splitlines()[0].rstrip().endswith("Server: default")
    menu(t, win, "14", "Other Server")
    t.wait_prompt(win, "Enter option:")
    t.type(win, "1")
    # A list of the servers defined to choose from, or (none yet) the name alone.
    t.wait(win, lambda _s: t.prompt(win) in ("Enter number or name:", "Server name:"), "the server's name to be asked")
    t.type(win, answers["Server name"])
    t.wait(win, lambda _s: t.prompt(win).endswith("(Y/N)") and "Create it?" in t.prompt(win), "the offer to create it")
    t.key(win, "y")
    t.wait_prompt(win, "Role")
    t.fill_form(win, {k: v for k, v in answers.items() if k != "Server name"})
    t.type(win, "y")
    t.wait(win, lambda s: title(s) == "Tape-socket Menu" and s.splitlines()[0].rstrip().endswith(f"Server: {answers['Server name']}"),
           "the new server, selected, in the tape-socket menu")  # fmt: skip


def test_tape_socket_other_server_and_shutdown(tmux: Tmux, tmp_path: Path) -> None:
    d3hb(tmp_path, "system", "create", "pick0", "--small")
    d3hb(tmp_path, "system", "create", "vmrest", "--small")
    port = procs.free_port()
    tmux.open("rx", [sys.executable, "-m", "d3hb", "--system", "vmrest", "tape-socket"])
    tmux.open("tx", [sys.executable, "-m", "d3hb", "--system", "pick0", "tape-socket"])
    create_ts_server(tmux, "rx", {"Server name": "ssave", "Role": "input", "Pipe": str(tmp_path / "ssave.in"),
                                  "Host": "127.0.0.1", "TCP port": str(port)})  # fmt: skip
    create_ts_server(tmux, "tx", {"Server name": "ssave", "Role": "output", "Pipe": str(tmp_path / "ssave.out"),
                                  "Host": "127.0.0.1", "TCP port": str(port), "Call repeat": "0", "Call wait": "0.1"})  # fmt: skip
    home = Home(tmp_path)
    # Other Server made a server of its own, beside the default one.
    assert "ssave" in _ts_names(home, "pick0")

    run_option(tmux, "rx", "5", "Start input server", "started")
    run_option(tmux, "tx", "4", "Start output server", "started")
    rx_dir, tx_dir = home.system_path("vmrest"), home.system_path("pick0")
    assert tsservers.pid_of(rx_dir, "ssave") is not None and tsservers.pid_of(tx_dir, "ssave") is not None

    query = ""
    end = time.monotonic() + 60
    while "Connected" not in query:  # Query shows one moment: ask again until the output server has called
        assert time.monotonic() < end, f"the input server never saw the output server; Query said: {query}"
        query = run_option(tmux, "rx", "6", "Query", "ssave")
    assert "Server 'ssave' (input)" in query
    assert "Server 'ssave' (output)" in run_option(tmux, "tx", "6", "Query", "ssave")
    run_option(tmux, "tx", "11", "Shutdown", "both servers stopped", confirm=True)
    procs.wait_until(lambda: tsservers.pid_of(rx_dir, "ssave") is None, 60, "the input server to stop")
    procs.wait_until(lambda: tsservers.pid_of(tx_dir, "ssave") is None, 60, "the output server to stop")


def _ts_names(home: Home, system: str) -> list[str]:
    s = home.open(system)
    try:
        return Definitions(s).names()
    finally:
        s.close()
