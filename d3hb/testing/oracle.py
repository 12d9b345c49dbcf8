"""THE replication oracle: every replication test ends with :func:`check`.

The writer records every update with the transaction number the store gave
it (``File.write`` returns it), the body, and its outcome: whether the slave
acknowledged it.  A write is *acknowledged* once an acknowledgement at or
above its number was observed (``WriteLog.observe_ack``: the master's cursor
for the slave, or the slave's applied number).  At the end:

1. the writer's numbers are unique, increasing in commit order, and (unless
   the test says otherwise) without gaps;
2. the slave holds at least everything acknowledged (a slave whose applied
   number is below an observed acknowledgement lost acknowledged writes);
3. every write up to the slave's applied number is there exactly once and in
   commit order: each item the writer touched holds the last such write, or
   is absent if that last write deleted it;
4. nothing is on the slave, in the files written, that was never written;
5. once the queue has drained: the slave applied everything and the per-file
   digests (d3hb.store.digests) of both systems are equal.

:func:`verify` returns a :class:`Report` (counts for benchmarks);
:func:`check` raises AssertionError naming the first problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from d3hb.store import File, System, digests
from d3hb.store import apply as store_apply
from d3hb.store.marks import as_bytes

FileKey = tuple[str, str, str | None]


@dataclass(frozen=True)
class Write:
    tno: int
    account: str
    dict_name: str
    data_name: str | None
    item: bytes
    body: bytes | None  # None: a delete

    @property
    def file(self) -> FileKey:
        return (self.account, self.dict_name, self.data_name)


@dataclass
class WriteLog:
    """What the writer did, in commit order, and the highest acknowledgement it saw."""

    writes: list[Write] = field(default_factory=list)
    acked_upto: int = 0
    uncertain: int = 0  # writes whose commit a killed writer never saw, resolved against the master

    def _add(self, f: File, tno: object, item: bytes, body: bytes | None) -> int:
        if not isinstance(tno, int) or isinstance(tno, bool):
            raise AssertionError(f"write of {item!r} to {f.info.qualified} was not logged (got {tno!r}); make the file DL")
        info = f.info
        self.writes.append(Write(tno, info.account, info.dict_name, info.data_name, item, body))
        return tno

    def write(self, f: File, item: str | bytes, body: str | bytes) -> int:
        b = as_bytes(body)
        return self._add(f, f.write(item, b), as_bytes(item), b)

    def delete(self, f: File, item: str | bytes) -> int:
        return self._add(f, f.delete(item), as_bytes(item), None)

    def observe_ack(self, tno: int | None) -> None:
        """The slave acknowledged everything up to ``tno`` (seen now): those writes are promised."""
        if tno is not None and tno > self.acked_upto:
            self.acked_upto = tno

    @property
    def last(self) -> int:
        return self.writes[-1].tno if self.writes else 0

    @property
    def acknowledged(self) -> int:
        return sum(1 for w in self.writes if w.tno <= self.acked_upto)

    def extend(self, other: WriteLog) -> None:
        self.writes.extend(other.writes)
        self.acked_upto = max(self.acked_upto, other.acked_upto)
        self.uncertain += other.uncertain


# -- the writer process's journal (d3hb.testing.writer) --------------------------------
# JSON lines, flushed one by one so a kill -9 of the writer loses none that were written:
#   {"batch": n, "marker": [acct, dict, data, id], "ops": [[tno, acct, dict, data, id_hex, body_hex|null], ...]}
#       written after the batch's updates got their numbers, BEFORE its commit;
#   {"ok": n}     after the commit;
#   {"ack": tno}  an acknowledgement observed.
# A batch with no "ok" is the writer's last (it was killed in between): it committed
# if and only if its marker item, written in the same transaction and never
# touched again, is on the master.

def load_journal(path: Path, master: System | None = None) -> WriteLog:
    """The WriteLog a writer process left in ``path``; its last unconfirmed batch is resolved on ``master``."""
    log = WriteLog()
    pending: dict | None = None
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill: its batch has no "ok" either
        if "batch" in rec:
            pending = rec
        elif "ok" in rec:
            if pending is None or pending["batch"] != rec["ok"]:
                raise AssertionError(f"{path}: confirmation of batch {rec['ok']} without its record")
            _take(log, pending)
            pending = None
        elif "ack" in rec:
            log.observe_ack(int(rec["ack"]))
    if pending is not None:
        if master is None:
            raise AssertionError(f"{path}: batch {pending['batch']} was never confirmed; give the master to resolve it")
        acct, dname, data, mid = pending["marker"]
        info = master.find_file(acct, dname, data)
        committed = info is not None and File(master, info).read(bytes.fromhex(mid)) is not None
        log.uncertain += len(pending["ops"])
        if committed:
            _take(log, pending)
    return log


def _take(log: WriteLog, rec: dict) -> None:
    for tno, acct, dname, data, item, body in rec["ops"]:
        log.writes.append(Write(int(tno), acct, dname, data, bytes.fromhex(item), None if body is None else bytes.fromhex(body)))


# -- the check ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    applied: int  # the slave's applied number
    writes: int
    acknowledged: int
    lost: int  # acknowledged (or applied) writes the slave does not hold
    duplicated: int  # items the slave holds that their last write deleted: a write applied again
    out_of_order: int  # items holding an older write than the last one applied
    never_written: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(master: System, slave: System, server: str, log: WriteLog, *, drained: bool = True, contiguous: bool = True) -> int:
    """Assert the oracle; returns the slave's applied number.  AssertionError says exactly what broke."""
    report = verify(master, slave, server, log, drained=drained, contiguous=contiguous)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise AssertionError(report.problems[0] + more)
    return report.applied


