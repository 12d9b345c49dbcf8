"""The slave's options as a handler: log slave updates, apply updates, auto-create, helpers.

Every transaction of a batch goes one of four ways, all inside the batch's
one SQLite transaction with the recorded number (so a kill -9 neither loses
nor doubles anything):

* **held** (d3hb.store.hold) when apply updates is OFF, or its file is
  being cleared or resized by a helper, or older transactions for the same
  file are still held (order per file is kept);
* **parked** (d3hb.store.park) when its account or file is missing here and
  auto-create is OFF, or older updates for its master file are parked;
* **a helper job** (d3hb.store.jobs) for a clear or resize of a file with
  many items, and the resize that follows creating a file with a modulo
  over 100 (created at once with modulo 101);
* **applied**, re-queued for a cascaded slave when log slave updates is ON.

The handler keeps in memory only what it can rebuild from the database at
start (held keys, busy files); the slave server starts and watches the
helpers and calls :meth:`SlaveOptions.drain` to apply the hold.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from d3hb.servers.handlers import BatchResult, gap_error
from d3hb.store import apply as store_apply
from d3hb.store import hold as store_hold
from d3hb.store import jobs as store_jobs
from d3hb.store import park as store_park
from d3hb.store.hold import Key, conflicts_any, txn_key
from d3hb.store.system import System
from d3hb.store.txn import Kind, Transaction

HELD = "held"
HELPER = "helper"  # an Outcome.what: handed to a helper
HELPER_MIN_ITEMS = 10_000  # a clear or resize of a smaller file is done in the batch itself


def helper_min_items() -> int:
    """D3HB_HELPER_ITEMS overrides the threshold (tests, and sites with slow disks)."""
    try:
        return max(0, int(os.environ.get("D3HB_HELPER_ITEMS", HELPER_MIN_ITEMS)))
    except ValueError:
        return HELPER_MIN_ITEMS


@dataclass(frozen=True)
class ParkEvent:
    section: str
    txn: Transaction


class SlaveOptions:
    def __init__(self, system: System, server: str, *, relog: bool = False, auto_create: bool = False,
                 apply: bool = True, min_items: int | None = None) -> None:
        self.system = system
        self.server = server
        self.relog = relog
        self.auto_create = auto_create
        self.apply_on = apply
        self.min_items = helper_min_items() if min_items is None else min_items
        self.held_keys: Counter[Key] = Counter(store_hold.held_keys(system, server))
        self.n_held = store_hold.held_count(system, server)
        self.busy: dict[int, Key] = {}  # job tno -> the key of the file its helper works on
        self.jobs: dict[int, store_jobs.Job] = {}
        for job in store_jobs.pending(system, server):
            self._track(job)
        self.parked_events: list[ParkEvent] = []  # since the server last looked: it raises the incidents
        self.new_jobs: list[store_jobs.Job] = []  # likewise: it starts their helpers
        self.by_name: list[str] = []  # likewise: it logs them (once per master FOF number)
        self._named: set[int] = set()

    def _track(self, job: store_jobs.Job) -> None:
        self.jobs[job.tno] = job
        key = store_jobs.key(self.system, job)
        if key is not None:
            self.busy[job.tno] = key

    # -- Handler ---------------------------------------------------------------------------
    def last_stored(self) -> int:
        return store_apply.last_stored(self.system, self.server)

    def last_applied(self) -> int:
        return store_apply.last_applied(self.system, self.server)

    def handle(self, txns: Sequence[Transaction]) -> BatchResult:
        outcomes: Counter = Counter()
        skipped = 0
        held: set[Key] = set()
        n_held = 0
        held_counts: Counter[Key] = Counter()
        parks: list[ParkEvent] = []
        jobs: list[store_jobs.Job] = []
        with self.system.transaction():
            # Read inside the write transaction: the recorded number is the truth, not the connection's.
            last = store_apply.last_stored(self.system, self.server)
            check_parked = store_park.any_parked(self.system, self.server)
            for t in txns:
                if t.tno <= last:
                    skipped += 1
                    continue
                if t.tno != last + 1:
                    raise gap_error(self.server, last, t.tno)
                key = txn_key(t)
                hold_it = not self.apply_on
                if not hold_it and key is not None and (self.busy or self.held_keys or held or jobs):
                    blockers = {*self.busy.values(), *self.held_keys, *held, *(self.busy_key(j) for j in jobs)}
                    hold_it = conflicts_any(key, [b for b in blockers if b is not None])
                if hold_it:
                    store_hold.hold(self.system, self.server, t)
                    n_held += 1
                    if key is not None:
                        held.add(key)
                        held_counts[key] += 1
                    outcomes[HELD] += 1
                else:
                    what = self._apply(t, check_parked, parks, jobs)
                    check_parked = check_parked or what == store_park.PARKED
                    outcomes[what] += 1
                last = t.tno
            store_apply.record_applied(self.system, self.server, last)
            first = store_hold.first_held(self.system, self.server)
        # Committed: only now may the in-memory view change.
        self.n_held += n_held
        self.held_keys.update(held_counts)
        self._commit_side(parks, jobs)
        applied = last if first is None else min(last, first - 1)
        return BatchResult(last, applied, skipped, outcomes)

    def busy_key(self, job: store_jobs.Job) -> Key | None:
        return store_jobs.key(self.system, job)

    def _commit_side(self, parks: list[ParkEvent], jobs: list[store_jobs.Job]) -> None:
        self.parked_events += parks
        for job in jobs:
            self._track(job)
        self.new_jobs += jobs

    def _apply(self, t: Transaction, check_parked: bool, parks: list[ParkEvent], jobs: list[store_jobs.Job]) -> str:
        """Apply, park or hand to a helper (inside the batch's transaction); returns the outcome."""
        if check_parked and store_park.must_follow(self.system, self.server, t):
            parks.append(ParkEvent(store_park.park(self.system, self.server, t), t))
            return store_park.PARKED
        job = self._job_for(t)
        if job is not None:
            store_jobs.add(self.system, job)
            jobs.append(job)
            return HELPER
        if t.kind is Kind.CREATE_FILE and t.modulo > store_jobs.LARGE_MODULO and t.data_name is not None:
            outcome = store_park.apply_or_park(self.system, self.server, replace(t, modulo=store_jobs.START_MODULO),
                                               relog=self.relog, auto_create=self.auto_create, check_parked=False)
            f, _ = store_apply.find_target(self.system, t)
            if outcome.what == store_apply.APPLIED and f is not None:
                job = store_jobs.Job(self.server, t.tno, store_jobs.RESIZE, f.fof, t.modulo, self.relog)
                store_jobs.add(self.system, job)
                jobs.append(job)
            elif outcome.what == store_park.PARKED:
                parks.append(ParkEvent(outcome.file, t))
            return outcome.what
        outcome = store_park.apply_or_park(self.system, self.server, t, relog=self.relog, auto_create=self.auto_create,
                                           check_parked=False)
        if outcome.what == store_park.PARKED:
            parks.append(ParkEvent(outcome.file, t))
        elif outcome.by_name and t.fof and t.fof not in self._named and t.kind is not Kind.CREATE_FILE:
            self._named.add(t.fof)  # D3 would update the wrong file here; say that the names decided
            here = self.system.find_file(t.account, t.dict_name, t.data_name)
            self.by_name.append(f"{outcome.file} is FOF {t.fof} on the master but FOF {here.fof if here else '?'} here: "
                                f"its updates are matched by name")
        return outcome.what

    def _job_for(self, t: Transaction) -> store_jobs.Job | None:
        if t.kind not in (Kind.CLEAR, Kind.RESIZE):
            return None
        f, _ = store_apply.find_target(self.system, t)
        if f is None or f.is_control:
            return None
        n = self.system.q("SELECT count(*) FROM items WHERE fof=?", (f.fof,)).fetchone()[0]
        if n <= self.min_items:
            return None
        kind = store_jobs.CLEAR if t.kind is Kind.CLEAR else store_jobs.RESIZE
        return store_jobs.Job(self.server, t.tno, kind, f.fof, t.modulo, self.relog)

    # -- the hold, applied while batches keep arriving ------------------------------------
    def job_done(self, tno: int) -> None:
        self.jobs.pop(tno, None)
        self.busy.pop(tno, None)

    def drain(self, after: int, blocked: set[Key]) -> tuple[int, int]:
        """Apply one chunk of the hold above ``after``; returns (applied, last number looked at).

        ``blocked`` carries, through one pass, the keys of held transactions
        that had to stay (their file is busy): later ones for them stay too."""
        if not self.apply_on:
            return 0, after
        chunk = store_hold.held(self.system, self.server, after, store_hold.CHUNK)
        if not chunk:
            return 0, after
        done: list[Key | None] = []
        parks: list[ParkEvent] = []
        jobs: list[store_jobs.Job] = []
        staying: set[Key] = set()
        with self.system.transaction():
            check_parked = store_park.any_parked(self.system, self.server)
            for t in chunk:
                key = txn_key(t)
                if key is not None and (self.busy or blocked or staying or jobs):
                    stops = {*self.busy.values(), *blocked, *staying, *(k for j in jobs if (k := self.busy_key(j)))}
                    if conflicts_any(key, stops):
                        staying.add(key)
                        continue
                what = self._apply(t, check_parked, parks, jobs)
                check_parked = check_parked or what == store_park.PARKED
                store_hold.release(self.system, self.server, t.tno)
                done.append(key)
        blocked |= staying
        self.n_held -= len(done)
        self.held_keys.subtract(k for k in done if k is not None)
        self.held_keys = +self.held_keys  # drop the zeros
        self._commit_side(parks, jobs)
        return len(done), chunk[-1].tno

    def take_events(self) -> tuple[list[ParkEvent], list[store_jobs.Job], list[str]]:
        parks, jobs, named = self.parked_events, self.new_jobs, self.by_name
        self.parked_events, self.new_jobs, self.by_name = [], [], []
        return parks, jobs, named
