"""Tape throughput and memory: local save/restore, network save/restore, and the bare limit.

For each size (MB of item data; ``--sizes 100,1024`` by default, ``--quick``
for 20,60) it builds a system, then measures

* local save MB/s (to a regular-file tape) and local restore MB/s;
* network save/restore MB/s: ``d3hb tcl save`` into a pipe -> output server
  -> TCP on 127.0.0.1 -> input server -> pipe -> ``d3hb tcl restore`` on
  another home, the D3 network save/restore procedure end to end;
* the servers alone: the tape file's bytes through pipe -> output server
  -> TCP -> input server -> pipe, with no save or restore at the ends;
* the bare limit: the same tape bytes through FIFO -> TCP -> FIFO relays
  written here with plain sockets and os.mkfifo (with the servers' 1 MiB pipe
  buffers and reads, and naive with 64 KiB), and the ratios servers/bare and
  network/bare;
* the peak resident memory (VmHWM / ru_maxrss) of every process in the
  network pipeline.

Run: ``python bench/tape.py [--sizes 100,1024 | --quick] [--dir /tmp]``; the last
line is ``BENCH-JSON {...}`` as for bench/replication.py.
"""

from __future__ import annotations

import argparse
import json
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
from d3hb.protocol.crc import crc32
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
    import fcntl, os, socket, sys
    mode, path, port, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    def grow(fd):
        if chunk > 65536:
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, chunk)
            except OSError:
                pass
    if mode == "send":
        fd = os.open(path, os.O_RDONLY)
        grow(fd)
        s = socket.create_connection(("127.0.0.1", port))
        while c := os.read(fd, chunk):
            s.sendall(c)
        s.close()
    else:
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port)); srv.listen(1)
        print("ready", flush=True)
        conn, _ = srv.accept()
        fd = os.open(path, os.O_WRONLY)
        grow(fd)
        while c := conn.recv(chunk):
            view = memoryview(c)
            while view:
                view = view[os.write(fd, view):]
        os.close(fd)
""")

CAT = "import sys,os\nsrc=os.open(sys.argv[1],os.O_RDONLY)\ndst=os.open(sys.argv[2],os.O_WRONLY)\nwhile c:=os.read(src,1<<20):\n    m=memoryview(c)\n    while m: m=m[os.write(dst,m):]\n"
SINK = "import sys,os\nfd=os.open(sys.argv[1],os.O_RDONLY)\nwhile os.read(fd,1<<20): pass\n"
TRIES = 3  # the short pipeline stages run this many times, best kept: the machine is shared


def bare_pipeline(tape: Path, work: Path, chunk: int) -> float:
    """FIFO -> TCP -> FIFO with plain sockets: seconds to move the tape's bytes.

    ``chunk`` 1 MiB gives the relays the same FIFO buffer and read size as the
    servers (the honest limit); 64 KiB is the naive relay with Linux defaults.
    """
    fin, fout = work / "bare.in", work / "bare.out"
    for p in (fin, fout):
        if not p.exists():
            os.mkfifo(p, 0o600)
    port = free_port()
    recv = subprocess.Popen([sys.executable, "-c", RELAY, "recv", str(fout), str(port), str(chunk)], stdout=subprocess.PIPE)
    assert recv.stdout.readline().strip() == b"ready"  # type: ignore[union-attr]
    start = time.monotonic()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(fout)])
    send = subprocess.Popen([sys.executable, "-c", RELAY, "send", str(fin), str(port), str(chunk)])
    writer = subprocess.Popen([sys.executable, "-c", CAT, str(tape), str(fin)])
    for p in (writer, send, recv, sink):
        p.wait()
    return time.monotonic() - start


def servers_pipeline(tape: Path, pipe_a: Path, pipe_b: Path) -> float:
    """The tape's bytes through pipe -> output server -> TCP -> input server -> pipe."""
    t0 = time.monotonic()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(pipe_b)])
    writer = subprocess.Popen([sys.executable, "-c", CAT, str(tape), str(pipe_a)])
    writer.wait()
    sink.wait()
    return time.monotonic() - t0


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
    # the servers alone, and the bare relays, alternately: best of TRIES each
    srv, bare, bare64 = [], [], []
    for _ in range(TRIES):
        srv.append(servers_pipeline(tape, pipe_a, pipe_b))
        bare.append(bare_pipeline(tape, work, 1 << 20))
        bare64.append(bare_pipeline(tape, work, 1 << 16))
    res["servers_s"], res["bare_s"], res["bare64_s"] = min(srv), min(bare), min(bare64)
    res["out_server_rss_kb"], res["in_server_rss_kb"] = hwm(out_pid), hwm(in_pid)
    tsservers.stop(a.path, "ssave")
    tsservers.stop(vm.path, "ssave")
    a.close()
    vm.close()

    shutil.rmtree(work, ignore_errors=True)
    return res


