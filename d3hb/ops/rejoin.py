"""Bring a system back: rejoin as a slave, re-seed from a save, fail back by tapes.

* :func:`rejoin` - an old master comes back only as a slave of the system
  that was promoted in its place.  Its position (history id, epoch, last
  number it holds) is judged against the new master's history
  (:func:`d3hb.store.history.judge`): if it holds transactions the new
  master never received it is refused, "resync required", with those
  transactions listed and dumped to a transaction tape.  With ``resync``
  the refused system is then re-seeded from a save of the new master
  (failback procedure (a) after a restore of the main system).
* :func:`reseed` - backup system failure: a full save of the master is
  restored on the slave while the master keeps taking writes; the slave
  continues from the save's transaction number.
* :func:`tape_failback` - failback procedure (b): a full save of the backup
  system restored on the main one, transaction tapes loaded in rounds until
  almost in sync, a short stop for the last tape, then the main system is
  the master again and hot backup restarts from it.

Both systems must be reachable from this host (one d3hb home).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from d3hb.errors import D3hbError, Refused
from d3hb.ops import failover, running, saves, supervisor
from d3hb.ops.serverdefs import MASTER, SLAVE, Definitions, ServerDef
from d3hb.servers.master import RESYNC_META
from d3hb.store import history
from d3hb.store.system import System
from d3hb.store.txn import Transaction

Out = Callable[[str], None]


@dataclass(frozen=True)
class Rejoined:
    system: str
    at: int  # the rejoined slave holds up to this number
    divergent: tuple[int, ...] = ()  # numbers dumped to the tape (a resync)
    tape: str = ""
    reseeded: bool = False


@dataclass(frozen=True)
class TapeFailback:
    rounds: int  # tapes loaded while users worked on the backup system
    last_tape_txns: int
    stopped: float  # seconds with writes refused on both systems
    at: int  # the number both systems hold when the main system is the master again
    epoch: int


def divergent_transactions(system: System, first: int) -> list[Transaction]:
    out: list[Transaction] = []
    after = first - 1
    while batch := system.queue.read(after, 1000):
        out += [t for t in batch if t.kind not in history.HARMLESS]
        after = batch[-1].tno
    return out


def describe(t: Transaction) -> str:
    item = t.item.decode("latin-1")[:40]
    return f"{t.tno:>10}  {t.kind.value}  {t.account},{t.file_ref}  {item}"


def rejoin(old: System, new_master: System, name: str, *, host: str | None = None, tape: Path | None = None,
           resync: bool = False, start: bool = True, out: Out = lambda line: None) -> tuple[Rejoined, System]:
    """Make ``old`` (the old master) the slave of ``new_master``; returns the result and ``old``'s open System.

    ``old`` is re-opened when it is re-seeded (its database is replaced).
    """
    d = Definitions(old).get(name)
    _check_newer(new_master, old, name)  # first: the wrong way round, "already a slave" would mislead
    if not d.is_master:
        # Made a slave by hand: the master's handshake judges it on every call and, if it diverged,
        # refuses it naming the txn-dump range and the resync to run, so point there.
        raise Refused(f"server '{name}' on {old.name!r} is already a slave",
                      f"start it: 'd3hb hot-backup start {name}'; if its master refuses it with 'resync required', "
                      f"run what that message says")
    if supervisor.is_running(old, name):
        supervisor.stop(old, name, out=out)
    new_host = failover.peer_host(d, host)
    me = history.Position(new_master.history_id, new_master.epoch, new_master.queue.last_tno())
    pos = history.own_position(old)
    verdict = history.judge(me, history.forks(new_master), pos)
    if verdict.ok:
        failover.reverse_definitions(new_master, old, name, host=new_host, at=pos.last)
        old.set_meta(RESYNC_META + name, "")
        out(f"System {old.name!r} rejoins as the slave of {new_master.name!r}, holding up to {pos.last}")
        if start:
            _start(new_master, old, name, out)
        return Rejoined(old.name, pos.last), old
    lost = divergent_transactions(old, verdict.first) if verdict.first > 1 else []
    tape = tape or old.path / f"divergent-{name}-{int(time.time())}.tape"
    if lost:
        with open(tape, "wb") as fh:
            saves.txn_dump(old, fh, first=lost[0].tno, last=lost[-1].tno, text=f"divergent after {verdict.end}")
        out(f"{len(lost)} divergent transactions (on {old.name!r}, never received by {new_master.name!r}):")
        for t in lost[:50]:
            out(describe(t))
        if len(lost) > 50:
            out(f"... and {len(lost) - 50} more; all are on the tape")
        out(f"Dumped to transaction tape {tape}")
    reason = f"resync required: system {old.name!r} {verdict.reason}"
    old.set_meta(RESYNC_META + name, time.strftime("%Y-%m-%d %H:%M:%S ") + reason)
    if not resync:
        raise Refused(reason, f"keep the tape {tape}; re-seed this system from the new master: "
                              f"'d3hb --system {old.name} hot-backup rejoin {name} peer={new_master.name} (r'" if lost else
                              "re-seed this system from the new master with the (r option")
    out(f"{reason}; re-seeding {old.name!r} from a save of {new_master.name!r}")
    fresh, at = _copy(new_master, old, name, keep=[failover_def(d, new_master, name)], out=out)
    failover.attach_slave(fresh, name, new_master, at)
    fresh.set_meta(RESYNC_META + name, "")
    _as_master_of(new_master, name, fresh, new_host, at)
    if start:
        _start(new_master, fresh, name, out)
    return Rejoined(fresh.name, at, tuple(t.tno for t in lost), str(tape) if lost else "", True), fresh


def _check_newer(keeps: System, replaced: System, name: str, todo: str = "") -> None:
    """Refuse, before anything changes, when the system whose data would go is the live one.

    Run on the wrong system, a rejoin with (r, a reseed or a failback would
    replace the promoted system's database (users' writes since the
    promotion) with the stale copy: the epochs say which is which.
    """
    if keeps.replica:
        raise Refused(f"system {keeps.name!r} is still a hot-backup slave, not the master of the pair",
                      f"promote it first ('d3hb --system {keeps.name} hot-backup promote {name}'), or name the promoted system")
    if replaced.epoch > keeps.epoch:
        raise Refused(f"system {replaced.name!r} (epoch {replaced.epoch}) is newer than {keeps.name!r} (epoch {keeps.epoch}): "
                      f"its data would be replaced by an older copy",
                      todo or f"run this on the old system naming the new one, e.g. "
                               f"'d3hb --system {keeps.name} hot-backup rejoin {name} peer={replaced.name}'")


def failover_def(old_master_def: ServerDef, new_master: System, name: str) -> ServerDef:
    """The slave definition the old master gets: the new master's old slave definition."""
    d = Definitions(new_master).get(name)
    return replace(d, type=SLAVE) if not d.is_master else replace(old_master_def, type=SLAVE, host="", target="")


