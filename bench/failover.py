"""Failover benchmark: how long writes are refused in a planned switchover, and
how long from a master's death to the first write accepted on the promoted slave.

Real master and slave server processes on 127.0.0.1 (a shared, noisy machine):

- planned switchover under steady load (a user committing 10 updates per
  transaction, 200 transactions/s: 2,000 updates/s): the write-unavailable time as the user
  sees it, from the first refused write on the old master to the first
  commit on the new one, over several switchovers back and forth; also the
  switchover's own figure (writes refused -> new master writable).  Goal
  <= 1 s on loopback.
- master death: kill -9 of the master server under load, then a scripted
  promote (wait until the slave no longer shows a live master, promote,
  write): time from the kill to the first write accepted on the promoted
  slave.

Run: ``python bench/failover.py`` (under a minute); ``--quick`` for fewer
rounds.  The last line is ``BENCH-JSON {...}`` for ``bench/run``.
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

from d3hb.errors import Refused  # noqa: E402
from d3hb.ops import failover  # noqa: E402
from d3hb.ops import supervisor as sv  # noqa: E402
from d3hb.store import System  # noqa: E402
from d3hb.store import apply as store_apply  # noqa: E402
from d3hb.testing import procs  # noqa: E402

NAME = "hb"
GOAL_S = 1.0


class User(threading.Thread):
    """Commits 10 updates per transaction, ``rate`` transactions/s, to whichever system ``target`` names."""

    def __init__(self, target: Path, rate: float = 200.0) -> None:
        super().__init__(daemon=True)
        self.target, self.rate = target, rate
        self.halt = threading.Event()
        self.commits = 0
        self.refused_since: float | None = None
        self.gaps: list[float] = []  # first refusal -> next commit, per outage
        self.error: BaseException | None = None

    def run(self) -> None:
        current: System | None = None
        n = 0
        next_at = time.monotonic()
        try:
            while not self.halt.is_set():
                if current is None or current.path != self.target:
                    if current is not None:
                        current.close()
                    current = System.open(self.target)
                f = current.file("acme", "inv")
                try:
                    with current.transaction():
                        for _ in range(10):
                            f.write(f"k{n % 500}", f"value {n}")
                            n += 1
                except Refused:
                    self.refused_since = self.refused_since or time.monotonic()
                    time.sleep(0.0005)
                    continue
                if self.refused_since is not None:
                    self.gaps.append(time.monotonic() - self.refused_since)
                    self.refused_since = None
                self.commits += 1
                next_at += 1 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))  # a steady rate, not a flood
        except BaseException as exc:  # noqa: BLE001 - reported by main
            self.error = exc
        finally:
            if current is not None:
                current.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error


def switchovers(home: Path, rounds: int) -> tuple[list[float], list[float]]:
    m, s, _ = procs.make_pair(home / "sw")
    sv.start(s, NAME)
    sv.start(m, NAME)
    user = User(m.path)
    user.start()
    own: list[float] = []
    try:
        for _ in range(rounds):
            start = user.commits
            procs.wait_until(lambda: user.commits >= start + 50, 60, "the user to commit")
            new = s.path
            result = failover.switchover(m, s, NAME, on_writable=lambda: setattr(user, "target", new))  # users follow
            own.append(result.unavailable)
            m, s = s, m
        procs.wait_until(lambda: len(user.gaps) >= rounds, 60, "the user to write on the last master")
    finally:
        user.stop()
        procs.kill_all(home / "sw")
    return user.gaps, own


def deaths(home: Path, rounds: int) -> list[float]:
    out: list[float] = []
    for i in range(rounds):
        d = home / f"death{i}"
        m, s, _ = procs.make_pair(d)
        sv.start(s, NAME)
        sv.start(m, NAME)
        user = User(m.path)
        user.start()
        try:
            procs.wait_until(lambda: user.commits >= 100, 60, "the user to commit")
            procs.wait_until(lambda: failover.live_master(s, NAME), 30, "the slave to show its master")
            t0 = time.monotonic()
            procs.kill(m, NAME)
            # The scripted promote: as soon as the slave no longer sees a live master.
            procs.wait_until(lambda: not failover.live_master(s, NAME), 60, "the slave to see the death", interval=0.005)
            failover.promote(s, NAME)
            s.file("acme", "inv").write("first", "after the failover")
            out.append(time.monotonic() - t0)
            assert store_apply.last_applied(s, NAME) > 0
        finally:
            user.stop()
            procs.kill_all(d)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    rounds = args.rounds or (3 if args.quick else 8)
    home = Path(tempfile.mkdtemp(prefix="d3hb-bench-failover-"))
    try:
        import os

        os.environ["D3HB_HOME"] = str(home)
        gaps, own = switchovers(home, rounds)
        death = deaths(home, max(2, rounds // 2))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    p50, worst = statistics.median(gaps), max(gaps)
    print(f"planned switchover, writes refused (user's view)  median {p50:.3f} s  max {worst:.3f} s  "
          f"over {len(gaps)} switchovers (goal <= {GOAL_S:g} s)")
    print(f"planned switchover, refused -> new master writable median {statistics.median(own):.3f} s  max {max(own):.3f} s")
    print(f"master death -> first write on promoted slave     median {statistics.median(death):.3f} s  max {max(death):.3f} s")
    rows = [
        {"figure": "switchover write-unavailable (median)", "value": round(p50, 4), "unit": "s",
         "reference": "goal", "ref_value": GOAL_S, "ratio": round(p50 / GOAL_S, 3)},
        {"figure": "switchover write-unavailable (max)", "value": round(worst, 4), "unit": "s",
         "reference": "goal", "ref_value": GOAL_S, "ratio": round(worst / GOAL_S, 3)},
        {"figure": "master death to first write on promoted slave (median)", "value": round(statistics.median(death), 4),
         "unit": "s", "reference": None, "ref_value": None, "ratio": None},
    ]
    print("BENCH-JSON " + json.dumps({"bench": "failover", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
