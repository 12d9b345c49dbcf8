"""The server process: ``python -m d3hb.servers.daemon CONFIG_JSON``.

Started detached by d3hb.ops.supervisor (its own session, stdin and stdout
on /dev/null, stderr into ``NAME.stderr``).  It takes the pid-file lock,
listens on its control socket, runs the master or slave on an asyncio loop
and stops cleanly on SIGTERM or a control ``stop``: the batch in hand is
finished or never started, the status says ``Stopped``, the pid file goes.
A failure is written to the status (``state`` Failed, ``error`` the one-line
reason) before the process exits 1, so the supervisor can print it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from d3hb.errors import D3hbError
from d3hb.servers import control
from d3hb.servers import status as st
from d3hb.store.system import System

logger = logging.getLogger(__name__)


async def _serve(cfg: st.Config, system: System, rt: st.Runtime) -> None:
    if cfg.is_master:
        from d3hb.servers.master import MasterServer

        server: object = MasterServer(cfg, system, rt)
    else:
        from d3hb.servers.slave import SlaveServer

        server = SlaveServer(cfg, system, rt)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, server.stop, f"signal {signal.Signals(sig).name}")  # type: ignore[attr-defined]

    async def on_control(req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "query":
            rt.figures["queue_last"] = system.queue.last_tno() if cfg.is_master else rt.figures["queue_last"]
            return {"ok": True, "status": rt.doc()}
        if cmd == "stats":
            if cfg.is_master:
                return {"ok": True, "stats": await server.statistics()}  # type: ignore[attr-defined]
            return {"ok": True, "stats": {"slave": server.statistics()}}  # type: ignore[attr-defined]
        if cmd == "stop":
            loop.call_soon(server.stop, "stop requested on the control channel")  # type: ignore[attr-defined]
            return {"ok": True}
        raise D3hbError(f"unknown control command {cmd!r}", "use query, stats or stop")

    ctl = await control.serve(cfg.files.ctl, on_control)
    try:
        await server.run()  # type: ignore[attr-defined]
    finally:
        ctl.close()
        with contextlib.suppress(FileNotFoundError):
            cfg.files.ctl.unlink()


def run(cfg: st.Config) -> int:
    files = cfg.files
    lock = st.PidLock(files)
    deadline = time.monotonic() + 1.0
    while not lock.acquire():  # a supervisor probing the lock holds it for an instant
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if lock.fd is None:
        print(f"server {cfg.name} is already running (pid {st.pid_file_pid(files)})", file=sys.stderr)
        return 1
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    system: System | None = None
    rt: st.Runtime | None = None
    status = 0
    try:
        system = System.open(cfg.dir)
        # The event loop waits synchronously for a locked database: never long enough to miss the peer.
        system.conn.execute(f"PRAGMA busy_timeout={int(min(10.0, cfg.timeout / 2) * 1000)}")
        rt = st.Runtime(cfg, error_log=lambda text, s=system: s.error_log(text, "hot-backup"))
        rt.log(f"Server '{cfg.name}' started, pid {os.getpid()}, type {'Master' if cfg.is_master else 'Slave'}")
        rt.write_status(force=True)
        asyncio.run(_serve(cfg, system, rt))
        rt.set_state(st.STOPPED)
        rt.log(f"Server '{cfg.name}' stopped")
    except Exception as exc:  # noqa: BLE001 - whatever it is, it goes to the status and the logs
        plain = isinstance(exc, D3hbError) or type(exc).__name__ == "Fatal"  # already one line for a person
        text = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        if rt is None:
            rt = st.Runtime(cfg)
        rt.set_state(st.FAILED, error=text)
        rt.log(f"FAILED: Server '{cfg.name}' encountered an error and stopped: {text}")
        if not isinstance(exc, D3hbError) and type(exc).__name__ != "Fatal":
            logger.exception("server %s failed", cfg.name)
        status = 1
    finally:
        if system is not None:
            system.close()
        lock.release()
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m d3hb.servers.daemon CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s d3hb server: %(message)s")
    cfg = st.Config.from_json(args[0])
    started = time.time()
    status = run(cfg)
    logger.debug("server %s ran %.1f s", cfg.name, time.time() - started)
    return status


if __name__ == "__main__":
    sys.exit(main())
