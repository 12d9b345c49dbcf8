"""Progress of tape operations: a line a second on a terminal (pty), a quiet summary otherwise,
and the same figures in the tape-socket Query."""

from __future__ import annotations

import os
import re
import subprocess
import time

from d3hb.ops import netsave, tapeio, tsservers
from d3hb.ops.tapesocket import Definitions
from d3hb.store import Home
from d3hb.testing import procs

LINE = re.compile(r"[\d,]+ items, [\d.]+ (?:bytes|KB|MB)(?: of [\d.]+ (?:bytes|KB|MB) \(\d+%\))?, [\d.]+ (?:bytes|KB|MB)/s, \d+:\d\d elapsed(?:, \d+:\d\d left)?")


def _system(home, items: int = 3000):
    s = Home(home).create("pick0", small=True)
    s.create_account("acme")
    s.create_file("acme", "big", None, 7)
    s.create_file("acme", "big", "big", 101)
    f = s.file("acme", "big")
    with s.transaction():
        for i in range(items):
            f.write(f"K{i}", f"{i}\xfe" + "z" * 600)
    return s


def _on_pty(argv, timeout: float = 60.0) -> str:
    """Run argv with a pseudo-terminal as stdin, stdout and stderr; return what it printed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=netsave.env(), close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    assert proc.wait(timeout=timeout) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_terminal_shows_progress_lines_and_a_script_only_the_summary(tmp_path):
    home = tmp_path / "h"
    _system(home).close()
    tape = tmp_path / "full.tape"
    subprocess.run(netsave.cli(home, "pick0", "tcl", "set-device", "1", str(tape), "f"), check=True, env=netsave.env(), capture_output=True)

    on_tty = _on_pty(netsave.cli(home, "pick0", "tcl", "save", "(h"))
    lines = [m.group(0) for m in LINE.finditer(on_tty)]
    assert lines, on_tty
    # A save knows its size in advance: percentage and time left.
    assert "left" in lines[-1] and "%" in lines[-1] and lines[-1].startswith("3,000 items"), lines
    assert "save: 2 accounts" in on_tty

    quiet = subprocess.run(netsave.cli(home, "pick0", "tcl", "save", "(h"), capture_output=True, text=True, env=netsave.env())
    assert quiet.returncode == 0
    assert not LINE.search(quiet.stdout + quiet.stderr), quiet.stdout
    summary = [ln for ln in quiet.stdout.splitlines() if ln.startswith("save:")]
    assert len(summary) == 1 and "3000 items" in summary[0] and "/s)" in summary[0]

    # A restore from a file knows the tape's size too.
    Home(home).create("copy", small=True).close()
    subprocess.run(netsave.cli(home, "copy", "tcl", "set-device", "1", str(tape), "f"), check=True, env=netsave.env(), capture_output=True)
    restored = _on_pty(netsave.cli(home, "copy", "tcl", "restore"))
    rl = [m.group(0) for m in LINE.finditer(restored)]
    assert rl and "left" in rl[-1] and "(100%)" in rl[-1], restored
    op, fig, state = tapeio.published(Home(home).system_path("copy"))
    assert (op, state, fig.items) == ("restore", "done", 3000)  # items as the summary counts them, not accounts or files


def test_tape_socket_query_shows_the_save_in_progress(tmp_path):
    home = tmp_path / "h"
    s = _system(home, items=6000)
    pipe = tmp_path / "slow.pipe"
    os.mkfifo(pipe, 0o600)
    Definitions(s).setup("ssave", {"role": "input", "pipe": str(tmp_path / "in.pipe"), "host": "127.0.0.1", "port": str(procs.free_port())})
    tsservers.start(s, "ssave")
    try:
        subprocess.run(netsave.cli(home, "pick0", "tcl", "set-device", "1", str(pipe), "c"), check=True, env=netsave.env(), capture_output=True)
        save = subprocess.Popen(netsave.cli(home, "pick0", "tcl", "save", "(h"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=netsave.env())
        fd = os.open(pipe, os.O_RDONLY)
        try:
            got = 0
            while got < 1_000_000:  # take part of the tape, then hold the save back
                got += len(os.read(fd, 65536))
            procs.wait_until(lambda: (tapeio.published(s.path) or ("", None, ""))[2] == "running", 30, "the save's figures")
            q = subprocess.run(netsave.cli(home, "pick0", "tape-socket", "query", "ssave"), capture_output=True, text=True, env=netsave.env())
            assert q.returncode == 0, q.stderr
            shown = [ln for ln in q.stdout.splitlines() if ln.strip().startswith("Save in progress:")]
            assert shown and LINE.search(shown[0]) and "left" in shown[0], q.stdout
            items = int(LINE.search(shown[0]).group(0).split()[0].replace(",", ""))
            assert 0 < items < 6000
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)
        out, err = save.communicate(timeout=60)
        assert save.returncode == 0, err
        saved = int(re.search(r"^save: .*?(\d+) items", out, re.M).group(1))  # the server definitions in dm count too
        assert saved >= 6000
        q = subprocess.run(netsave.cli(home, "pick0", "tape-socket", "query", "ssave"), capture_output=True, text=True, env=netsave.env())
        assert f"Save done: {saved:,} items" in q.stdout and "(100%)" in q.stdout, q.stdout
    finally:
        tsservers.stop(s.path, "ssave")
        s.close()
