"""Replication benchmark: what a running pair costs the master, its lag, its catch-up.

Measured in one run, on one disk, with real master and slave server processes
on 127.0.0.1 (the machine is shared and noisy: read the ratios, not the rates):

- durable commits/s on a master with no server running (a system with the
  same DL files, logging and enqueuing on, nobody reading the queue) and on
  the master of a running pair, one item per commit, in interleaved rounds
  so both see the same disk; their ratio (goal >= 0.8);
- the lag at a steady commit rate (default 1,000 commits/s): for each
  commit, the time until the slave's database holds it as applied; p50 and
  p99 in ms.  The master looks at an idle queue every TxLog timer seconds,
  so the lag floor is that timer (``--txlog``, 0.01 s here);
- the catch-up rate: a backlog written while both servers are stopped
  (100,000 transactions by default), then both started; transactions/s
  until the slave has applied the last one;
- the peak resident memory (VmHWM) of both servers, started fresh for the
  catch-up, for a small and the large backlog: bounded by the window, not
  by the backlog.

Run: ``python bench/replication.py`` (about two minutes); ``--quick`` for a
short run.  The last line is ``BENCH-JSON {...}`` for ``bench/run``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d3hb.ops import supervisor as sv  # noqa: E402
from d3hb.servers import status as st  # noqa: E402
from d3hb.store import Home, System, digests  # noqa: E402
from d3hb.store import apply as store_apply  # noqa: E402
from d3hb.testing import procs  # noqa: E402

NAME = "hb"
BODY = "customer name\xfe2026-11-22\xfe" + "\xfd".join(str(n) for n in range(10)) + "\xfe" + "x" * 120


def commits(s: System, seconds: float, start: int) -> tuple[int, float]:
    """One item per durable commit for ``seconds``: (commits, elapsed)."""
    f = s.file("acme", "inv")
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        f.write(f"c{start + n}", BODY)
        n += 1
    return n, time.perf_counter() - t0


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def server_pid(s: System) -> int:
    pid = st.pid_file_pid(sv.files(s, NAME))
    if pid is None:
        raise SystemExit(f"bench: server {NAME} of {s.name} has no pid")
    return pid


def drain(m: System, s: System, timeout: float) -> None:
    last = m.queue.last_tno()
    procs.wait_applied(s, NAME, last, timeout)


def ratio_rounds(home: Path, m: System, s: System, rounds: int, seconds: float) -> dict:
    solo = Home(home).create("solo", small=True)  # the same files, logged and enqueued, no server
    solo.create_account("acme", "DL")
    solo.create_file("acme", "inv", None, 7, "DL")
    solo.create_file("acme", "inv", "inv", 7, "DL")  # as make_pair makes the master's
    plain = rep = 0.0
    n_plain = n_rep = 0
    for r in range(rounds):
        for which in ((solo, m) if r % 2 == 0 else (m, solo)):  # alternate who goes first: same disk, same odds
            n, t = commits(which, seconds, r * 1_000_000)
            if which is solo:
                n_plain, plain = n_plain + n, plain + t
            else:
                n_rep, rep = n_rep + n, rep + t
    drain(m, s, 120)
    solo.close()
    return {"unreplicated": n_plain / plain, "replicated": n_rep / rep}


def lag_run(m: System, s: System, rate: float, seconds: float) -> dict:
    """Paced commits; a sampler thread on its own connection sees when each is applied."""
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def sampler() -> None:
        with System.open(s.path) as view:
            last = store_apply.last_applied(view, NAME)
            while not done.is_set() or last < max(committed, default=0):
                now = time.monotonic()
                cur = store_apply.last_applied(view, NAME)
                for t in range(last + 1, cur + 1):
                    seen[t] = now
                last = cur
                if done.is_set() and time.monotonic() > deadline:
                    return
                time.sleep(0.0005)

    f = m.file("acme", "inv")
    deadline = time.monotonic() + seconds + 30
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    interval = 1.0 / rate
    t0 = time.monotonic()
    n = int(rate * seconds)
    behind = 0
    for i in range(n):
        due = t0 + i * interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > 0.05:
            behind += 1
        tno = f.write(f"l{i}", BODY)
        committed[tno] = time.monotonic()
    achieved = n / (time.monotonic() - t0)
    done.set()
    th.join(40)
    lags = sorted((seen[t] - c) * 1000 for t, c in committed.items() if t in seen)
    if len(lags) < len(committed):
        raise SystemExit(f"bench: only {len(lags)} of {len(committed)} paced commits were seen applied")
    return {"p50": statistics.median(lags), "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            "achieved": achieved, "late_commits": behind}


def catch_up(m: System, s: System, backlog: int) -> dict:
    """Both servers stopped, ``backlog`` transactions queued, both started fresh: rate and memory."""
    sv.stop(m, NAME)
    sv.stop(s, NAME)
    f = m.file("acme", "inv")
    for first in range(0, backlog, 1000):
        with m.transaction():
            for i in range(first, min(backlog, first + 1000)):
                f.write(f"b{i % 20000}", f"{BODY}{i}")
    last = m.queue.last_tno()
    sv.start(s, NAME)
    t0 = time.monotonic()
    sv.start(m, NAME)
    procs.wait_applied(s, NAME, last, 600)
    elapsed = time.monotonic() - t0
    return {"rate": backlog / elapsed, "seconds": elapsed,
            "master_kb": vm_hwm_kb(server_pid(m)), "slave_kb": vm_hwm_kb(server_pid(s))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="where to put the systems (default: a temporary directory)")
    p.add_argument("--quick", action="store_true", help="short rounds, 20,000-transaction backlog")
    p.add_argument("--rate", type=float, default=1000.0, help="steady commits/s for the lag (default 1000)")
    p.add_argument("--backlog", type=int, help="catch-up backlog (default 100,000; 20,000 with --quick)")
    p.add_argument("--txlog", default="0.01", help="the master's TxLog timer in seconds (default 0.01)")
    args = p.parse_args(argv)
    rounds, seconds, lag_s = (2, 1.0, 3.0) if args.quick else (4, 2.0, 10.0)
    backlog = args.backlog or (20_000 if args.quick else 100_000)
    home = Path(tempfile.mkdtemp(prefix="d3hb-bench-repl-", dir=args.dir))
    try:
        m, s, port = procs.make_pair(home, master_fields={"txlog": args.txlog, "check": "30", "timeout": "30"},
                                     slave_fields={"check": "30", "timeout": "30"})
        sv.start(s, NAME)
        sv.start(m, NAME)
        r = ratio_rounds(home, m, s, rounds, seconds)
        lag = lag_run(m, s, args.rate, lag_s)
        small = catch_up(m, s, max(1000, backlog // 10))
        big = catch_up(m, s, backlog)
        drain(m, s, 60)
        if digests(m) != digests(s):  # the figures count only if the pair really replicated
            raise SystemExit("bench: per-file digests of master and slave differ after the run")
        sv.stop(m, NAME)
        sv.stop(s, NAME)
        m.close()
        s.close()
    finally:
        procs.kill_all(home)
        shutil.rmtree(home, ignore_errors=True)

    ratio = r["replicated"] / r["unreplicated"]
    mb = 1024.0
    print(f"commits/s, no server running      {r['unreplicated']:9.0f}")
    print(f"commits/s, pair running           {r['replicated']:9.0f}   ratio {ratio:.2f} (goal >= 0.8)")
    print(f"lag at {args.rate:.0f} commits/s (achieved {lag['achieved']:.0f}/s, TxLog {args.txlog} s): "
          f"p50 {lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms")
    print(f"catch-up of {backlog:,} transactions: {big['rate']:,.0f} transactions/s ({big['seconds']:.1f} s)")
    print(f"peak RSS during catch-up, {backlog // 10:,} backlog: master {small['master_kb'] / mb:.1f} MB, "
          f"slave {small['slave_kb'] / mb:.1f} MB")
    print(f"peak RSS during catch-up, {backlog:,} backlog: master {big['master_kb'] / mb:.1f} MB, "
          f"slave {big['slave_kb'] / mb:.1f} MB   (growth x{max(big['master_kb'] / small['master_kb'], big['slave_kb'] / small['slave_kb']):.2f})")
    rows = [
        {"figure": "replicated commits/s", "value": round(r["replicated"], 1), "unit": "commits/s",
         "reference": "unreplicated commits/s", "ref_value": round(r["unreplicated"], 1), "ratio": round(ratio, 3)},
        {"figure": "lag p50", "value": round(lag["p50"], 2), "unit": "ms", "reference": None, "ref_value": None, "ratio": None},
        {"figure": "lag p99", "value": round(lag["p99"], 2), "unit": "ms", "reference": None, "ref_value": None, "ratio": None},
        {"figure": "catch-up", "value": round(big["rate"]), "unit": "txn/s", "reference": None, "ref_value": None, "ratio": None},
        {"figure": "slave peak RSS, big backlog", "value": round(big["slave_kb"] / mb, 1), "unit": "MB",
         "reference": "slave peak RSS, backlog/10", "ref_value": round(small["slave_kb"] / mb, 1),
         "ratio": round(big["slave_kb"] / small["slave_kb"], 3)},
        {"figure": "master peak RSS, big backlog", "value": round(big["master_kb"] / mb, 1), "unit": "MB",
         "reference": "master peak RSS, backlog/10", "ref_value": round(small["master_kb"] / mb, 1),
         "ratio": round(big["master_kb"] / small["master_kb"], 3)},
    ]
    print("BENCH-JSON " + json.dumps({"bench": "replication", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