RSS_KEYS = (("save_rss_kb", "local save"), ("restore_rss_kb", "local restore"), ("net_save_rss_kb", "network save"),
            ("out_server_rss_kb", "output server"), ("in_server_rss_kb", "input server"), ("net_restore_rss_kb", "network restore"))


def rows_for(results: list[dict]) -> list[dict]:
    """The BENCH-JSON rows: throughput at the largest size, and RSS growth smallest -> largest."""
    big, small = results[-1], results[0]
    t = big["tape_mb"]
    mbs = {k: t / big[k + "_s"] for k in ("save", "restore", "net", "servers", "bare", "bare64")}
    label = f"{big['mb']} MB"

    def row(figure, value, unit, reference=None, ref_value=None):
        ratio = round(value / ref_value, 3) if ref_value else None
        return {"figure": figure, "value": round(value, 1), "unit": unit, "reference": reference,
                "ref_value": None if ref_value is None else round(ref_value, 1), "ratio": ratio}

    rows = [
        row(f"tape-socket servers MB/s, {label}", mbs["servers"], "MB/s", "bare FIFO->TCP->FIFO MB/s (1 MiB pipes)", mbs["bare"]),
        row(f"network save/restore MB/s, {label}", mbs["net"], "MB/s", "bare FIFO->TCP->FIFO MB/s (1 MiB pipes)", mbs["bare"]),
        row(f"tape-socket servers MB/s, {label}", mbs["servers"], "MB/s", "bare FIFO->TCP->FIFO MB/s (64 KiB, defaults)", mbs["bare64"]),
        row(f"local save MB/s, {label}", mbs["save"], "MB/s"),
        row(f"local restore MB/s, {label}", mbs["restore"], "MB/s"),
    ]
    for key, name in RSS_KEYS:
        ref = f"{name} peak RSS, {small['mb']} MB" if len(results) > 1 else None
        rows.append(row(f"{name} peak RSS, {label}", big[key] / 1024, "MB", ref, small[key] / 1024 if ref else None))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="MB of item data per run, comma-separated (default 100,1024; 20,60 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes (20,60 MB): a minute, for a smoke test")
    p.add_argument("--dir", default=None, help="where to build the systems (default: the temp directory)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in (args.sizes or ("20,60" if args.quick else "100,1024")).split(",")]
    root = Path(args.dir or tempfile.gettempdir())
    print(f"{'data':>6} {'tape':>7} {'save':>8} {'restore':>8} {'network':>8} {'servers':>8} {'bare':>8} {'bare64':>8} {'srv/bare':>8} {'net/bare':>8}", flush=True)
    results = []
    for mb in sizes:
        r = one_size(mb, root)
        results.append(r)
        t = r["tape_mb"]
        net, srv, bare, bare64 = (t / r[k] for k in ("net_s", "servers_s", "bare_s", "bare64_s"))
        print(
            f"{mb:>4}MB {t:>5.0f}MB {t / r['save_s']:>6.1f}/s {t / r['restore_s']:>6.1f}/s {net:>6.1f}/s {srv:>6.1f}/s"
            f" {bare:>6.1f}/s {bare64:>6.1f}/s {srv / bare:>8.2f} {net / bare:>8.2f}   ({r['items']} items, filled in {r['fill_s']:.0f} s)",
            flush=True,
        )
    print()
    print("peak resident memory (MB) of every process:")
    print(f"{'data':>6} " + " ".join(f"{name:>15}" for _, name in RSS_KEYS))
    for r in results:
        print(f"{r['mb']:>4}MB " + " ".join(f"{r[key] / 1024:>15.1f}" for key, _ in RSS_KEYS))
    print()
    print("MB/s are tape megabytes (10^6 bytes) a second.  network: save -> servers -> restore end to end;")
    print("servers: the tape bytes through pipe -> output server -> TCP -> input server -> pipe (best of 3);")
    print("bare: the same through plain FIFO -> TCP -> FIFO relays with 1 MiB pipe buffers and reads, as the")
    print("servers use (the limit); bare64: the naive relays, 64 KiB reads and Linux's default pipes.")
    print("srv/bare is the servers' ratio (goal >= 0.7); net/bare the end-to-end one (bounded by save and restore).")
    print(f"CRC-32 of frames and tape blocks computed by {crc32.__module__} (isal installed: ISA-L; otherwise zlib).")
    print("BENCH-JSON " + json.dumps({"bench": "tape", "rows": rows_for(results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
