"""The command line's contract: exit 0/1/2, one line on stderr, no traceback, data as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def d3hb(home: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("D3HB_")}
    e.update({"D3HB_HOME": str(home), "PYTHONPATH": str(ROOT)}, **(env or {}))
    return subprocess.run([sys.executable, "-m", "d3hb", *args], input=stdin, capture_output=True, env=e, cwd=ROOT, timeout=60)


def one_line_error(r: subprocess.CompletedProcess, status: int, *words: str) -> str:
    err = r.stderr.decode()
    assert r.returncode == status, (r.returncode, err, r.stdout)
    assert err.count("\n") == 1 and err.startswith("d3hb: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    h = tmp_path_factory.mktemp("home")
    assert d3hb(h, "tcl", "create-file", "inv", "(l").returncode == 0
    assert d3hb(h, "tcl", "write", "inv", "1", stdin=b"abc\nx]y\n").returncode == 0
    return h


def digest(home: Path) -> str:
    """Everything the user can see: items of every file, and the queue."""
    conn = sqlite3.connect(f"file:{home / 'pick0' / 'system.db'}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        for table in ("accounts", "files", "items", "queue"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


def test_help_and_no_command(home):
    assert d3hb(home, "--help").returncode == 0
    assert d3hb(home).returncode == 2


def test_unknown_command(home):
    one_line_error(d3hb(home, "bogus"), 2, "bogus")


def test_unknown_tcl_verb(home):
    one_line_error(d3hb(home, "tcl", "frobnicate", "x"), 2, "tcl.frobnicate", "known tcl commands")


@pytest.mark.parametrize("args, status, words", [
    (("tcl", "--account", "nobody", "write", "inv", "2", "x"), 1, ("account 'nobody' not found",)),
    (("tcl", "write", "nofile", "2", "x"), 1, ("file 'nofile' not found",)),
    (("tcl", "create-file", "new", "(lqz"), 2, ("'qz'", "create-file options")),
    (("tcl", "write", "inv", "a" * 101, "x"), 2, ("too long",)),
    (("tcl", "write", "inv", "", "x"), 2, ("empty item-id",)),
    (("tcl", "delete-file", "dict", "inv"), 1, ("data sections",)),
    (("tcl", "set-dptr", "+lx", "inv"), 2, ("cannot be set with x",)),
    (("system", "show", "nosuch"), 1, ("system 'nosuch' not found",)),
])
def test_bad_input_refused_data_untouched(home, args, status, words):
    before = digest(home)
    one_line_error(d3hb(home, *args), status, *words)
    assert digest(home) == before


def test_bad_bytes_in_id_refused(home):
    before = digest(home)
    one_line_error(d3hb(home, "tcl", "write", "inv", os.fsdecode(b"a\xfeb"), "x"), 2, "attribute mark")
    assert digest(home) == before


def test_write_read_round_trip_through_the_cli(home):
    body = "ünï\nb]c\\d\n\n".encode()
    assert d3hb(home, "tcl", "write", "inv", "rt", stdin=body).returncode == 0
    r = d3hb(home, "tcl", "read", "inv", "rt")
    assert (r.returncode, r.stdout) == (0, body)
    raw = b"\x00\xfe\xff raw"
    assert d3hb(home, "tcl", "--raw", "write", "inv", "raw", stdin=raw).returncode == 0
    assert d3hb(home, "tcl", "--raw", "read", "inv", "raw").stdout == raw


def test_locked_database(home):
    before = digest(home)
    conn = sqlite3.connect(home / "pick0" / "system.db", isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        r = d3hb(home, "tcl", "write", "inv", "2", "x", env={"D3HB_BUSY_MS": "100"})
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    one_line_error(r, 1, "locked by another process", "retry")
    assert digest(home) == before


def test_corrupt_database(tmp_path: Path):
    assert d3hb(tmp_path, "tcl", "create-file", "inv").returncode == 0
    db = tmp_path / "pick0" / "system.db"
    with db.open("r+b") as fh:
        fh.write(b"this is not sqlite at all")
    before = db.read_bytes()
    r = d3hb(tmp_path, "tcl", "write", "inv", "1", "x")
    one_line_error(r, 1, "corrupt", "restore the system from a save")
    assert db.read_bytes() == before


def test_full_disk():
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    mnt = Path(tempfile.mkdtemp(prefix="d3hb-full-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        mnt.rmdir()
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN?)")
    try:
        home = mnt / "home"
        assert d3hb(home, "tcl", "create-file", "inv").returncode == 0
        assert d3hb(home, "tcl", "write", "inv", "keep", "x").returncode == 0
        before = digest(home)
        filler = mnt / "filler"
        with filler.open("wb") as fh:  # take every free block
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        r = d3hb(home, "tcl", "--raw", "write", "inv", "big", stdin=os.urandom(512 * 1024))
        one_line_error(r, 1, "disk full", "free space")
        filler.unlink()
        assert digest(home) == before
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def test_systems_through_the_cli(tmp_path: Path):
    assert d3hb(tmp_path, "system", "create", "vm1").returncode == 0
    one_line_error(d3hb(tmp_path, "system", "create", "vm1"), 1, "already exists")
    assert b"vm1" in d3hb(tmp_path, "system", "list").stdout
    assert b"file-of-files" in d3hb(tmp_path, "system", "show", "vm1").stdout
    one_line_error(d3hb(tmp_path, "system", "delete", "vm1"), 2, "--yes")
    assert d3hb(tmp_path, "--yes", "system", "delete", "vm1").returncode == 0
    assert b"No systems" in d3hb(tmp_path, "system", "list").stdout


def test_tcl_prompt_through_the_cli(tmp_path: Path):
    r = d3hb(tmp_path, "tcl", stdin=b"create-file inv\nbad-verb\nwrite inv 1 a\ncount inv\noff\n")
    out = r.stdout.decode()
    assert "[407] 1 item counted." in out and "unknown command 'tcl.bad-verb'" in out
    assert "Traceback" not in out + r.stderr.decode()


@pytest.mark.parametrize(("group", "title"), [("hot-backup", "Hot Backup Main Menu"), ("tape-socket", "Tape-socket Menu"),
                                              ("vault", "Vault")])
def test_a_group_without_a_verb_opens_its_menu(home, group, title):
    r = d3hb(home, group, stdin=b"X\n")  # not a terminal: the line mode
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.lstrip().startswith(title) and "Enter option:" in out
