"""Helpers: the child processes a slave starts for long work, and how it watches them.

D3's slave hands a clear-file of a big file, and a resize, to a helper
(a phantom) so it keeps reading the network.  Here a helper is
``python -m d3hb.servers.helper JSON``: it opens the system, runs one job
recorded in ``hb_jobs`` (d3hb.store.jobs) in short SQLite transactions, and
exits 0 when the job row is gone.  It exits as soon as its slave is gone
(its parent pid changes), so a helper never outlives the slave that
watches it; the job stays recorded and the next start runs it again.

:class:`Helpers` lives in the slave: it starts a helper per job and checks
them every :data:`CHECK_EVERY` seconds.  A helper that ends without
finishing its job (kill -9, a crash) is an incident, and the job is retried
up to :data:`MAX_ATTEMPTS` times; after that the incident says so and the
file's updates stay held (nothing is dropped) until the slave is restarted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import d3hb
from d3hb.store import jobs as store_jobs
from d3hb.store.system import System

logger = logging.getLogger(__name__)

CHECK_EVERY = 0.5  # s between two looks at the helpers
MAX_ATTEMPTS = 3


def helper_pause() -> float:
    """D3HB_HELPER_PAUSE: seconds a helper sleeps between two chunks (tests slow it down to watch it)."""
    try:
        return max(0.0, float(os.environ.get("D3HB_HELPER_PAUSE", "0.005")))
    except ValueError:
        return 0.005


@dataclass
class Running:
    job: store_jobs.Job
    proc: subprocess.Popen
    started: float


class Helpers:
    """The slave's helpers: start, watch, retry, report."""

    def __init__(self, system: System, server: str, *, stderr: Path, log: Callable[[str], None],
                 incident: Callable[[str, str], bool], clear: Callable[[str, str], bool]) -> None:
        self.system = system
        self.server = server
        self.stderr = stderr
        self.log = log
        self.incident = incident
        self.clear = clear
        self.running: dict[int, Running] = {}
        self.given_up: set[int] = set()
        self.tries: Counter[int] = Counter()
        self.finished = 0

    def _what(self, job: store_jobs.Job) -> str:
        return job.describe(self.system.file_by_fof(job.fof))

    def start(self, job: store_jobs.Job) -> None:
        if job.tno in self.running or job.tno in self.given_up:
            return
        self.tries[job.tno] += 1  # per run of the slave: a restart gives a failed job fresh attempts
        n = self.tries[job.tno]
        if n > MAX_ATTEMPTS:
            self.given_up.add(job.tno)
            self.incident(f"helper-failed-{job.tno}", f"the helper for {self._what(job)} failed {MAX_ATTEMPTS} times; the operation is "
                          f"NOT done and updates to the file stay held (nothing is lost): see {self.stderr.name}, then restart "
                          f"the slave server to try again")
            return
        store_jobs.attempt(self.system, job)  # the durable count, which 'hot-backup held' shows
        doc = {"dir": str(self.system.path), "server": self.server, "tno": job.tno, "parent": os.getpid(), "pause": helper_pause()}
        env = dict(os.environ)
        root = str(Path(d3hb.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.stderr, "ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", "d3hb.servers.helper", json.dumps(doc)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, close_fds=True, env=env)
        self.running[job.tno] = Running(job, proc, time.monotonic())
        self.log(f"Helper pid {proc.pid} started for {self._what(job)} (attempt {n})")

    def check(self) -> list[int]:
        """Look at every helper; returns the jobs that are finished."""
        done = []
        for tno, r in list(self.running.items()):
            code = r.proc.poll()
            if code is None:
                continue
            del self.running[tno]
            if store_jobs.is_done(self.system, r.job):
                self.finished += 1
                done.append(tno)
                self.log(f"Helper pid {r.proc.pid} finished {r.job.describe(None)} in {time.monotonic() - r.started:.1f} s")
                self.clear(f"helper-{tno}", f"{r.job.describe(None)} completed")
                self.clear(f"helper-failed-{tno}", f"{r.job.describe(None)} completed")
                continue
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            text = (f"the helper (pid {r.proc.pid}) for {self._what(r.job)} died ({how}) before finishing; "
                    f"the operation is retried and updates to the file stay held meanwhile")
            if not self.incident(f"helper-{tno}", text):
                self.log(text)  # the incident is already open: each death still goes in the log
            self.start(r.job)
        return done

    def stop_all(self) -> None:
        """The slave is stopping: the helpers stop too, their jobs stay recorded for the next start."""
        for r in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                r.proc.terminate()
        for r in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(5)
        self.running.clear()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s d3hb helper: %(message)s")
    doc = json.loads(args[0])
    parent = int(doc["parent"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))

    def still_wanted(n: int) -> None:
        if os.getppid() != parent:  # the slave died: stop; the job stays recorded
            raise SystemExit(3)

    with System.open(Path(doc["dir"])) as system:
        job = store_jobs.get(system, doc["server"], int(doc["tno"]))
        if job is None:
            return 0
        n = store_jobs.run(system, job, pause=float(doc.get("pause", 0.0)), progress=still_wanted)
        logger.info("job %s of %s done: %d items", job.tno, job.server, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
