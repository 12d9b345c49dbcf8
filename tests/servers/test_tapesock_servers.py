"""tape-socket servers as real processes on loopback: two homes stand for two hosts."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from d3hb.errors import Refused, TapeError
from d3hb.ops import saves, tapes, tsservers
from d3hb.ops.tapesocket import Definitions, messages
from d3hb.servers import tsbase
from d3hb.store import Home, digests


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hosts:
    """Host A (system pick0, the sender) and host B (vmrest with the input server, pick0 restored)."""

    def __init__(self, root: Path) -> None:
        self.A = Home(root / "hostA")
        self.B = Home(root / "hostB")
        self.started: list[tuple[Path, str]] = []

    def pair(self, name: str, port: int) -> tuple[str, str]:
        a, vm = self.A.open("pick0"), (self.B.open("vmrest") if self.B.exists("vmrest") else self.B.create("vmrest", small=True))
        pipe_a, pipe_b = str(self.A.path / f"{name}.out"), str(self.B.path / f"{name}.in")
        Definitions(a).setup(name, {"role": "output", "pipe": pipe_a, "host": "127.0.0.1", "port": str(port), "callrep": "0", "callwait": "0.1"})
        Definitions(vm).setup(name, {"role": "input", "pipe": pipe_b, "host": "127.0.0.1", "port": str(port)})
        tsservers.start(vm, name)
        self.started.append((vm.path, name))
        tsservers.start(a, name)
        self.started.append((a.path, name))
        a.close()
        vm.close()
        return pipe_a, pipe_b

    def stop_all(self) -> None:
        for d, name in self.started:
            tsservers.stop(d, name, timeout=5)


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hosts]:
    monkeypatch.setenv("D3HB_HOME", str(tmp_path / "hostA"))
    h = Hosts(tmp_path)
    yield h
    h.stop_all()


def populate(s, n: int) -> None:
    s.create_account("sales")
    s.create_file("sales", "inv", None, 7, "DL")
    s.create_file("sales", "inv", "inv", 101, "DL")
    s.create_file("sales", "scratch", None, 3, "DX")
    s.create_file("sales", "scratch", "scratch", 3, "DX")
    f, x = s.file("sales", "inv"), s.file("sales", "scratch")
    with s.transaction():
        for i in range(n):
            f.write(f"INV{i:05d}", f"customer {i}\xfe{i * 3}\xfd{i * 5}\xfe" + "x" * (i % 400))
        x.write("tmp", "not saved")


def pipe_device(path: str) -> tapes.Device:
    return tapes.Device(0, path, "c")


class Gate(io.RawIOBase):
    """A reader that stops after ``after`` bytes until released: a slow restore on demand."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.seen = inner, after, 0
        self.reached, self.go = threading.Event(), threading.Event()

    def read(self, n: int = -1) -> bytes:
        if self.seen >= self.after:
            self.reached.set()
            self.go.wait(30)
        data = self.inner.read(min(n, 65536))
        self.seen += len(data)
        return data


def _restore_thread(hosts: Hosts, pipe_b: str, result: dict, gate_after: int | None = None) -> threading.Thread:
    def run() -> None:
        try:
            with tapes.open_for_read(pipe_device(pipe_b)) as fh:
                stream = fh
                if gate_after is not None:
                    stream = result["gate"] = Gate(fh, gate_after)
                result["report"] = saves.restore(hosts.B.system_path("pick0"), "pick0", stream)
        except Exception as exc:  # the test inspects it
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_network_save_restore_then_hot_backup_starts_from_the_save_point(hosts: Hosts) -> None:
    a = hosts.A.open("pick0")
    populate(a, 3000)
    hosts.B.open("pick0").close()  # the main system on host B exists already, as in D3's procedure
    pipe_a, pipe_b = hosts.pair("ssave", free_port())
    result: dict = {}
    t = _restore_thread(hosts, pipe_b, result)
    with tapes.open_for_write(pipe_device(pipe_a)) as fh:
        report = saves.save(a, fh)
    t.join(30)
    assert "error" not in result, result.get("error")
    assert result["report"].items == report.items > 3000 - 1
    b = hosts.B.open("pick0")
    assert digests(b) == {k: v for k, v in digests(a).items() if "scratch" not in k}
    # The restored system knows where its save began; later updates continue from there.
    start = report.label.start_tno
    assert b.history_id == a.history_id and b.queue.last_tno() == start
    assert saves.last_loaded(b, a.history_id) == start
    a.file("sales", "inv").write("after", "the save")
    out = io.BytesIO()
    saves.txn_dump(a, out)
    loaded = saves.txn_load(b, io.BytesIO(out.getvalue()))
    assert loaded.txns == 1 and digests(b)["sales,inv"] == digests(a)["sales,inv"]
    # The servers logged the tape on both sides.
    vm = hosts.B.open("vmrest")
    assert any("tape 1 received" in m.text for m in messages(vm, "ssave"))
    assert any("tape 1 sent" in m.text for m in messages(a, "ssave", permanent=True))


