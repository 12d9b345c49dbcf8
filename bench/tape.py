"""Tape throughput and memory: local save/restore, network save/restore, and the bare limit.

For each size (MB of item data; ``--sizes 100,300`` by default, e.g.
``--sizes 100,1024`` for 1 GiB) it builds a system, then measures

* local save MB/s (to a regular-file tape) and local restore MB/s;
* network save/restore MB/s: ``d3hb tcl save`` into a pipe -> output server
  -> TCP on 127.0.0.1 -> input server -> pipe -> ``d3hb tcl restore`` on
  another home, the D3 network save/restore procedure end to end;
* the servers alone: the tape file's bytes through pipe -> output server
  -> TCP -> input server -> pipe, with no save or restore at the ends;
* the bare limit: the same tape bytes through FIFO -> TCP -> FIFO relays
  written here with plain sockets and os.mkfifo, and the ratio servers/bare;
* the peak resident memory (VmHWM / ru_maxrss) of every process in the
  network pipeline.

Run: ``python bench/tape.py [--sizes 100,300] [--dir /tmp]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from d3hb.ops import tsservers
from d3hb.ops.tapesocket import Definitions
from d3hb.store import Home

BODY = 1000  # bytes per item body


def populate(home: Home, mb: int) -> int:
    s = home.open("pick0")
    s.create_account("bench")
    s.create_file("bench", "data", None, 7)
    s.create_file("bench", "data", "data", 1009)
    f = s.file("bench", "data")
    n = mb * 1024 * 1024 // BODY
    filler = ("x" * 97 + "\xfe") * (BODY // 98)
    with s.transaction():
        for i in range(n):
            f.write(f"K{i:09d}", filler[: BODY - 10] + f"{i:010d}")
    s.close()
    return n


def cli(home: Path, *words: str, system: str = "pick0") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "d3hb", "--home", str(home), "--system", system, "-y", *words],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> int:
    """Wait for a child, fail loudly, return its peak RSS in KB (from wait4)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if proc.returncode:
        raise SystemExit(f"bench: {proc.args[4:]} failed: {err.decode()} {out.decode()}")
    return usage.ru_maxrss


def hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RELAY = textwrap.dedent("""
    import os, socket, sys
    mode, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "send":
        fd = os.open(path, os.O_RDONLY)
        s = socket.create_connection(("127.0.0.1", port))
        while chunk := os.read(fd, 65536):
            s.sendall(chunk)
        s.close()
    else:
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port)); srv.listen(1)
        print("ready", flush=True)
        conn, _ = srv.accept()
        fd = os.open(path, os.O_WRONLY)
        while chunk := conn.recv(65536):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.close(fd)
""")

CAT = "import sys,os\nsrc=os.open(sys.argv[1],os.O_RDONLY)\ndst=os.open(sys.argv[2],os.O_WRONLY)\nwhile c:=os.read(src,65536):\n    m=memoryview(c)\n    while m: m=m[os.write(dst,m):]\n"
SINK = "import sys,os\nfd=os.open(sys.argv[1],os.O_RDONLY)\nwhile os.read(fd,65536): pass\n"


def bare_pipeline(tape: Path, work: Path) -> float:
    """FIFO -> TCP -> FIFO with plain sockets: seconds to move the tape's bytes."""
    fin, fout = work / "bare.in", work / "bare.out"
    for p in (fin, fout):
        os.mkfifo(p, 0o600)
    port = free_port()
    recv = subprocess.Popen([sys.executable, "-c", RELAY, "recv", str(fout), str(port)], stdout=subprocess.PIPE)
    assert recv.stdout.readline().strip() == b"ready"  # type: ignore[union-attr]
    start = time.monotonic()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(fout)])
    send = subprocess.Popen([sys.executable, "-c", RELAY, "send", str(fin), str(port)])
    writer = subprocess.Popen([sys.executable, "-c", CAT, str(tape), str(fin)])
    for p in (writer, send, recv, sink):
        p.wait()
    return time.monotonic() - start