def verify(master: System, slave: System, server: str, log: WriteLog, *, drained: bool = True, contiguous: bool = True) -> Report:
    """Everything :func:`check` asserts, counted rather than raised."""
    problems: list[str] = []
    tnos = [w.tno for w in log.writes]
    for a, b in zip(tnos, tnos[1:]):
        if b <= a:
            problems.append(f"writer's transaction numbers not increasing: {b} after {a}")
            break
        if contiguous and b != a + 1:
            problems.append(f"writer's transaction numbers have a gap: {b} after {a}")
            break
    # One read snapshot of the slave: a live slave may still apply what is in its socket buffer
    # (after a kill -9 of the master, say), and the applied number must match the items read.
    with slave.snapshot():
        counts = _check_slave(slave, server, log, problems)
    applied = counts["applied"]
    if drained and not problems:
        if applied < log.last:
            problems.append(f"slave {slave.name} applied up to {applied}, the writer's last transaction is {log.last}")
        else:
            dm, ds = digests(master), digests(slave)
            diff = sorted(k for k in dm.keys() | ds.keys() if dm.get(k) != ds.get(k))
            if diff:
                problems.append(f"per-file digests differ for {', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}")
    return Report(applied, len(log.writes), log.acknowledged, counts["lost"], counts["duplicated"], counts["out_of_order"],
                  counts["never_written"], tuple(problems))


def _ref(key: FileKey) -> str:
    account, dict_name, data_name = key
    return f"{account},{dict_name}" + (f",{data_name}" if data_name and data_name != dict_name else "")


def _check_slave(slave: System, server: str, log: WriteLog, problems: list[str]) -> dict[str, int]:
    applied = store_apply.last_applied(slave, server)
    counts = {"applied": applied, "lost": 0, "duplicated": 0, "out_of_order": 0, "never_written": 0}
    if log.acked_upto > applied:
        lost = sum(1 for w in log.writes if applied < w.tno <= log.acked_upto)
        counts["lost"] += lost
        problems.append(f"slave {slave.name} applied only up to {applied}, but {log.acked_upto} was acknowledged: "
                        f"{lost} acknowledged writes lost")
    expected: dict[FileKey, dict[bytes, Write | None]] = {}
    history: dict[tuple[FileKey, bytes], list[Write]] = {}
    for w in log.writes:
        items = expected.setdefault(w.file, {})
        history.setdefault((w.file, w.item), []).append(w)
        if w.tno <= applied:
            items[w.item] = w
        else:
            items.setdefault(w.item, None)
    for key, items in expected.items():
        ref = _ref(key)
        f = slave.find_file(*key)
        if f is None:
            if any(w is not None and w.body is not None for w in items.values()):
                counts["lost"] += 1
                problems.append(f"file {ref} is missing on slave {slave.name} (applied up to {applied})")
            continue
        sf = File(slave, f)
        for item, last in items.items():
            want = None if last is None else last.body
            got = sf.read(item)
            if got == want:
                continue
            older = [w for w in history[(key, item)] if w.body == got]
            if got is None:
                counts["lost"] += 1
                what = "lost"
            elif not older:
                counts["never_written"] += 1
                what = "never written"
            elif want is None:
                counts["duplicated"] += 1
                what = "applied again after its delete (duplicated) or out of order"
            else:
                counts["out_of_order"] += 1
                what = "an older write: out of order or duplicated"
            src = f"transaction {last.tno}" if last is not None else "no write applied yet"
            problems.append(f"{ref} item {item!r} on slave is {got!r}, expected {want!r} from {src} "
                            f"(slave applied up to {applied}): {what}")
        for item in sf.ids():
            if item not in items:
                counts["never_written"] += 1
                problems.append(f"{ref} item {item!r} is on slave {slave.name} but was never written")
    return counts