@pytest.mark.parametrize("how", ["kill -9", "stop"])
def test_the_output_server_dying_mid_tape_fails_the_restore_cleanly(hosts: Hosts, how: str) -> None:
    """kill -9: the input server sees the connection lost; stop (SIGTERM): the output
    server finishes the frame on the wire and says why, and both sides report it."""
    a = hosts.A.open("pick0")
    populate(a, 6000)
    # More than can be in flight (pipes, the credit window, socket buffers): the
    # output server dies while the save is still writing, not after the tape.
    big = a.file("sales", "inv")
    with a.transaction():
        for i in range(40):
            big.write(f"BIG{i:02d}", (f"{i:02d}" * 500_000).encode())
    b = hosts.B.open("pick0")
    b.create_account("precious")
    before = digests(b, include_control=True)
    b.close()
    pipe_a, pipe_b = hosts.pair("default", free_port())
    result: dict = {}
    t = _restore_thread(hosts, pipe_b, result, gate_after=200_000)
    saved: dict = {}

    def save() -> None:
        try:
            with tapes.open_for_write(pipe_device(pipe_a)) as fh:
                saves.save(a2 := hosts.A.open("pick0"), fh, keep_queue=True)
                a2.close()
        except Exception as exc:
            saved["error"] = exc

    s = threading.Thread(target=save, daemon=True)
    s.start()
    wait_for(lambda: "gate" in result and result["gate"].reached.is_set(), what="the restore to be under way")
    assert s.is_alive(), saved  # mid-stream: the save has not finished writing
    pid = tsservers.pid_of(hosts.A.system_path("pick0"), "default")
    os.kill(pid, signal.SIGKILL if how == "kill -9" else signal.SIGTERM)
    result["gate"].go.set()
    t.join(30)
    s.join(30)
    assert isinstance(result.get("error"), TapeError), result
    assert isinstance(saved.get("error"), TapeError), saved  # the save learns it too
    b = hosts.B.open("pick0")
    assert digests(b, include_control=True) == before and b.has_account("precious")
    vm = hosts.B.open("vmrest")
    said = "lost" if how == "kill -9" else "reports in the middle of tape 1: output server default stopped in the middle of tape 1"
    try:
        wait_for(lambda: any(said in m.text for m in messages(vm, "default")), 60, what=f"the input server to log {said!r}")
    except AssertionError:
        raise AssertionError([m.text for m in messages(vm, "default")] + [m.text for m in messages(hosts.A.open("pick0"), "default")]) from None
    assert tsservers.pid_of(vm.path, "default") is not None  # it waits for the next call


def test_shutdown_from_the_sending_side_stops_both_servers(hosts: Hosts) -> None:
    hosts.pair("default", free_port())
    a, vm = hosts.A.open("pick0"), hosts.B.open("vmrest")
    wait_for(lambda: (tsbase.read_status(vm.path, "default") or {}).get("state") == "Connected", what="the link")
    r = tsservers.check(a, "default")
    assert r.state == "Connected" and r.clock_offset is not None
    assert "both servers stopped" in tsservers.shutdown(a, "default")
    wait_for(lambda: tsservers.pid_of(vm.path, "default") is None, what="the input server to stop")
    assert tsservers.pid_of(a.path, "default") is None
    assert [st.state for st in tsservers.status(vm)] == ["Stopped"]


