"""A writer process for fault tests: writes to a master and journals every outcome.

``python -m d3hb.testing.writer --system PATH --server NAME --journal FILE``
writes batches (one SQLite transaction each) of item writes and deletes to
the given DL files until SIGTERM, ``--count`` batches, or a kill -9.  Each
batch is journalled before its commit, confirmed after it, and the master's
acknowledgement cursor for ``--server`` (what the slave acknowledged) is
journalled whenever it moves; see d3hb.testing.oracle.load_journal for the
format and how a batch cut by a kill is resolved.

Bodies are unique (writer id and sequence number), so an older or a repeated
write on the slave is told apart from the right one.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from d3hb.errors import D3hbError, StoreError
from d3hb.store import File, System

VM, AM = "\xfd", "\xfe"


class _Journal:
    def __init__(self, path: Path) -> None:
        self.fh: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - lives as long as the process

    def put(self, rec: dict) -> None:
        # One write() per line and a flush: a kill -9 leaves whole lines in the OS, at worst a cut last one.
        self.fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.fh.flush()


def _files(system: System, refs: list[str]) -> list[File]:
    out = []
    for ref in refs:
        account, _, name = ref.partition(",")
        out.append(system.file(account, name))
    return out


def run(system_path: Path, server: str, journal: Path, *, wid: int, seed: int, refs: list[str], batch: int = 10,
        keys: int = 200, pause: float = 0.002, count: int = 0) -> int:
    """Write until told to stop; returns the batches committed."""
    halt = False

    def _stop(*_: object) -> None:
        nonlocal halt
        halt = True

    signal.signal(signal.SIGTERM, _stop)
    rng = random.Random(seed)
    out = _Journal(journal)
    done = 0
    seq = 0
    acked = -1
    with System.open(system_path) as m:
        files = _files(m, refs)
        while not halt and (count == 0 or done < count):
            n = done + 1
            try:
                with m.transaction():
                    ops = []
                    marker = files[0]
                    mid = f"m.{wid}.{n}".encode()
                    ops.append(_op(marker.write(mid, f"batch {n} of writer {wid}"), marker, mid, f"batch {n} of writer {wid}"))
                    for _ in range(batch):
                        seq += 1
                        f = files[rng.randrange(len(files))]
                        key = f"k{rng.randrange(keys)}".encode()
                        if rng.random() < 1 / 7 and f.read(key) is not None:
                            ops.append(_op(f.delete(key), f, key, None))
                        else:
                            body = f"w{wid}.{seq}{AM}attr{VM}{seq}"
                            ops.append(_op(f.write(key, body), f, key, body))
                    info = marker.info
                    out.put({"batch": n, "marker": [info.account, info.dict_name, info.data_name, mid.hex()], "ops": ops})
            except StoreError:
                time.sleep(0.05)  # locked or full master database: the batch rolled back, try again
                continue
            out.put({"ok": n})
            done = n
            cur = m.queue.cursor(server)
            if cur is not None and cur > acked:
                acked = cur
                out.put({"ack": cur})
            if pause:
                time.sleep(pause)
    return done


def _op(tno: object, f: File, item: bytes, body: str | None) -> list:
    if not isinstance(tno, int) or isinstance(tno, bool):
        raise D3hbError(f"the write of {item!r} to {f.info.qualified} was not logged", "make the file DL")
    info = f.info
    return [tno, info.account, info.dict_name, info.data_name, item.hex(), None if body is None else body.encode("latin-1").hex()]


def spawn(system_path: Path, server: str, journal: Path, *, wid: int = 1, seed: int = 0, refs: tuple[str, ...] = ("acme,inv",),
          batch: int = 10, pause: float = 0.002, count: int = 0, prefix: list[str] | None = None) -> subprocess.Popen:
    """Start a writer process (``prefix``: e.g. ``ip netns exec NS``); stderr goes to ``journal`` + ``.err``."""
    argv = [*(prefix or []), sys.executable, "-m", "d3hb.testing.writer", "--system", str(system_path), "--server", server,
            "--journal", str(journal), "--wid", str(wid), "--seed", str(seed), "--batch", str(batch), "--pause", str(pause),
            "--count", str(count), *[a for r in refs for a in ("--file", r)]]
    err = open(str(journal) + ".err", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m d3hb.testing.writer")
    p.add_argument("--system", required=True, type=Path)
    p.add_argument("--server", required=True)
    p.add_argument("--journal", required=True, type=Path)
    p.add_argument("--wid", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--file", action="append", dest="files", help="ACCOUNT,FILE (DL); the first also holds batch markers")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--pause", type=float, default=0.002)
    p.add_argument("--count", type=int, default=0, help="stop after this many batches (0: until SIGTERM)")
    a = p.parse_args(argv)
    try:
        run(a.system, a.server, a.journal, wid=a.wid, seed=a.seed, refs=a.files or ["acme,inv"], batch=a.batch, keys=a.keys,
            pause=a.pause, count=a.count)
    except D3hbError as exc:
        print(f"writer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
