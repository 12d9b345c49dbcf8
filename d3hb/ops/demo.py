"""``d3hb demo``: the hot backup story on loopback, start to finish, in seconds.

In a fresh temporary D3HB_HOME (never the user's systems): two systems,
``pick0`` (master) and ``backup`` (slave), a server pair ``hbdemo`` on a free
port, an account and DL files created on the master, a few thousand updates,
the queue draining, both servers queried, the queue displayed, per-file
digests compared, both servers stopped.  Exit 0 only when the digests agree.
The temporary home is removed at the end, unless ``keep=True`` is passed or
the environment has ``D3HB_DEMO_KEEP=1`` (to look at the logs afterwards).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from d3hb.errors import D3hbError
from d3hb.ops import supervisor
from d3hb.ops.serverdefs import Definitions
from d3hb.store import Home, digests
from d3hb.store import apply as store_apply

SERVER = "hbdemo"
UPDATES = 3000
CODE_BYTES = 24


def _free_port() -> int:
    import socket

    for port in range(21000, 32000, 37):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise D3hbError("no free TCP port between 21000 and 32000 on 127.0.0.1", "free one, then run the demo again")


def run_demo(ctx, *, updates: int = UPDATES, keep: bool = False) -> int:
    import os
    import secrets

    out = ctx.out
    base = Path(tempfile.mkdtemp(prefix="d3hb-demo-"))
    home = Home(base)
    out(f"Demo home: {base} (your own systems are not touched)")
    master = slave = None
    status = 1
    try:
        port = _free_port()
        code = secrets.token_urlsafe(CODE_BYTES)
        master, slave = home.create("pick0", small=True), home.create("backup", small=True)
        out(f"Systems 'pick0' (master) and 'backup' (slave) created; server pair '{SERVER}' on 127.0.0.1:{port}")
        Definitions(master).setup(SERVER, {"type": "M", "host": "127.0.0.1", "port": str(port), "target": "backup",
                                           "code": code, "txlog": "0.05", "check": "30", "timeout": "5"})
        Definitions(slave).setup(SERVER, {"type": "S", "port": str(port), "code": code, "check": "30", "timeout": "5"})
        for side, s in (("slave", slave), ("master", master)):
            out(f"Starting the {side} server:")
            supervisor.start(s, SERVER, out=lambda line: out("  " + line))
        master.create_account("acme", "DL")
        for name in ("invoices", "customers"):
            master.create_file("acme", name, None, 7, "DL")
            master.create_file("acme", name, name, 31, "DL")
        out("Account 'acme' with DL files 'invoices' and 'customers' created on the master")
        inv, cust = master.file("acme", "invoices"), master.file("acme", "customers")
        t0 = time.monotonic()
        last = 0
        for i in range(0, updates, 100):
            with master.transaction():
                for j in range(i, min(i + 100, updates)):
                    f = inv if j % 3 else cust
                    key = f"{j % 997}"
                    if j % 11 == 5 and f.read(key) is not None:
                        last = f.delete(key) or last  # type: ignore[assignment]
                    else:
                        last = f.write(key, f"order {j}\xfe{j * 7 % 1000}.00\xfdEUR") or last  # type: ignore[assignment]
        out(f"{updates} updates written on the master in {time.monotonic() - t0:.1f} s (last transaction {last})")
        deadline = time.monotonic() + 40
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
                raise D3hbError(f"the queue did not drain within 40 s (slave at {applied} of {last})",
                                f"see 'd3hb --home {base} --system pick0 hot-backup status {SERVER}'")
            time.sleep(0.1)
        out(f"Queue drained in {time.monotonic() - t0:.1f} s")
        for label, s in (("Master", master), ("Slave", slave)):
            out(f"{label} — Query Server:")
            for line in supervisor.format_query(supervisor.query(s, SERVER)):
                out("  " + line)
        out("Display queue:")
        for line in supervisor.queue_lines(master, SERVER):
            out("  " + line)
        dm, ds = digests(master), digests(slave)
        out("Per-file digests (master / slave):")
        for key in sorted(dm.keys() | ds.keys()):
            mark = "equal" if dm.get(key) == ds.get(key) else "DIFFERENT"
            out(f"  {key:<24} {dm.get(key, '-')[:16]}  {ds.get(key, '-')[:16]}  {mark}")
        status = 0 if dm == ds else 1
        out("Digests equal: the slave is an exact copy of the master" if status == 0 else "Digests DIFFER")
    finally:
        for s in (master, slave):
            if s is None:
                continue
            with contextlib.suppress(D3hbError):
                if supervisor.is_running(s, SERVER):
                    supervisor.stop(s, SERVER, out=lambda line: out("  " + line))
            s.close()
        if keep or os.environ.get("D3HB_DEMO_KEEP"):
            out(f"Kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            out(f"Removed {base}")
    return status
