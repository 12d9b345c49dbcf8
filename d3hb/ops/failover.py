"""Promote a slave, and the planned switchover of a pair.

Promotion makes a hot-backup slave the master of its data: the slave
server stops, what it holds is applied, the system continues the old
master's history under a bumped epoch (recorded in :mod:`d3hb.store.history`
with the number where the old epoch ended), replicated files become
writable and logging starts.  Its queue numbering continues after the last
transaction it applied, and the queue keeps everything from there on for
the old master's return (a cursor named after the server), as D3's
"leave the transaction journal on disk" failback expects.

A switchover is the planned form: the master refuses writes, the slave
acknowledges everything, the slave is promoted and the pair is reversed
(the old master becomes its slave), all measured.  Both systems must be
reachable from this host (one d3hb home); across hosts the administrator
runs promote on the slave and rejoin on the old master.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from d3hb.errors import D3hbError, NotFound, Refused
from d3hb.ops import incidents, supervisor
from d3hb.ops.serverdefs import MASTER, SLAVE, Definitions, ServerDef
from d3hb.servers import status as st
from d3hb.store import apply as store_apply
from d3hb.store import history
from d3hb.store.system import System

logger = logging.getLogger(__name__)

Out = Callable[[str], None]
LIVE_STATES = frozenset({st.CONNECTED, st.READING_NETWORK, st.WRITING_NETWORK, st.WAITING_ACK})
PROMOTED_META = history.PROMOTED_META
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CATCH_UP = 50  # transactions the slave may lag before a switchover refuses writes


@dataclass(frozen=True)
class Promotion:
    system: str
    server: str
    tno: int  # last transaction of the old epoch; this system numbers from tno + 1
    epoch: int  # the new epoch
    held: int  # held transactions applied before promotion
    writable_at: float  # time.monotonic() when local writes were accepted


@dataclass(frozen=True)
class Switchover:
    master: str  # the new master (the old slave)
    slave: str
    tno: int
    epoch: int
    unavailable: float  # seconds with writes refused on both systems
    total: float  # the whole switchover, servers restarted


def _apply_held(system: System, name: str, d: ServerDef) -> int:
    try:
        from d3hb.store import hold  # the hold-file module (apply updates off)
    except ModuleNotFoundError as exc:
        if exc.name != "d3hb.store.hold":
            raise
        return 0
    if not hold.held_count(system, name):
        return 0
    return hold.apply_held(system, name, relog=d.log_slave, auto_create=d.auto_create)


def live_master(system: System, name: str) -> str:
    """Why the slave server ``name`` looks connected to a live master ('' if it does not)."""
    if not supervisor.is_running(system, name):
        return ""
    doc = st.read_status(supervisor.files(system, name)) or {}
    if doc.get("state") in LIVE_STATES:
        return f"slave server '{name}' is {doc.get('state')} to a master at {doc.get('peer') or 'unknown address'}"
    return ""


def _stop_quietly(system: System, name: str) -> None:
    if supervisor.is_running(system, name):
        supervisor.stop(system, name)


def promote(system: System, name: str, *, force: bool = False, out: Out = lambda line: None,
            stop_server: bool = True, cursor: bool = True) -> Promotion:
    """Promote the slave of server ``name`` on ``system`` to master."""
    defs = Definitions(system)
    d = defs.get(name)
    if d.is_master:
        raise Refused(f"server '{name}' on system {system.name!r} is a master server", "promote runs on the slave system")
    if not system.replica:
        raise Refused(f"system {system.name!r} is not a hot-backup slave (already promoted?)", "nothing to do; see 'd3hb hot-backup show'")
    live = live_master(system, name)
    if live and not force:
        raise Refused(f"{live}: promoting now would give two masters",
                      f"stop the master first, or promote with the force option: 'd3hb hot-backup promote {name} (f'")
    if stop_server:
        _stop_quietly(system, name)
    held = _apply_held(system, name, d)
    if held:
        out(f"{held} held transactions applied")
    row = store_apply.applied_history(system, name)
    last, hist_id, old_epoch = row if row else (0, system.history_id, system.epoch)
    hist_id = hist_id or system.history_id
    old_epoch = old_epoch or system.epoch
    new_epoch = max(old_epoch, system.epoch) + 1
    with system.transaction():
        system.set_meta("history_id", hist_id)  # continue the old master's history and numbering
        history.record_fork(system, old_epoch, last)
        system.set_meta("epoch", str(new_epoch))
        system.q("DELETE FROM queue WHERE tno<=?", (last,))
        if system.queue.last_tno() < last:
            system.q("DELETE FROM sqlite_sequence WHERE name='queue'")
            system.q("INSERT INTO sqlite_sequence(name, seq) VALUES('queue', ?)", (last,))
        # Its slave server, if ever started again, now refuses the old master (older epoch).
        system.q("UPDATE applied SET epoch=? WHERE server=?", (new_epoch, name))
        if cursor:
            # Keep the new epoch's journal for the old master until it has it (failback (a)).
            system.q("INSERT INTO cursors VALUES(?,?) ON CONFLICT(server) DO UPDATE SET acked=excluded.acked", (name, last))
        system.set_meta("logging", "on")
        system.set_meta("enqueuing", "on")
        system.set_meta("replica", "off")
        system.set_meta(PROMOTED_META, f"{time.strftime('%Y-%m-%d %H:%M:%S')} server {name} at {last} epoch {new_epoch}")
    writable = time.monotonic()
    text = (f"system {system.name!r} promoted to master: last transaction applied {last}, new epoch {new_epoch}; "
            f"replicated files are writable and logged")
    with contextlib.suppress(Exception):
        incidents.report(system, d, text)
    out(text)
    return Promotion(system.name, name, last, new_epoch, held, writable)


def reverse_definitions(new_master: System, new_slave: System, name: str, *, host: str, at: int) -> None:
    """Swap the roles of the two definitions of ``name``; the new slave holds up to ``at``.

    The old master's definition carries the master-side settings (window,
    cap, code, notify) and the old slave's the slave-side ones (bind,
    apply, auto-create): each moves with its role, only host and target change.
    """
    old_master = Definitions(new_slave).get(name)
    old_slave = Definitions(new_master).get(name)
    if not old_master.is_master or old_slave.is_master:
        raise Refused(f"server '{name}' is not a master on {new_slave.name!r} and a slave on {new_master.name!r}",
                      "define the pair first (hot-backup setup)")
    with new_master.transaction():
        new_master.queue.add_cursor(name, at)
        Definitions(new_master).put(replace(old_master, type=MASTER, host=host, target=new_slave.name))
    with new_slave.transaction():
        Definitions(new_slave).put(replace(old_slave, type=SLAVE))  # also sets replica on
        attach_slave(new_slave, name, new_master, at)


def attach_slave(slave: System, name: str, master: System, at: int) -> None:
    """Make ``slave`` continue ``master``'s history after ``at`` through server ``name``."""
    with slave.transaction():
        slave.set_meta("replica", "on")
        slave.set_meta("enqueuing", "on")
        history.set_forks(slave, history.forks(master))
        slave.set_meta("history_id", master.history_id)
        slave.set_meta("epoch", str(master.epoch))  # it follows the master's epoch (the handshake says so)
        slave.q("DELETE FROM applied WHERE server=?", (name,))
        store_apply.record_applied(slave, name, at, master.history_id, master.epoch)
        slave.q("DELETE FROM queue")  # its own numbers are behind it; the master numbers from here
        slave.q("DELETE FROM cursors WHERE server=?", (name,))


