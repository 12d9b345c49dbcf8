"""``d3hb demo``: the network save/restore and hot backup story on loopback, in seconds.

In a fresh temporary D3HB_HOME (never the user's systems):

1. ``pick0`` (host A) gets an account and DL files, and a few thousand items;
2. network save/restore (D3's procedure): ``pick0`` saves into its pipe, the
   output server ``ssave`` sends it to the input server of the small system
   ``vmrest`` (host B), whose pipe feeds a full restore of ``backup`` (host
   B's pick0), while a writer keeps updating ``pick0`` all through the save;
3. ``shutdown`` from the sending side stops both tape-socket servers;
4. hot backup ``hbdemo`` starts from pick0 to backup with no gap: the restore
   recorded the transaction number the save began at, so the slave starts
   there and the master ships only what came after — including the updates
   made during the save;
5. more updates, the queue drains, both servers are queried, the queue is
   displayed, and the replication oracle and per-file digests are checked.

Exit 0 only when the oracle passes and the digests agree.  The temporary
home is removed at the end, unless ``keep=True`` is passed or the
environment has ``D3HB_DEMO_KEEP=1`` (to look at the logs afterwards).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from d3hb.errors import D3hbError
from d3hb.ops import netsave, saves, supervisor, tapeio, tsservers
from d3hb.ops.serverdefs import Definitions
from d3hb.ops.tapeio import human_bytes
from d3hb.store import Home, System, digests
from d3hb.store import apply as store_apply
from d3hb.testing import oracle

SERVER = "hbdemo"
UPDATES = 3000
INITIAL = 4000  # items on pick0 before the save: enough that the save takes a moment
CODE_BYTES = 24
Out = Callable[[str], None]


def _free_port(skip: int = 0) -> int:
    import socket

    for port in range(21000, 32000, 37):
        if port == skip:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise D3hbError("no free TCP port between 21000 and 32000 on 127.0.0.1", "free one, then run the demo again")


@dataclass
class Story:
    """What the demo did, for its summary and for tests (which run the oracle again)."""

    home: Path
    log: oracle.WriteLog = field(default_factory=oracle.WriteLog)
    start_tno: int = 0  # the transaction number the save began at
    during_save: list[int] = field(default_factory=list)  # numbers of updates committed while the save ran
    tape_bytes: int = 0
    report: oracle.Report | None = None
    digests_equal: bool = False

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok and self.digests_equal


class LiveWriter(threading.Thread):
    """Updates ``acme,invoices`` of a system one transaction at a time until told to stop.

    It has its own connection; numbers committed while ``saving`` is set are
    kept in ``during``.
    """

    def __init__(self, home: Home, saving: threading.Event, system: str = "pick0") -> None:
        super().__init__(name="demo-writer", daemon=True)
        self.home, self.saving, self.system = home, saving, system
        self.stop = threading.Event()
        self.log = oracle.WriteLog()
        self.during: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            s = self.home.open(self.system)
            try:
                f = s.file("acme", "invoices")
                n = 0
                while not self.stop.is_set():
                    tno = self.log.write(f, f"live{n % 50}", f"update {n} made while the network save ran\xfe{n}")
                    if self.saving.is_set():
                        self.during.append(tno)
                    n += 1
                    time.sleep(0.002)
            finally:
                s.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def _load(master: System, log: oracle.WriteLog, items: int) -> None:
    inv, cust = master.file("acme", "invoices"), master.file("acme", "customers")
    for i in range(0, items, 500):
        with master.transaction():
            for j in range(i, min(i + 500, items)):
                f = cust if j % 4 == 0 else inv
                log.write(f, f"{j}", f"order {j}\xfe{j * 7 % 1000}.00\xfdEUR\xfe" + "x" * 200)


def network_save_restore(home: Home, master: System, out: Out, log: oracle.WriteLog, story: Story) -> None:
    """Steps 2 and 3: pick0 -> ssave output server -> vmrest input server -> restore of backup."""
    vm = home.create("vmrest", small=True)
    try:
        route = netsave.Route(_free_port(), "127.0.0.1", "127.0.0.1")
        pipes = netsave.prepare(master, vm, home.system_path("backup"), route)
        out(f"Network save/restore: pick0 -> pipe {pipes.sender.name} -> output server '{route.server}' -> "
            f"127.0.0.1:{route.port} -> input server '{route.server}' in system vmrest -> pipe -> restore of 'backup'")
        tsservers.start(vm, route.server)
        tsservers.start(master, route.server)
        out(f"  input server '{route.server}' started in vmrest; output server '{route.server}' started in pick0")
        saving = threading.Event()
        writer = LiveWriter(home, saving)
        writer.start()
        saving.set()
        t0 = time.monotonic()
        transfer = netsave.start_transfer(home.path, "pick0", home.path, "backup", hot_backup=[SERVER], label="demo network save")
        shown, shown_at = "", 0.0
        while transfer.running():
            d = tsservers.query(master, route.server).status or {}
            line = f"  tape-socket query: {d.get('state', '?')}, {human_bytes(int(d.get('bytes') or 0))} sent"
            pub = tapeio.published(master.path)
            if pub is not None and pub[0] == "save" and pub[2] == "running":
                line += f"; save in progress: {pub[1].line()}"  # the figures Query shows
            if line.split(";")[0] != shown.split(";")[0] or (line != shown and time.monotonic() - shown_at >= 0.5):
                out(line)
                shown, shown_at = line, time.monotonic()
            time.sleep(0.1)
        saving.clear()
        save_out, restore_out = transfer.wait(120)
        secs = time.monotonic() - t0
        time.sleep(0.2)  # a few updates after the save too: hot backup must carry them as well
        writer.stop.set()
        writer.join(30)
        if writer.error is not None:
            raise writer.error
        log.extend(writer.log)
        for line in (save_out.strip().splitlines()[-1:] + restore_out.strip().splitlines()[-1:]):
            out("  " + line)
        d = tsservers.query(master, route.server).status or {}
        story.tape_bytes = int(d.get("last_tape_bytes") or d.get("bytes") or 0)
        out(f"  {human_bytes(story.tape_bytes)} crossed the network in {secs:.1f} s; no copy of the save was written to disk")
        out("  " + tsservers.shutdown(master, route.server) + " (shutdown from the sending side)")
        deadline = time.monotonic() + 30
        while tsservers.pid_of(vm.path, route.server) is not None:
            if time.monotonic() > deadline:
                raise D3hbError("the input server in vmrest did not stop after shutdown", f"see {vm.path / 'ts.log'}")
            time.sleep(0.05)
        out("  the input server in vmrest stopped too; vmrest can be shut down")
        story.during_save = writer.during
    finally:
        vm.close()


def tell(base: Path, out: Out, *, updates: int = UPDATES, initial: int = INITIAL) -> Story:
    """The whole story in ``base`` (a D3HB_HOME); servers are stopped on the way out."""
    home = Home(base)
    story = Story(base)
    log = story.log
    master = slave = None
    try:
        master = home.create("pick0", small=True)
        home.create("backup", small=True).close()  # host B's pick0, about to be replaced by the restore
        master.create_account("acme", "DL")
        for name in ("invoices", "customers"):
            master.create_file("acme", name, None, 7, "DL")
            master.create_file("acme", name, name, 31, "DL")
        _load(master, log, initial)
        out(f"System 'pick0' (host A): account 'acme', DL files 'invoices' and 'customers', {initial} items "
            f"(last transaction {log.last})")
        network_save_restore(home, master, out, log, story)
        slave = home.open("backup")
        info = saves.restored_from(slave) or {}
        story.start_tno = int(info.get("start_tno", 0))
        # Updates committed while the save ran: those before its snapshot are on
        # the tape; those after it must come by hot backup, with no gap.
        story.during_save = during = [t for t in story.during_save if t > story.start_tno]
        out(f"'backup' restored from pick0 as saved at transaction {story.start_tno}; "
            f"{len(during)} updates were committed after the save's snapshot while it ran"
            + (f" (transactions {min(during)}..{max(during)}): they are not on the tape" if during else ""))

        port = _free_port()
        code = secrets.token_urlsafe(CODE_BYTES)
        Definitions(master).setup(SERVER, {"type": "M", "host": "127.0.0.1", "port": str(port), "target": "backup",
                                           "code": code, "txlog": "0.05", "check": "30", "timeout": "5"})
        Definitions(slave).setup(SERVER, {"type": "S", "port": str(port), "code": code, "check": "30", "timeout": "5"})
        out(f"Hot backup '{SERVER}' from pick0 to backup on 127.0.0.1:{port}: the slave starts at "
            f"{store_apply.last_applied(slave, SERVER)}, the master ships only later numbers")
        for side, s in (("slave", slave), ("master", master)):
            out(f"Starting the {side} server:")
            supervisor.start(s, SERVER, out=lambda line: out("  " + line))
        _updates(master, log, updates, out)
        _drain(master, slave, log.last, out, base)
        gap_free = store_apply.last_applied(slave, SERVER) >= max(during, default=0)
        out(f"Updates made during the save reached 'backup' through hot backup: {'yes' if gap_free and during else 'no'}")
        for label, s in (("Master", master), ("Slave", slave)):
            out(f"{label} — Query Server:")
            for line in supervisor.format_query(supervisor.query(s, SERVER)):
                out("  " + line)
        out("Display queue:")
        for line in supervisor.queue_lines(master, SERVER):
            out("  " + line)
        story.report = oracle.verify(master, slave, SERVER, log, contiguous=False)
        r = story.report
        out(f"Oracle: {r.writes} writes, slave applied up to {r.applied}; lost {r.lost}, duplicated {r.duplicated}, "
            f"out of order {r.out_of_order}, never written {r.never_written}" + ("" if r.ok else f": {r.problems[0]}"))
        dm, ds = digests(master), digests(slave)
        out("Per-file digests (master / slave):")
        for key in sorted(dm.keys() | ds.keys()):
            mark = "equal" if dm.get(key) == ds.get(key) else "DIFFERENT"
            out(f"  {key:<24} {dm.get(key, '-')[:16]}  {ds.get(key, '-')[:16]}  {mark}")
        story.digests_equal = dm == ds
        out("Digests equal: the slave is an exact copy of the master" if story.digests_equal else "Digests DIFFER")
    finally:
        for s in (master, slave):
            if s is None:
                continue
            with contextlib.suppress(D3hbError):
                if supervisor.is_running(s, SERVER):
                    supervisor.stop(s, SERVER, out=lambda line: out("  " + line))
            for name in ("ssave",):
                with contextlib.suppress(D3hbError, OSError):
                    if tsservers.pid_of(s.path, name) is not None:
                        tsservers.stop(s.path, name)
            s.close()
    return story


def _updates(master: System, log: oracle.WriteLog, updates: int, out: Out) -> None:
    inv, cust = master.file("acme", "invoices"), master.file("acme", "customers")
    t0 = time.monotonic()
    for i in range(0, updates, 100):
        with master.transaction():
            for j in range(i, min(i + 100, updates)):
                f = inv if j % 3 else cust
                key = f"{j % 997}"
                if j % 11 == 5 and f.read(key) is not None:
                    log.delete(f, key)
                else:
                    log.write(f, key, f"order {j}\xfe{j * 7 % 1000}.00\xfdEUR")
    out(f"{updates} updates written on the master in {time.monotonic() - t0:.1f} s (last transaction {log.last})")


def _drain(master: System, slave: System, last: int, out: Out, base: Path) -> None:
    t0 = time.monotonic()
    deadline = t0 + 60
    shown = -1
    while True:
        applied = store_apply.last_applied(slave, SERVER)
        depth = master.queue.state().depth
        if applied != shown:
            out(f"  queue: {depth} transactions waiting; slave applied up to {applied} of {last}")
            shown = applied
        if applied >= last and depth == 0:
            break
        if time.monotonic() > deadline:
            raise D3hbError(f"the queue did not drain within 60 s (slave at {applied} of {last})",
                            f"see 'd3hb --home {base} --system pick0 hot-backup status {SERVER}'")
        time.sleep(0.1)
    out(f"Queue drained in {time.monotonic() - t0:.1f} s")


def run_demo(ctx, *, updates: int = UPDATES, keep: bool = False) -> int:
    out = ctx.out
    base = Path(tempfile.mkdtemp(prefix="d3hb-demo-"))
    out(f"Demo home: {base} (your own systems are not touched)")
    status = 1
    try:
        story = tell(base, out, updates=updates)
        status = 0 if story.ok else 1
    finally:
        if keep or os.environ.get("D3HB_DEMO_KEEP"):
            out(f"Kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            out(f"Removed {base}")
    return status