def _as_master_of(master: System, name: str, slave: System, host: str, at: int) -> None:
    """Make ``name`` on ``master`` a master server calling ``slave`` (keeping master-side settings)."""
    defs = Definitions(master)
    d = defs.get(name)
    with master.transaction():
        master.queue.add_cursor(name, at)
        if not d.is_master:
            defs.put(replace(d, type=MASTER, host=host, target=slave.name, bind="127.0.0.1", apply=True, auto_create=False,
                             log_slave=False))
        master.set_meta(RESYNC_META + name, "")


def _start(master: System, slave: System, name: str, out: Out) -> None:
    if not supervisor.is_running(slave, name):
        supervisor.start(slave, name, out=out)
    if not supervisor.is_running(master, name):
        supervisor.start(master, name, out=out)


def _save_restore(master: System, slave_dir: Path, slave_name: str, out: Out) -> int:
    """Stream a full save of ``master`` straight into a restore at ``slave_dir`` (a network save's shape)."""
    r, w = os.pipe()
    result: dict[str, object] = {}
    src = System.open(master.path)  # the save runs in its own thread, on its own connection

    def run() -> None:
        try:
            with open(w, "wb", closefd=True) as fh:
                result["label"] = saves.save(src, fh, keep_queue=True, text=f"re-seed of {slave_name}").label
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        with open(r, "rb", closefd=True) as fh:
            rep = saves.restore(slave_dir, slave_name, fh)
    finally:
        t.join(120)
        src.close()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    out(rep.summary())
    return int(rep.label.start_tno)


def _copy(master: System, slave: System, name: str, *, keep: list[ServerDef] | None = None,
          out: Out = lambda line: None) -> tuple[System, int]:
    """Replace ``slave``'s database with a save of ``master``; returns the re-opened slave and the save's number."""
    defs = keep if keep is not None else Definitions(slave).all()
    busy = running.servers(slave.path)
    for server in busy:
        with contextlib.suppress(D3hbError):
            supervisor.stop(slave, server)
    # The queue must keep what follows the save for this slave: a cursor now, before the snapshot.
    master.queue.add_cursor(name, master.queue.last_tno())
    path, sname = slave.path, slave.name
    slave.close()
    at = _save_restore(master, path, sname, out)
    fresh = System.open(path)
    with fresh.transaction():
        mine = Definitions(fresh)
        for other in mine.names():  # the save brought the master's definitions: put this system's back
            mine.delete(other)
        for d in defs:
            mine.put(d)
        history.set_forks(fresh, history.forks(master))
    return fresh, at