def peer_host(d: ServerDef, host: str | None) -> str:
    """The address the new master calls: given, or loopback when the pair is on one host."""
    if host:
        return host
    if d.host in LOOPBACK:
        return d.host
    raise D3hbError(f"server '{d.name}' calls {d.host}: the new master needs the old master's address",
                    "give host=ADDRESS (how the other system reaches this one)")


def switchover(master: System, slave: System, name: str, *, host: str | None = None, timeout: float = 30.0,
               out: Out = lambda line: None, on_writable: Callable[[], None] = lambda: None) -> Switchover:
    """Planned switchover: no transaction lost, writes refused only for the measured moment.

    ``on_writable`` runs as soon as the new master takes writes, before the
    servers of the reversed pair start (a script moves the users there).
    """
    md, sd = Definitions(master).get(name), Definitions(slave).get(name)
    if not md.is_master or sd.is_master:
        raise Refused(f"server '{name}' is not a master on {master.name!r} with its slave on {slave.name!r}", "run switchover on the master")
    if not supervisor.is_running(master, name) or not supervisor.is_running(slave, name):
        raise Refused(f"both servers '{name}' must be running for a switchover", "start them, or use promote if the master is gone")
    new_host = peer_host(md, host)
    # Let the slave come close while users still work, so the fence below only waits for the
    # last few transactions (the refused time is then about one acknowledgement round trip).
    out(f"Waiting for the slave to come within {CATCH_UP} transactions of the master")
    deadline = time.monotonic() + timeout
    while master.queue.last_tno() - (master.queue.cursor(name) or 0) > CATCH_UP and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    out(f"Refusing writes on {master.name!r}; waiting for the slave to acknowledge everything")
    with master.transaction():  # after this commit no write to a replicated file can start on the master
        master.set_meta("replica", "on")
        master.set_meta("enqueuing", "off")  # nor a test record
        last = master.queue.last_tno()
    deadline = time.monotonic() + timeout
    while (master.queue.cursor(name) or 0) < last:
        if time.monotonic() > deadline:
            with master.transaction():
                master.set_meta("replica", "off")
                master.set_meta("enqueuing", "on")
            raise D3hbError(f"the slave did not acknowledge up to {last} within {timeout:g} s; writes allowed again on {master.name!r}",
                            "look at both status logs, then try again")
        time.sleep(0.005)
    errors: list[BaseException] = []

    def stop(system: System) -> None:
        try:
            supervisor.stop(system, name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stop, args=(s,)) for s in (master, slave)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    if store_apply.last_applied(slave, name) < last and not _apply_held(slave, name, sd):
        raise D3hbError(f"the slave acknowledged {last} but holds only {store_apply.last_applied(slave, name)}",
                        "do not write anywhere; look at the slave's status log")
    # The old master's cursor no longer matters; the new slave's position is `last`.
    p = promote(slave, name, force=True, stop_server=False, cursor=False, out=out)
    unavailable = p.writable_at - t0
    on_writable()
    reverse_definitions(slave, master, name, host=new_host, at=p.tno)
    supervisor.start(slave, name, out=out)
    supervisor.start(master, name, out=out)
    total = time.monotonic() - t0
    out(f"Switchover done: {slave.name!r} is the master from transaction {p.tno + 1} (epoch {p.epoch}); "
        f"writes were refused for {unavailable:.3f} s")
    return Switchover(slave.name, master.name, p.tno, p.epoch, unavailable, total)


def require_target(master: System, name: str) -> str:
    d = Definitions(master).get(name)
    if not d.is_master or not d.target:
        raise NotFound(f"server '{name}' on {master.name!r} is not a master with a target system", "run this on the master system")
    return d.target
