"""Store benchmark: the price of logging, and a bulk load's speed and memory.

Measured in one run, on one disk (``--dir``, default a temporary directory):

- durable commits per second, one item per commit, to a DL file (item and
  queue record in one SQLite transaction) and to a D file (item only),
  interleaved in rounds so both see the same disk; their ratio (goal >= 0.8);
- items per second of a bulk load (many items per commit, inside one
  ``System.transaction()``), and the peak resident memory of a child process
  doing only that load, for 10k and 100k items: it must not grow with the
  number of items.

Run: ``python bench/store.py`` (about a minute); ``--quick`` for a short run
(0.5 s rounds, 2k and 20k items).  The last line is ``BENCH-JSON {...}`` for
``bench/run``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d3hb.store import System  # noqa: E402

BODY = "customer name\xfe2026-11-22\xfe" + "\xfd".join(str(n) for n in range(10)) + "\xfe" + "x" * 120


def _system(path: Path) -> System:
    s = System.create(path, small=True)
    for code, name in (("DL", "logged"), ("D", "plain")):
        s.create_file("dm", name, None, 7, code, log=False)
        s.create_file("dm", name, name, 101, code, log=False)
    return s


def commits(s: System, name: str, seconds: float, start: int) -> tuple[int, float]:
    f = s.file("dm", name)
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        f.write(str(start + n), BODY)  # one item, one durable commit
        n += 1
    return n, time.perf_counter() - t0


def bulk_load(path: Path, items: int, per_commit: int = 5000) -> dict[str, float]:
    """The child's work: create a system and load ``items`` items; report speed and memory."""
    s = _system(path)
    f = s.file("dm", "plain")
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for first in range(0, items, per_commit):
        with s.transaction():
            for n in range(first, min(items, first + per_commit)):
                f.write(str(n), BODY)
    elapsed = time.perf_counter() - t0
    assert f.count() == items
    s.close()
    return {"items": items, "seconds": elapsed, "rate": items / elapsed, "before_kb": before_kb,
            "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _child(items: int, where: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(items), "--dir", str(where)],
                         capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (pair.split("=") for pair in out.split())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="where to put the test systems (default: a temporary directory)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each commit round (4 rounds per kind)")
    p.add_argument("--quick", action="store_true", help="a short run (0.5 s rounds, 2k and 20k items), for bench/run")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 0.5)
    sizes = (2_000, 20_000) if args.quick else (10_000, 100_000)
    if args.child:
        r = bulk_load(args.dir / "bulk", args.child)
        print(" ".join(f"{k}={v}" for k, v in r.items()))
        return 0

    base = Path(tempfile.mkdtemp(prefix="d3hb-bench-", dir=args.dir))
    try:
        fs = subprocess.run(["df", "-T", str(base)], capture_output=True, text=True).stdout.splitlines()[-1].split()
        print(f"d3hb store benchmark in {base} ({fs[1]} on {fs[0]}), Python {sys.version.split()[0]}")
        s = _system(base / "commits")
        totals = {"logged": [0, 0.0], "plain": [0, 0.0]}
        commits(s, "plain", 0.3, 10**9)  # warm the file system and the page cache first
        for rnd in range(4):  # interleaved so both kinds see the same disk conditions
            for name in (("logged", "plain") if rnd % 2 == 0 else ("plain", "logged")):
                n, t = commits(s, name, args.seconds / 2 if args.seconds > 1 else args.seconds, rnd * 10**6)
                totals[name][0] += n
                totals[name][1] += t
        queued = s.queue.state().depth
        s.close()
        logged = totals["logged"][0] / totals["logged"][1]
        plain = totals["plain"][0] / totals["plain"][1]
        loads = [_child(n, Path(tempfile.mkdtemp(dir=base))) for n in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'-' * 44} {'-' * 12}")
    print(f"{'logged commits/s (DL file, 1 item/commit)':<44} {logged:>12.0f}")
    print(f"{'unlogged commits/s (D file, 1 item/commit)':<44} {plain:>12.0f}")
    for r in loads:
        label = f"bulk load {int(r['items']):,} items: items/s"
        print(f"{label:<44} {r['rate']:>12.0f}")
    for r in loads:
        label = f"bulk load {int(r['items']):,} items: peak RSS (KiB)"
        print(f"{label:<44} {int(r['peak_kb']):>12}")
    print()
    ratio = logged / plain
    print(f"logged / unlogged = {ratio:.2f}  (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'}); "
          f"{queued} queue records written by the logged rounds")
    growth = loads[1]["peak_kb"] - loads[0]["peak_kb"]
    print(f"peak RSS {sizes[1]:,} - {sizes[0]:,} items = {growth:+.0f} KiB ({growth / loads[0]['peak_kb'] * 100:+.1f}%): "
          f"{'flat' if growth < 0.1 * loads[0]['peak_kb'] else 'GROWS with the item count'}")
    small, big = loads
    rows = [
        {"figure": "logged commits/s", "value": round(logged), "unit": "commits/s",
         "reference": "unlogged commits/s", "ref_value": round(plain), "ratio": round(ratio, 3)},
        {"figure": f"bulk load {int(big['items']):,} items", "value": round(big["rate"]), "unit": "items/s",
         "reference": f"bulk load {int(small['items']):,} items", "ref_value": round(small["rate"]),
         "ratio": round(big["rate"] / small["rate"], 3)},
        {"figure": f"peak RSS, {int(big['items']):,} items", "value": int(big["peak_kb"]), "unit": "KiB",
         "reference": f"peak RSS, {int(small['items']):,} items", "ref_value": int(small["peak_kb"]),
         "ratio": round(big["peak_kb"] / small["peak_kb"], 3)},
    ]
    print("BENCH-JSON " + json.dumps({"bench": "store", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