def one_size(mb: int, root: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"tape{mb}-", dir=root))
    a_home, b_home = work / "hostA", work / "hostB"
    A, B = Home(a_home), Home(b_home)
    t0 = time.monotonic()
    items = populate(A, mb)
    fill = time.monotonic() - t0
    res: dict = {"mb": mb, "items": items, "fill_s": fill}

    # local save to a regular file, then restore it into another system
    tape = work / "local.tape"
    for args in (("tcl", "set-device", "1", str(tape), "f"),):
        finish(cli(a_home, *args))
    t0 = time.monotonic()
    res["save_rss_kb"] = finish(cli(a_home, "tcl", "save", "(h"))
    res["save_s"] = time.monotonic() - t0
    size = tape.stat().st_size
    res["tape_mb"] = size / 1e6
    finish(cli(b_home, "system", "create", "copy"))
    finish(cli(b_home, "tcl", "set-device", "0", str(tape), "f", system="copy"))
    t0 = time.monotonic()
    res["restore_rss_kb"] = finish(cli(b_home, "tcl", "restore", system="copy"))
    res["restore_s"] = time.monotonic() - t0

    # network save/restore: pick0@A -> output server -> TCP -> input server in vmrest@B -> pick0@B
    port = free_port()
    pipe_a, pipe_b = a_home / "ssave.out", b_home / "ssave.in"
    a, vm = A.open("pick0"), B.create("vmrest", small=True)
    B.open("pick0").close()
    Definitions(a).setup("ssave", {"role": "output", "pipe": str(pipe_a), "host": "127.0.0.1", "port": str(port), "callrep": "0", "callwait": "0.1"})
    Definitions(vm).setup("ssave", {"role": "input", "pipe": str(pipe_b), "host": "127.0.0.1", "port": str(port)})
    in_pid = tsservers.start(vm, "ssave")
    out_pid = tsservers.start(a, "ssave")
    finish(cli(a_home, "tcl", "set-device", "2", str(pipe_a), "c"))
    finish(cli(b_home, "tcl", "set-device", "1", str(pipe_b), "c"))
    t0 = time.monotonic()
    restore = cli(b_home, "tcl", "restore")
    save = cli(a_home, "tcl", "save", "(h")
    res["net_save_rss_kb"] = finish(save)
    res["net_restore_rss_kb"] = finish(restore)
    res["net_s"] = time.monotonic() - t0
    # the servers alone: the same tape bytes through pipe -> servers -> pipe, no save or restore
    t0 = time.monotonic()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(pipe_b)])
    writer = subprocess.Popen([sys.executable, "-c", CAT, str(tape), str(pipe_a)])
    writer.wait()
    sink.wait()
    res["servers_s"] = time.monotonic() - t0
    res["out_server_rss_kb"], res["in_server_rss_kb"] = hwm(out_pid), hwm(in_pid)
    tsservers.stop(a.path, "ssave")
    tsservers.stop(vm.path, "ssave")
    a.close()
    vm.close()

    res["bare_s"] = bare_pipeline(tape, work)
    shutil.rmtree(work, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,300", help="MB of item data per run, comma-separated (default 100,300)")
    p.add_argument("--dir", default=None, help="where to build the systems (default: the temp directory)")
    args = p.parse_args(argv)
    root = Path(args.dir or tempfile.gettempdir())
    print(f"{'data':>6} {'tape':>7} {'save':>8} {'restore':>8} {'network':>8} {'servers':>8} {'bare':>8} {'ratio':>6}   peak RSS MB: save restore out-srv in-srv net-save net-restore")
    for mb in (int(x) for x in args.sizes.split(",")):
        r = one_size(mb, root)
        t = r["tape_mb"]
        net, srv, bare = t / r["net_s"], t / r["servers_s"], t / r["bare_s"]
        print(
            f"{mb:>4}MB {t:>5.0f}MB {t / r['save_s']:>6.1f}/s {t / r['restore_s']:>6.1f}/s {net:>6.1f}/s {srv:>6.1f}/s {bare:>6.1f}/s {srv / bare:>6.2f}"
            f"   {r['save_rss_kb'] / 1024:.0f} {r['restore_rss_kb'] / 1024:.0f} {r['out_server_rss_kb'] / 1024:.0f}"
            f" {r['in_server_rss_kb'] / 1024:.0f} {r['net_save_rss_kb'] / 1024:.0f} {r['net_restore_rss_kb'] / 1024:.0f}"
            f"   ({r['items']} items, filled in {r['fill_s']:.0f} s)",
            flush=True,
        )
    print("MB/s are tape megabytes (10^6 bytes) a second.  network: save -> servers -> restore end to end;")
    print("servers: the tape bytes through pipe -> output server -> TCP -> input server -> pipe;")
    print("bare: the same through plain FIFO -> TCP -> FIFO relays; ratio = servers / bare (goal >= 0.7).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