def reseed(master: System, slave: System, name: str, *, start: bool = True, out: Out = lambda line: None) -> tuple[int, System]:
    """Backup system failure: re-seed the slave from a save while the master keeps working.

    Returns the save's transaction number (the slave continues after it) and
    the slave's re-opened System.
    """
    md = Definitions(master).get(name)
    if not md.is_master:
        raise Refused(f"server '{name}' on {master.name!r} is not a master", "run reseed on the master system")
    sd = Definitions(slave).get(name)
    if sd.is_master:
        raise Refused(f"server '{name}' on {slave.name!r} is a master", "promote or rejoin first")
    if not slave.replica:
        raise Refused(f"system {slave.name!r} is not a hot-backup slave (promoted?): re-seeding it would replace a master's data",
                      f"if {slave.name!r} is the master now, rejoin this system to it: 'd3hb --system {master.name} hot-backup rejoin {name} peer={slave.name}'")
    _check_newer(master, slave, name)
    if supervisor.is_running(master, name):
        supervisor.stop(master, name, out=out)  # it would keep calling a slave being replaced
    fresh, at = _copy(master, slave, name, out=out)
    failover.attach_slave(fresh, name, master, at)
    with master.transaction():
        master.set_meta(RESYNC_META + name, "")
        if master.queue.cursor(name) is None:
            master.queue.add_cursor(name, at)
    out(f"Slave {fresh.name!r} re-seeded from {master.name!r} at transaction {at}")
    if start:
        _start(master, fresh, name, out)
    return at, fresh


def tape_failback(backup: System, main: System, name: str, tape_dir: Path, *, near: int = 100, rounds: int = 10,
                  host: str | None = None, start: bool = True, out: Out = lambda line: None,
                  between: Callable[[int], None] = lambda n: None) -> tuple[TapeFailback, System]:
    """Failback (b): save/restore plus transaction tapes in rounds; the main system ends as master.

    ``backup`` is the promoted system users work on; ``main`` the repaired
    main system (its contents are replaced).  ``between(n)`` runs after each
    round, and ``between(0)`` once after the restore (tests and the bench
    use it to pace writers).
    """
    main_def = Definitions(main).get(name)
    backup_def = Definitions(backup).get(name)
    _check_newer(backup, main, name, f"run failback on the promoted system naming the repaired one: "
                                      f"'d3hb --system {main.name} hot-backup failback {name} main={backup.name}'")
    if not main_def.is_master:
        raise Refused(f"server '{name}' on {main.name!r} is not the master definition", "define it as type=M first")
    tape_dir.mkdir(parents=True, exist_ok=True)
    if supervisor.is_running(backup, name):
        supervisor.stop(backup, name, out=out)
    # The main system gets its own old definitions back, as the master of the pair.
    fresh, loaded = _copy(backup, main, name, keep=[main_def], out=out)
    between(0)
    n = 0
    while True:
        last = backup.queue.last_tno()
        if last - loaded <= near or n >= rounds:
            break
        n += 1
        loaded = _tape_round(backup, fresh, tape_dir / f"{name}-round{n}.tape", loaded, last, out)
        between(n)
    t0 = time.monotonic()
    with backup.transaction():  # users off the backup system: writes refused
        backup.set_meta("replica", "on")
        backup.set_meta("enqueuing", "off")
        last = backup.queue.last_tno()
    before = loaded
    loaded = _tape_round(backup, fresh, tape_dir / f"{name}-last.tape", loaded, last, out)
    # The main system is the master again: a new epoch after the backup system's.
    new_epoch = max(backup.epoch, fresh.epoch) + 1
    with fresh.transaction():
        history.set_forks(fresh, history.forks(backup))
        history.record_fork(fresh, backup.epoch, loaded)
        fresh.set_meta("history_id", backup.history_id)
        fresh.set_meta("epoch", str(new_epoch))
        fresh.q("DELETE FROM sqlite_sequence WHERE name='queue'")
        fresh.q("INSERT INTO sqlite_sequence(name, seq) VALUES('queue', ?)", (loaded,))
        fresh.set_meta("replica", "off")
        fresh.set_meta("logging", "on")
        fresh.set_meta("enqueuing", "on")
        fresh.queue.add_cursor(name, loaded)
    stopped = time.monotonic() - t0
    # The backup system is the slave again.
    if backup_def.is_master:
        Definitions(backup).put(replace(backup_def, type=SLAVE, host="", target=""))
    failover.attach_slave(backup, name, fresh, loaded)
    out(f"Main system {fresh.name!r} is the master again from transaction {loaded + 1} (epoch {new_epoch}); "
        f"writes were refused for {stopped:.3f} s")
    if start:
        _start(fresh, backup, name, out)
    return TapeFailback(n, loaded - before, stopped, loaded, new_epoch), fresh


def _tape_round(src: System, dst: System, path: Path, loaded: int, last: int, out: Out) -> int:
    if last <= loaded:
        return loaded
    with open(path, "wb") as fh:
        saves.txn_dump(src, fh, first=loaded + 1, last=last, text=f"failback {loaded + 1}-{last}")
    with open(path, "rb") as fh:
        rep = saves.txn_load(dst, fh)
    out(f"{path.name}: {rep.summary()}")
    return last