def test_two_server_pairs_at_once_on_different_ports(hosts: Hosts) -> None:
    a = hosts.A.open("pick0")
    populate(a, 500)
    pipes = {name: hosts.pair(name, free_port()) for name in ("default", "ssave")}
    vm = hosts.B.open("vmrest")
    vm.create_account("sales")
    vm.create_file("sales", "inv", None, 7)
    vm.create_file("sales", "inv", "inv", 31)
    vm.close()
    result: dict = {}
    t = _restore_thread(hosts, pipes["ssave"][1], result)
    loaded: dict = {}

    def t_load() -> None:
        with tapes.open_for_read(pipe_device(pipes["default"][1])) as fh:
            v = hosts.B.open("vmrest")
            loaded["report"] = saves.t_load(v, "sales", "inv", fh)
            v.close()

    t2 = threading.Thread(target=t_load, daemon=True)
    t2.start()
    errors: list[Exception] = []

    def write(name: str, fn) -> None:
        try:
            with tapes.open_for_write(pipe_device(pipes[name][0])) as fh:
                fn(hosts.A.open("pick0"), fh)
        except Exception as exc:
            errors.append(exc)

    w1 = threading.Thread(target=write, args=("ssave", lambda s, fh: saves.save(s, fh, keep_queue=True)))
    w2 = threading.Thread(target=write, args=("default", lambda s, fh: saves.t_dump(s, "sales", "inv", fh)))
    for w in (w1, w2):
        w.start()
    for w in (w1, w2, t, t2):
        w.join(30)
    assert not errors and "error" not in result
    assert loaded["report"].items == 500 and result["report"].items >= 500
    v = hosts.B.open("vmrest")
    assert v.file("sales", "inv").digest() == a.file("sales", "inv").digest()
    assert hosts.B.open("pick0").file("sales", "inv").digest() == a.file("sales", "inv").digest()


def test_a_busy_port_is_reported_as_a_bind_error(hosts: Hosts) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        vm = hosts.B.create("vmrest", small=True)
        Definitions(vm).setup("default", {"role": "input", "pipe": str(hosts.B.path / "p"), "host": "127.0.0.1", "port": str(port)})
        with pytest.raises(Refused, match="BIND"):
            tsservers.start(vm, "default")
    assert tsservers.pid_of(vm.path, "default") is None


def test_a_restore_is_refused_while_a_server_of_that_system_runs(hosts: Hosts) -> None:
    hosts.pair("default", free_port())
    a = hosts.A.open("pick0")
    data = io.BytesIO()
    saves.save(a, data, keep_queue=True)
    with pytest.raises(Refused, match="ts-default"):
        saves.restore(a.path, "pick0", io.BytesIO(data.getvalue()))


def test_a_caller_ignoring_its_credit_is_held_back_by_tcp_not_buffered(hosts: Hosts) -> None:
    """Raw frames from a rogue caller while nobody reads the pipe: the input server stops
    reading its socket after a few MiB, so the sender blocks and the server's memory stays flat."""
    from d3hb.protocol import tapesock as ts
    from d3hb.protocol.frames import encode_frame

    port = free_port()
    vm = hosts.B.create("vmrest", small=True)
    Definitions(vm).setup("default", {"role": "input", "pipe": str(hosts.B.path / "in.pipe"), "host": "127.0.0.1", "port": str(port)})
    pid = tsservers.start(vm, "default")
    hosts.started.append((vm.path, "default"))
    chunk = encode_frame(3, b"r" * ts.MAX_CHUNK, ts.FRAME_LIMIT)  # type 3: Data, as the link numbers it
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(ts.TapeLink(ts.OUTPUT, "default").send(ts.Hello("default")))
        sock.settimeout(5)
        try:
            for _ in range(256):  # 256 MiB, against a window of a few
                sock.sendall(chunk)
                sent += 1
        except OSError:
            pass  # blocked: what the test wants to see
        status = Path(f"/proc/{pid}/status").read_text()
    assert sent < 64, f"{sent} MiB accepted with no reader on the pipe"
    peak_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM:")).split()[1])
    assert peak_kb < 100_000, f"input server peak RSS {peak_kb} KB"
    assert tsservers.pid_of(vm.path, "default") == pid
