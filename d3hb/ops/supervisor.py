"""Start, stop, query and coldstart hot backup servers.

A server runs as its own detached process (``python -m d3hb.servers.daemon``,
its own session) beside its system's database; this module is the only
place that starts one.  ``start`` returns once the server reports its first
real state, or fails with D3's "FAILED: Server 'NAME' encountered an error
and stopped" and the server's own reason (a BIND error, say).

Liveness is the server's lock on ``NAME.lock``; a ``NAME.pid`` that nobody
locks is a server that died without a clean stop, reported once as
"Terminated abnormally".  ``NAME.running`` is the "was running" mark: start
writes it, a clean ``stop`` removes it, and ``coldstart`` restarts every
server that still has one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import d3hb
from d3hb.errors import D3hbError, NotFound, Refused
from d3hb.ops import incidents
from d3hb.ops.serverdefs import Definitions, ServerDef
from d3hb.servers import control
from d3hb.servers import status as st
from d3hb.store.system import System

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
ABNORMAL = "Terminated abnormally"

Out = Callable[[str], None]


def files(system: System, name: str) -> st.ServerFiles:
    return st.ServerFiles(system.path, name)


def config(system: System, d: ServerDef) -> st.Config:
    doc = d.to_json()
    return st.Config.from_json(__import__("json").dumps({**doc, "home": str(system.path.parent), "system": system.path.name}))


def is_running(system: System, name: str) -> bool:
    return st.is_locked(files(system, name))


def check_abnormal(system: System, name: str) -> bool:
    """Report once a server that died without a clean stop; True if it had."""
    f = files(system, name)
    if not f.pid.exists() or st.is_locked(f):
        return False
    pid = st.pid_file_pid(f)
    doc = st.read_status(f) or {}
    if doc.get("state") == st.FAILED:  # it stopped itself and said why; only the pid file is left
        with contextlib.suppress(FileNotFoundError):
            f.pid.unlink()
        return False
    text = f"{ABNORMAL} (pid {pid}, last status {doc.get('state', 'unknown')})"
    try:
        d = Definitions(system).get(name)
        incidents.report(system, d, text)
    except NotFound:
        st.log_message(f, text)
    st.write_status(f, {**doc, "state": st.STOPPED, "error": ABNORMAL, "pid": pid})
    with contextlib.suppress(FileNotFoundError):
        f.pid.unlink()
    return True


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def start(system: System, name: str, *, out: Out = lambda line: None, timeout: float = START_TIMEOUT) -> int:
    """Start a defined server; returns its pid once it has initialized."""
    d = Definitions(system).get(name)
    f = files(system, name)
    if is_running(system, name):
        raise Refused(f"server '{name}' is already running (pid {st.pid_file_pid(f)})", f"stop it first with 'd3hb hot-backup stop {name}'")
    check_abnormal(system, name)
    cfg = config(system, d)
    with contextlib.suppress(FileNotFoundError):
        f.status.unlink()
    f.mark.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    out(f"Waiting for server '{name}' to start")
    env = dict(os.environ)
    root = str(Path(d3hb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(f.stderr, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "d3hb.servers.daemon", cfg.to_json()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True, close_fds=True, cwd=str(system.path), env=env,
        )  # fmt: skip

    def failed() -> D3hbError:
        doc = st.read_status(f) or {}
        reason = doc.get("error") or _tail(f.stderr) or f"exit status {proc.returncode}"
        return D3hbError(f"FAILED: Server '{name}' encountered an error and stopped: {reason}")

    if not _wait(lambda: f.pid.exists() and st.pid_file_pid(f) == proc.pid or proc.poll() is not None, timeout):
        raise D3hbError(f"FAILED: Cannot start server '{name}' (no pid file after {timeout:g} s)", f"see {f.stderr}")
    if proc.poll() is not None:
        raise failed()
    out(f"Waiting for server '{name}' to initialize")

    def ready() -> bool:
        doc = st.read_status(f)
        return proc.poll() is not None or (doc is not None and doc.get("pid") == proc.pid and doc.get("state") not in (st.STARTING, None))

    if not _wait(ready, timeout):
        raise D3hbError(f"server '{name}' did not initialize within {timeout:g} s", f"see 'd3hb hot-backup status {name}'")
    doc = st.read_status(f) or {}
    if proc.poll() is not None or doc.get("state") == st.FAILED:
        _wait(lambda: proc.poll() is not None, 5)
        raise failed()
    out(f"Server '{name}' started. PID {proc.pid}. Status: {doc.get('state')}")
    return proc.pid


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def stop(system: System, name: str, *, out: Out = lambda line: None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM and wait for the clean finish; the "was running" mark goes."""
    Definitions(system).get(name)
    f = files(system, name)
    with contextlib.suppress(FileNotFoundError):
        f.mark.unlink()  # asked to stop: coldstart must not bring it back
    if not is_running(system, name):
        abnormal = check_abnormal(system, name)
        raise Refused(f"server '{name}' is not running{' (' + ABNORMAL + ')' if abnormal else ''}", f"start it with 'd3hb hot-backup start {name}'")
    pid = st.pid_file_pid(f)
    if pid is None:
        raise Refused(f"server '{name}' holds its lock but has no pid file", f"see {f.status}")
    out(f"Stopping server '{name}' (PID {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not is_running(system, name), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not is_running(system, name), 5)
        st.log_message(f, f"did not stop within {timeout:g} s of SIGTERM; killed")
        raise D3hbError(f"server '{name}' did not stop within {timeout:g} s and was killed", "its last batch was rolled back; start it again")
    out(f"Server '{name}' stopped")


def coldstart(system: System, *, out: Out = lambda line: None) -> list[str]:
    """Start every server that was running when the system went down."""
    started = []
    for d in Definitions(system).all():
        f = files(system, d.name)
        if not f.mark.exists() or is_running(system, d.name):
            continue
        check_abnormal(system, d.name)
        try:
            start(system, d.name, out=out)
            started.append(d.name)
        except D3hbError as exc:
            out(str(exc))
    if not started:
        out("No server to restart")
    return started


def query(system: System, name: str, timeout: float = 10.0) -> dict:
    """The live status of a running server (D3: "The server must be running")."""
    Definitions(system).get(name)
    f = files(system, name)
    if not is_running(system, name):
        if check_abnormal(system, name) or (st.read_status(f) or {}).get("error") == ABNORMAL:
            raise Refused(f"server '{name}': {ABNORMAL}", f"see 'd3hb hot-backup status {name}', then start it again")
        raise Refused(f"server '{name}' is not running", f"start it with 'd3hb hot-backup start {name}'")
    return control.request(f.ctl, "query", timeout)["status"]


def statistics(system: System, name: str) -> dict:
    d = Definitions(system).get(name)
    if not is_running(system, name):
        raise Refused(f"server '{name}' is not running", "Show statistics needs both servers running")
    return control.request(files(system, name).ctl, "stats", d.timeout + 5)["stats"]


def _k(n: object) -> str:
    return f"{int(n) // 1024} K"  # type: ignore[call-overload]


def format_query(doc: dict) -> list[str]:
    """D3's Query Server form."""
    slave = doc.get("type") == "Slave"
    head = f"Server '{doc.get('name')}'. PID {doc.get('pid')}. Server type {doc.get('type')}. Traces {doc.get('traces', 'OFF')}"
    if slave:
        applied = "Updates applied" if doc.get("updates_applied") else "Updates not applied"
        mid = f"Total Recvd {_k(doc.get('total_recvd', 0))}. Cur trans {doc.get('cur_trans', 0)}. ACK'ed trans {doc.get('acked_trans', 0)}. {applied}"
    else:
        mid = (f"Total Sent {_k(doc.get('total_sent', 0))}. Cur trans {doc.get('cur_trans', 0)}. ACK'ed trans {doc.get('acked_trans', 0)}. "
               f"Lag {doc.get('lag_trans', 0)} trans {float(doc.get('lag_seconds', 0.0)):.1f} s")
    lines = [head, mid, f"Status: {doc.get('state')}"]
    if slave:  # the slave options' figures (issue 4): the two other options, then only what is not the normal case
        if "log_slave" in doc:
            lines.append(f"Log slave update {'ON' if doc['log_slave'] else 'OFF'}. Auto-create {'ON' if doc.get('auto_create') else 'OFF'}")
        if int(doc.get("held", 0) or 0) or not doc.get("updates_applied"):
            lines.append(f"Held transactions: {int(doc.get('held', 0) or 0)} (in the hold file, not yet applied)")
        if int(doc.get("parked", 0) or 0):
            lines.append(f"Parked updates: {doc['parked']} (files missing here; replay with 'd3hb hot-backup replay-parked {doc.get('name')}')")
        if int(doc.get("helpers", 0) or 0):
            lines.append(f"Helpers running: {doc['helpers']}")
    if doc.get("resync_required"):
        lines.append(f"Resync required: {doc['resync_required']}")
    return lines


def status_lines(system: System, name: str, limit: int = 20) -> list[str]:
    """D3's Status: a title, then the last messages newest first (the server need not run)."""
    d = Definitions(system).get(name)
    check_abnormal(system, name)
    f = files(system, name)
    running = is_running(system, name)
    doc = st.read_status(f) or {}
    state = doc.get("state", "never started") if running else (doc.get("error") or st.STOPPED if doc else "never started")
    if not running and doc.get("state") == st.FAILED:
        state = f"FAILED: {doc.get('error', '')}"
    title = f"Server '{name}' ({d.type_name}, port {d.port}){' PID ' + str(st.pid_file_pid(f)) if running else ''}: {state}"
    return [title, *st.recent_messages(f, limit)]


def queue_lines(system: System, name: str | None = None) -> list[str]:
    """D3's Display queue, for one master server (or the queue alone)."""
    q = system.queue
    s = q.state()
    lines = [
        f"Transactions in queue: {s.depth} ({s.bytes} bytes, {(s.bytes + 2047) // 2048} frames)",
        f"Logging: {'Log ALL files' if s.log_all else 'Log DL files only'}",
        f"Enqueuing: {'ON' if s.enqueuing else 'OFF'}{'' if s.logging else ' (logging stopped: stoplog)'}",
        f"Last transaction number: {s.last}",
    ]
    if name is not None:
        d = Definitions(system).get(name)
        if not d.is_master:
            raise Refused(f"server '{name}' is a slave", "Display queue is for master servers only")
        acked = q.cursor(name)
        doc = (st.read_status(files(system, name)) or {}) if is_running(system, name) else {}
        cur = doc.get("cur_trans", 0)
        if cur:
            lines.append(f"Current transaction number: {cur}")
        if acked is None:
            lines.append("Last acknowledged transaction number: none (no cursor: resync required)")
        else:
            lag_s = 0.0
            oldest = q.read(acked, limit=1)
            if oldest:
                lag_s = max(0.0, time.time() - oldest[0].ts)
            lines.append(f"Last acknowledged transaction number: {acked}")
            lines.append(f"Lag: {max(0, s.last - acked)} transactions, {lag_s:.1f} seconds")
    return lines


def state_line(system: System, name: str) -> str:
    """One short line for a menu header, from the status file (never blocks on the server)."""
    f = files(system, name)
    if not is_running(system, name):
        doc = st.read_status(f) or {}
        if f.pid.exists():
            return f"{name}: {ABNORMAL}"
        if doc.get("state") == st.FAILED:
            return f"{name}: FAILED ({str(doc.get('error', ''))[:60]})"
        return f"{name}: not running"
    doc = st.read_status(f) or {}
    return f"{name} {doc.get('type', '')}: {doc.get('state', '?')}. ACK'ed trans {doc.get('acked_trans', 0)}. Lag {doc.get('lag_trans', 0)}"


def sample(system: System, name: str) -> tuple[int, int, float]:
    """(transactions in queue, lag in transactions, lag in seconds) for the charts."""
    d = Definitions(system).get(name)
    doc = (st.read_status(files(system, name)) or {}) if is_running(system, name) else {}
    depth = system.queue.state().depth if d.is_master else 0
    if d.is_master:
        acked = system.queue.cursor(name) or 0
        lag = max(0, system.queue.last_tno() - acked)
        oldest = system.queue.read(acked, limit=1)
        lag_s = max(0.0, time.time() - oldest[0].ts) if oldest else 0.0
        return depth, lag, lag_s
    return depth, int(doc.get("lag_trans", 0) or 0), float(doc.get("lag_seconds", 0.0) or 0.0)
