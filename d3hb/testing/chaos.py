"""Randomized fault rounds under a writer, ended by the oracle.

A pair on 127.0.0.1 with a :class:`~d3hb.testing.faultproxy.FaultProxy`
between master and slave, and a writer process (d3hb.testing.writer) on the
master.  Each round draws one fault from ``random.Random(seed)``, injects
it, lets the writer go on, and repairs it.  After the last round the writer
stops, the queue drains, and the oracle checks every journal.

The seed fixes the faults and their parameters: a failing seed replays the
same sequence (the timing of the processes still varies, as it would).
Used by tests/reliability/test_randomized.py and bench/faults.py.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from d3hb.ops import supervisor as sv
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs, writer
from d3hb.testing.faultproxy import DOWN, UP, FaultProxy

logger = logging.getLogger(__name__)
NAME = "hb"
FILES = ("acme,inv", "acme,cust")
TIMEOUT = 1.0  # the servers' time-out: faults last longer than this to make them fire

KINDS = ("kill9-master", "kill9-slave", "kill9-writer", "stop-master", "stop-slave", "delay", "stall", "truncate", "reset",
         "flip-up", "flip-down")


@dataclass
class Outcome:
    seed: int
    rounds: int
    seconds: float
    faults: Counter = field(default_factory=Counter)
    plan: list[str] = field(default_factory=list)
    report: oracle.Report | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok


class Rig:
    """The pair, the proxy and the writers of one run."""

    def __init__(self, home: Path, seed: int) -> None:
        self.home = home
        self.seed = seed
        self.slave_port = procs.free_port()
        self.proxy = proxy_to(self.slave_port)
        self.m, self.s, _ = procs.make_pair(
            home, NAME, self.slave_port, files=[tuple(r.split(",")) for r in FILES],  # type: ignore[misc]
            master_fields={"port": str(self.proxy.port), "timeout": f"{TIMEOUT:g}", "batch": "50"},
            slave_fields={"timeout": f"{TIMEOUT:g}"})
        self.journals: list[Path] = []
        self.proc = None
        self.wid = 0
        self.acked_before_drain = 0

    def start(self) -> None:
        sv.start(self.s, NAME)
        sv.start(self.m, NAME)
        self.new_writer()

    def new_writer(self) -> None:
        self.wid += 1
        j = self.home / f"writer{self.wid}.journal"
        self.journals.append(j)
        self.proc = writer.spawn(self.m.path, NAME, j, wid=self.wid, seed=self.seed * 1000 + self.wid, refs=FILES, batch=8,
                                 pause=0.005)

    def writes_grow(self, timeout: float = 30.0) -> None:
        """Wait until the writer has committed a little more (it is alive and the master database is usable)."""
        j = self.journals[-1]
        before = _oks(j)
        procs.wait_until(lambda: _oks(j) >= before + 3 or (self.proc is not None and self.proc.poll() is not None), timeout,
                         f"writer {self.wid} to commit")
        assert self.proc is not None and self.proc.poll() is None, f"writer {self.wid} died: see {j}.err"

    def stop_writer(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        if self.proc is not None and self.proc.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"writer {self.wid} exited {self.proc.returncode}: {Path(str(self.journals[-1]) + '.err').read_text()[-500:]}")

    def log(self) -> oracle.WriteLog:
        log = oracle.WriteLog()
        for j in self.journals:
            if j.exists():
                log.extend(oracle.load_journal(j, self.m))
        return log

    def settle(self, timeout: float = 60.0) -> tuple[oracle.WriteLog, oracle.Report]:
        """Stop the writer, let the pair drain, and run the oracle on a fresh connection to the slave."""
        self.stop_writer()
        self.ensure_running()
        log = self.log()
        self.acked_before_drain = log.acknowledged  # what the writers saw acknowledged while faults went on
        log.observe_ack(procs.wait_drained(self.m, self.s, NAME, log.last, timeout))
        with System.open(self.s.path) as s:  # a fresh connection: no cached view of the slave
            return log, oracle.verify(self.m, s, NAME, log, drained=True, contiguous=False)

    def ensure_running(self) -> None:
        for system in (self.s, self.m):
            if not sv.is_running(system, NAME):
                sv.start(system, NAME)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self.proxy.close()
        procs.kill_all(self.home)


def proxy_to(port: int, host: str = "127.0.0.1") -> FaultProxy:
    """A proxy to ``host:port`` listening on a port D3 accepts (1024-32767)."""
    for _ in range(20):
        try:
            return FaultProxy((host, port), ("127.0.0.1", procs.free_port()))
        except OSError:
            continue  # taken between the probe and the bind
    raise RuntimeError("no free port for the fault proxy")


def _oks(journal: Path) -> int:
    try:
        return journal.read_text().count('{"ok":')
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Fault:
    kind: str
    hold: float  # how long a stop or a stall lasts: past the time-outs
    pause: float  # how long a killed server stays down
    delay: float  # the proxy's per-chunk delay


def make_plan(seed: int, rounds: int, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """Every fault of a run, drawn up front from the seed alone: the same seed, the same faults."""
    rng = random.Random(seed)
    return [Fault(rng.choice(kinds), round(TIMEOUT + rng.uniform(0.2, 1.0), 3), round(rng.uniform(0.0, 0.5), 3),
                  rng.choice((0.01, 0.05, 0.2))) for _ in range(rounds)]


def inject(rig: Rig, fault: Fault) -> None:
    """One fault, then its repair; returns when the pair may work again."""
    kind = fault.kind
    if kind == "kill9-master":
        procs.kill(rig.m, NAME)
        procs.wait_stopped(rig.m, NAME)
        time.sleep(fault.pause)  # the writer goes on while the master is down
        sv.start(rig.m, NAME)
    elif kind == "kill9-slave":
        procs.kill(rig.s, NAME)
        procs.wait_stopped(rig.s, NAME)
        time.sleep(fault.pause)
        sv.start(rig.s, NAME)
    elif kind == "kill9-writer":
        assert rig.proc is not None
        rig.proc.kill()
        rig.proc.wait(10)
        rig.new_writer()
    elif kind in ("stop-master", "stop-slave"):
        system = rig.m if kind == "stop-master" else rig.s
        procs.kill(system, NAME, signal.SIGSTOP)
        try:
            time.sleep(fault.hold)
        finally:
            procs.kill(system, NAME, signal.SIGCONT)
    elif kind == "delay":
        rig.proxy.delay = fault.delay
        time.sleep(fault.hold - TIMEOUT + 0.3)
        rig.proxy.delay = 0.0
    elif kind == "stall":
        rig.proxy.stall(fault.hold)
        time.sleep(fault.hold)
    elif kind in ("truncate", "flip-up", "flip-down"):
        if kind == "truncate":
            rig.proxy.truncate()
        else:
            rig.proxy.flip(UP if kind == "flip-up" else DOWN)
        with contextlib.suppress(AssertionError):  # the link may be between calls: then the fault is dropped
            procs.wait_until(lambda: rig.proxy.pending == 0, 5, "the fault to hit traffic")
        rig.proxy.clear()
    elif kind == "reset":
        with contextlib.suppress(AssertionError):
            procs.wait_until(lambda: rig.proxy.reset() > 0, 5, "a connection to reset")
    else:
        raise ValueError(f"unknown fault kind {kind!r}")


def run(home: Path, rounds: int, seed: int, *, kinds: tuple[str, ...] = KINDS, say: Callable[[str], None] = lambda s: None,
        drain_timeout: float = 60.0) -> Outcome:
    plan = make_plan(seed, rounds, kinds)
    out = Outcome(seed, rounds, 0.0)
    t0 = time.monotonic()
    rig = Rig(home, seed)
    try:
        rig.start()
        rig.writes_grow()
        for r, fault in enumerate(plan):
            out.plan.append(fault.kind)
            say(f"round {r + 1}/{rounds}: {fault.kind}")
            inject(rig, fault)
            out.faults[fault.kind] += 1
            rig.writes_grow()
        log, out.report = rig.settle(drain_timeout)
        out.faults["acked-before-drain"] = rig.acked_before_drain
        out.faults.update({f"proxy-{k}": v for k, v in rig.proxy.counts.items()})
        out.faults["proxy-connections"] = rig.proxy.connections
        out.faults["writers"] = rig.wid
        out.faults["uncertain-writes"] = log.uncertain
        out.faults["slave-applied"] = store_apply.last_applied(rig.s, NAME)
    finally:
        out.seconds = time.monotonic() - t0
        rig.close()
    return out
