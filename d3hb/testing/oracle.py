"""THE replication oracle: every replication test ends with :func:`check`.

The writer records every update with the transaction number the store gave
it (``File.write`` returns it) and the body.  At the end:

1. the writer's numbers are unique, increasing in commit order, and (unless
   the test says otherwise) without gaps;
2. every write the slave has acknowledged (number <= the slave's applied
   number for the server) is there: each item the writer touched holds the
   last such write (so they were applied in commit order, exactly once), or
   is absent if that last write deleted it;
3. nothing is on the slave, in the files written, that was never written;
4. once the queue has drained: the slave applied everything and the per-file
   digests (d3hb.store.digests) of both systems are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from d3hb.store import File, System, digests
from d3hb.store import apply as store_apply
from d3hb.store.marks import as_bytes


@dataclass(frozen=True)
class Write:
    tno: int
    account: str
    dict_name: str
    data_name: str | None
    item: bytes
    body: bytes | None  # None: a delete


@dataclass
class WriteLog:
    """What the writer did, in commit order."""

    writes: list[Write] = field(default_factory=list)

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

    @property
    def last(self) -> int:
        return self.writes[-1].tno if self.writes else 0


def check(master: System, slave: System, server: str, log: WriteLog, *, drained: bool = True, contiguous: bool = True) -> int:
    """Assert the oracle; returns the slave's applied number.  AssertionError says exactly what broke."""
    tnos = [w.tno for w in log.writes]
    for a, b in zip(tnos, tnos[1:]):
        if b <= a:
            raise AssertionError(f"writer's transaction numbers not increasing: {b} after {a}")
        if contiguous and b != a + 1:
            raise AssertionError(f"writer's transaction numbers have a gap: {b} after {a}")
    # One read snapshot of the slave: a live slave may still apply what is in its socket buffer
    # (after a kill -9 of the master, say), and the applied number must match the items read.
    with slave.snapshot():
        return _check_slave(master, slave, server, log, drained=drained)


def _check_slave(master: System, slave: System, server: str, log: WriteLog, *, drained: bool) -> int:
    applied = store_apply.last_applied(slave, server)
    expected: dict[tuple[str, str, str | None], dict[bytes, bytes | None]] = {}
    for w in log.writes:
        if w.tno <= applied:
            expected.setdefault((w.account, w.dict_name, w.data_name), {})[w.item] = w.body
        else:
            expected.setdefault((w.account, w.dict_name, w.data_name), {})
    written = {(w.account, w.dict_name, w.data_name, w.item) for w in log.writes}
    for (account, dict_name, data_name), items in expected.items():
        f = slave.find_file(account, dict_name, data_name)
        ref = f"{account},{dict_name}" + (f",{data_name}" if data_name and data_name != dict_name else "")
        if f is None:
            if any(body is not None for body in items.values()):
                raise AssertionError(f"file {ref} is missing on slave {slave.name} (applied up to {applied})")
            continue
        sf = File(slave, f)
        for item, body in items.items():
            got = sf.read(item)
            if got != body:
                last = max(w.tno for w in log.writes if w.item == item and (w.account, w.dict_name, w.data_name) == (account, dict_name, data_name) and w.tno <= applied)
                raise AssertionError(f"{ref} item {item!r} on slave is {got!r}, expected {body!r} from transaction {last} "
                                     f"(slave applied up to {applied}): lost, duplicated or out of order")
        for item in sf.ids():
            if (account, dict_name, data_name, item) not in written:
                raise AssertionError(f"{ref} item {item!r} is on slave {slave.name} but was never written")
            if items.get(item) is None:
                raise AssertionError(f"{ref} item {item!r} is on slave {slave.name}, but no write of it up to {applied} leaves it there")
    if drained:
        if applied < log.last:
            raise AssertionError(f"slave {slave.name} applied up to {applied}, the writer's last transaction is {log.last}")
        dm, ds = digests(master), digests(slave)
        diff = sorted(k for k in dm.keys() | ds.keys() if dm.get(k) != ds.get(k))
        if diff:
            raise AssertionError(f"per-file digests differ for {', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}")
    return applied
